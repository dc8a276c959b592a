"""A fork waits for this process's gRPC calls in flight, so gRPC's own fork handlers run.

gRPC core makes a forked child usable (fresh pollers and threads; the child
then opens channels of its own, client/channels.py) only when no thread is
inside a call at the moment of ``fork()``. Otherwise it logs "Other threads
are currently calling into gRPC, skipping fork() handlers", and the child
inherits a poller caught mid-call: it can abort on a failed epoll check, or
read from its parent's TLS connections and corrupt them (both seen in CI).
PyTorch forks DataLoader workers while the parent may have calls in flight
(IO threads, the session-lease renewer), so every channel made by
``rpc.make_channel`` counts its calls here (``calls_counted``) and a fork
holds new calls back and waits, at most ``wait_s``, for those in flight.
A call that outlasts the wait (a stalled server) lets the fork go ahead as
before, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Iterator

log = logging.getLogger(__name__)

wait_s = 5.0


class _Gate:
    """Counts calls in flight; ``close`` waits for none and keeps new ones out until ``open``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls = 0
        self._closed = False

    def enter(self) -> None:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._calls += 1

    def leave(self) -> None:
        with self._cond:
            self._calls -= 1
            if self._closed and self._calls == 0:
                self._cond.notify_all()

    def close(self, timeout_s: float) -> bool:
        """Hold the gate's lock (until ``open``) once no call is in flight; False if timeout_s passed first."""
        self._cond.acquire()
        self._closed = True
        return self._cond.wait_for(lambda: self._calls == 0, timeout=timeout_s)

    def open(self) -> None:
        self._closed = False
        self._cond.notify_all()
        self._cond.release()

    def calls_in_flight(self) -> int:
        return self._calls


_gate = _Gate()


@contextlib.contextmanager
def calls_counted() -> Iterator[None]:
    """Around one gRPC call: a fork waits for it to end, and it waits for a fork in progress."""
    gate = _gate
    gate.enter()
    try:
        yield
    finally:
        gate.leave()


def calls_in_flight() -> int:
    return _gate.calls_in_flight()


def _before_fork() -> None:
    if not _gate.close(wait_s):
        log.warning("forking with %d gRPC calls still in flight after %.0f s; the child may not be able "
                    "to use gRPC", _gate.calls_in_flight(), wait_s)


def _after_fork_in_parent() -> None:
    _gate.open()


def _after_fork_in_child() -> None:
    global _gate
    _gate = _Gate()     # the child has none of the parent's calls, and the old lock is held


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
