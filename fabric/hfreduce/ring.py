"""A naive ring allreduce over the same marked TCP links: the benchmark's baseline.

Reduce-scatter then allgather over n segments, 2(n-1) steps, each step
sending one segment right while receiving one from the left (the send runs on
the group's worker pool so large segments cannot deadlock). No intra-host stage and no
chunk pipelining within a step: this is the textbook algorithm HFReduce is
compared with. Each segment is finished at one rank and copied around, so
ranks agree bit for bit here too.
"""

from __future__ import annotations

import concurrent.futures
import socket

import numpy as np

from . import dtypes, transport


def _segments(count: int, n: int) -> list[tuple[int, int]]:
    bounds = [count * i // n for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _exchange(left: socket.socket, right: socket.socket, outgoing: np.ndarray, incoming: np.ndarray,
              workers: concurrent.futures.Executor) -> None:
    sending = workers.submit(transport.send, right, outgoing)
    try:
        transport.recv_into(left, memoryview(incoming))
    except BaseException:
        right.shutdown(socket.SHUT_RDWR)     # unblock our sender, fail the neighbours too
        raise
    sending.result()


def ring_allreduce(array, op: str, rank: int, n: int, left: socket.socket, right: socket.socket,
                   workers: concurrent.futures.Executor):
    view, element_type, original = dtypes.storage_view(array)
    total = dtypes.to_accumulate(view, element_type).copy()
    segments = _segments(len(view), n)
    scratch = np.empty(max(hi - lo for lo, hi in segments), dtype=element_type.accumulate)
    for step in range(n - 1):                       # reduce-scatter
        send_lo, send_hi = segments[(rank - step) % n]
        recv_lo, recv_hi = segments[(rank - step - 1) % n]
        incoming = scratch[: recv_hi - recv_lo]
        _exchange(left, right, total[send_lo:send_hi], incoming, workers)
        np.add(total[recv_lo:recv_hi], incoming, out=total[recv_lo:recv_hi])
    own_lo, own_hi = segments[(rank + 1) % n]      # this rank now holds the full sum here
    if op == "mean":
        np.divide(total[own_lo:own_hi], n, out=total[own_lo:own_hi])
    dtypes.round_into(view[own_lo:own_hi], total[own_lo:own_hi], element_type)
    for step in range(n - 1):                       # allgather the rounded results
        send_lo, send_hi = segments[(rank + 1 - step) % n]
        recv_lo, recv_hi = segments[(rank - step) % n]
        _exchange(left, right, view[send_lo:send_hi], view[recv_lo:recv_hi], workers)
    return original
