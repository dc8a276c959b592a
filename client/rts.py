"""Request-to-send, client side: at most K storage servers may send read data to this process at once.

Fire-Flyer 2 saw storage incast at clients under peak load ([FF] §VI-B3): many
storage servers answering one client at the same moment overflow the switch
queue in front of it, and every other flow through that port (HFReduce) waits
behind them. 3FS's fix (``RDMAControl``, ``RDMATransmissionLimiter``): after a
server has read the data, it asks the client for permission to send; the client
holds a semaphore of ``max_concurrent_transmission`` tokens (64) and releases a
token when the reply has arrived, or on error or timeout.

On the bulk path (proto/bulk_wire.py) a read request with op
READ_RTS makes the server send an RTS frame once its data is ready; the
client's ``BulkConnection`` takes a permit from the process's
``GrantLimiter`` (below), answers GRANT, receives the data, and gives the
permit back. So the bytes in flight toward this client are bounded by K
replies, whatever the number of servers and requests.

Never a deadlock: a permit that is not free within ``wait_s`` fails the read
with ``RtsPermitTimeout`` (retryable), and a server that gets no grant within
its own timeout fails the read on its side (storage_service/rts.py).

Off by default (``ClientConfig.rts_enabled = 0``), as in 3FS's shipped
configs: on a fast unshaped path (loopback, this machine) the extra round trip
per reply costs goodput and there is no queue to protect; on a shared
bottleneck it bounds the queue and HFReduce's tail (``ffs bench fabric``,
numbers in fabric/README.md). Turn on with ``FFS_CLIENT_RTS_ENABLED=1``; K
with ``FFS_CLIENT_RTS_MAX_CONCURRENT`` (default 64 as 3FS).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from typing import Callable

from fireflyfs.common.errors import Unavailable

permits_max_default = 64        # 3FS max_concurrent_transmission
permit_wait_s_default = 10.0


class RtsPermitTimeout(Unavailable):
    """No transfer permit became free in time (K transfers are granted and not finished)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LimiterStats:
    permits_max: int
    in_use: int
    in_use_peak: int       # most permits held at once since creation (the bound under test)
    granted: int
    timed_out: int
    waiting: int


class GrantLimiter:
    """A counting semaphore of transfer permits that serves waiters first come, first served.

    Why FIFO: with a plain semaphore a thread that releases and re-acquires in
    a loop can starve the others; here a waiter is granted only when it is the
    oldest one waiting, so every connection's reply gets its turn in order.
    ``clock`` is a parameter (tests pass their own); waiting uses a condition
    variable with the remaining time.
    """

    def __init__(self, permits_max: int = permits_max_default, wait_s: float = permit_wait_s_default,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if permits_max < 1:
            raise ValueError(f"request-to-send needs at least one permit, not {permits_max}")
        if wait_s <= 0:
            raise ValueError(f"request-to-send permit wait must be positive, not {wait_s}")
        self.permits_max = permits_max
        self.wait_s = wait_s
        self._clock = clock
        self._condition = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()    # tickets of waiters, oldest first
        self._next_ticket = 0
        self._in_use = 0
        self._in_use_peak = 0
        self._granted = 0
        self._timed_out = 0

    def acquire(self, wait_s: float | None = None, what: str = "a transfer") -> None:
        """Take a permit, waiting behind older waiters; RtsPermitTimeout after wait_s."""
        wait_s = self.wait_s if wait_s is None else wait_s
        deadline = self._clock() + wait_s
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(ticket)
            try:
                while not (self._queue[0] == ticket and self._in_use < self.permits_max):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        self._timed_out += 1
                        raise RtsPermitTimeout(
                            f"request-to-send: no permit for {what} within {wait_s:g} s "
                            f"({self._in_use} of {self.permits_max} transfers granted and unfinished)")
                    self._condition.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()     # the next oldest may now be at the head
            self._take()

    def try_acquire(self) -> bool:
        """A permit now if one is free and nobody is waiting (no queue jumping)."""
        with self._condition:
            if self._queue or self._in_use >= self.permits_max:
                return False
            self._take()
            return True

    def _take(self) -> None:
        self._in_use += 1
        assert self._in_use <= self.permits_max, "request-to-send limiter over its bound"
        self._in_use_peak = max(self._in_use_peak, self._in_use)
        self._granted += 1

    def release(self) -> None:
        with self._condition:
            if self._in_use <= 0:
                raise RuntimeError("request-to-send permit released more often than taken")
            self._in_use -= 1
            self._condition.notify_all()

    def stats(self) -> LimiterStats:
        with self._condition:
            return LimiterStats(self.permits_max, self._in_use, self._in_use_peak, self._granted,
                                self._timed_out, len(self._queue))


_limiters: dict[tuple[int, float], GrantLimiter] = {}
_limiters_lock = threading.Lock()
_limiters_pid = os.getpid()


def limiter_for(config) -> GrantLimiter | None:
    """The process's limiter for a ClientConfig (None when request-to-send is off).

    One per process and (K, wait): every connection and client in the process
    shares it, as 3FS's limiter belongs to the client process. A forked child
    starts with its own (the parent's permits are not the child's).
    """
    global _limiters_pid, _limiters_lock
    if not getattr(config, "rts_enabled", 0):
        return None
    key = (int(config.rts_max_concurrent), float(config.rts_wait_s))
    if _limiters_pid != os.getpid():
        _limiters_lock = threading.Lock()
        _limiters.clear()
        _limiters_pid = os.getpid()
    limiter = _limiters.get(key)
    if limiter is None:
        with _limiters_lock:
            limiter = _limiters.setdefault(key, GrantLimiter(*key))
    return limiter
