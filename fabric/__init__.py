"""Sharing one network between storage and training: HFReduce and its DSCP-marked links.

- ``hfreduce``: Fire-Flyer's allreduce (shared-memory reduce on a host, double
  binary tree between hosts, pipelined chunks) and its DDP comm hook.

The traffic classes every socket is marked with (``fireflyfs.common.traffic``)
and client-side pacing (``fireflyfs.common.pacing``) live in ``common``,
because every layer opens sockets; request-to-send lives with the bulk
transport it gates (``client/rts.py``, ``storage_service/rts.py``). The
namespace testbed that shows them on a shaped link is deploy/testbed.py.
See fabric/README.md.
"""
