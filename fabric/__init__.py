"""The shared network: traffic classes, HFReduce, and (next) request-to-send incast control.

- ``traffic``: one DSCP code point per kind of traffic (HFReduce, collective,
  storage, control) and the helpers that mark sockets and gRPC channels.
- ``hfreduce``: Fire-Flyer's allreduce (shared-memory reduce on a host, double
  binary tree between hosts, pipelined chunks) and its DDP comm hook.
The namespace testbed that shows them on a shaped link is deploy/testbed.py.
See fabric/README.md.
"""
