"""Request buffers of the bulk listener, under one byte budget and reused between requests.

Why a budget: each connection used to keep its own receive buffer, grown to
the largest write it had seen (up to a 64 MiB chunk) and allocated before the
request was checked, so a few hundred connections could pin tens of GiB.
Here every buffer a request holds comes from one ``BufferBudget`` per
listener: a request waits, for a bounded time, until its buffer fits, and the
listener never holds more buffer bytes than the budget, the buffers in use
and those kept for reuse counted together.

Why a share per peer: a write's buffer is taken when its header has arrived,
before its data, so a peer that sends headers and then trickles could hold
the whole budget until its deadlines pass. No peer address holds more than
``peer_bytes_max`` at once, and a request waiting only for its own peer's
share does not hold up the requests of others.

Why reuse: a fresh ``bytearray`` is zero-filled on the heap or page-faults on
first touch when mmapped (common/process_tuning.py measured what that costs a
4 MiB transfer). Freed buffers are kept by size class (powers of two from
``buffer_bytes_min``) for the next request of that class; when a new buffer
would not fit beside the kept ones, kept ones are dropped first.

Otherwise waiters are served in arrival order, so a stream of small requests
cannot starve a 64 MiB write.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

from fireflyfs.common.errors import InvalidArgument

buffer_bytes_min = 4096        # smallest size class: a read request of up to 146 IOs


def size_class(nbytes: int) -> int:
    """The buffer size a request of nbytes holds: the next power of two, at least buffer_bytes_min."""
    return max(buffer_bytes_min, 1 << (nbytes - 1).bit_length())


@dataclasses.dataclass(slots=True, eq=False)
class _Waiter:
    peer: str
    size: int


class BufferBudget:
    """Hands out request buffers while their total stays within capacity_bytes (peer_bytes_max per peer)."""

    def __init__(self, capacity_bytes: int, peer_bytes_max: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        peer_bytes_max = capacity_bytes if peer_bytes_max is None else peer_bytes_max
        if not buffer_bytes_min <= peer_bytes_max <= capacity_bytes:
            raise InvalidArgument(f"bulk buffer budget {capacity_bytes} bytes with {peer_bytes_max} per peer: "
                                  f"need {buffer_bytes_min} <= per peer <= total")
        self.capacity_bytes = capacity_bytes
        self.peer_bytes_max = peer_bytes_max
        self._clock = clock
        self._cond = threading.Condition()
        self._kept: dict[int, list[bytearray]] = {}    # size class -> free buffers
        self._kept_bytes = 0
        self._waiting: list[_Waiter] = []              # in arrival order
        self._peer_bytes: dict[str, int] = {}
        self.in_use_bytes = 0
        self.in_use_bytes_peak = 0
        self.allocated_count = 0       # buffers made rather than reused

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes

    @property
    def held_bytes(self) -> int:
        """Bytes of all buffers this budget holds, in use and kept for reuse: never above capacity_bytes."""
        with self._cond:
            return self.in_use_bytes + self._kept_bytes

    def peer_bytes(self, peer: str) -> int:
        with self._cond:
            return self._peer_bytes.get(peer, 0)

    def acquire(self, nbytes: int, timeout_s: float, peer: str = "") -> bytearray | None:
        """A buffer of at least nbytes for peer (its length is the size class); None if none fit
        within timeout_s.

        The frame checks (bulk_wire.check_request) and BulkLimits keep every
        request within the per-peer share.
        """
        size = size_class(nbytes)
        if size > self.peer_bytes_max:
            raise AssertionError(f"a {nbytes}-byte request can never fit a {self.peer_bytes_max}-byte share")
        deadline = self._clock() + timeout_s
        waiter = _Waiter(peer, size)
        with self._cond:
            self._waiting.append(waiter)
            try:
                while not self._may_take(waiter):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            finally:
                self._waiting.remove(waiter)
                self._cond.notify_all()        # the next in line may fit now
            self.in_use_bytes += size
            self._peer_bytes[peer] = self._peer_bytes.get(peer, 0) + size
            self.in_use_bytes_peak = max(self.in_use_bytes_peak, self.in_use_bytes)
            kept = self._kept.get(size)
            if kept:
                self._kept_bytes -= size
                return kept.pop()
            self._drop_kept(self.capacity_bytes - self.in_use_bytes)
            self.allocated_count += 1
        return self._allocate(size)     # zero-filling up to 64 MiB: outside the lock

    def _may_take(self, waiter: _Waiter) -> bool:
        """Whether waiter fits now and is the first waiter that fits its peer's share (lock held)."""
        for earlier in self._waiting:
            if self._peer_bytes.get(earlier.peer, 0) + earlier.size <= self.peer_bytes_max:
                return earlier is waiter and self.in_use_bytes + waiter.size <= self.capacity_bytes
            if earlier is waiter:
                return False
        raise AssertionError("a bulk buffer waiter is missing from the queue")

    def release(self, buffer: bytearray, peer: str = "") -> None:
        """Give back a buffer from acquire; it is kept for reuse while it fits beside the others."""
        size = len(buffer)
        with self._cond:
            held = self._peer_bytes.get(peer, 0) - size
            if held < 0 or self.in_use_bytes < size:
                raise AssertionError(f"bulk buffer budget: {peer!r} released more than it was handed")
            self.in_use_bytes -= size
            if held:
                self._peer_bytes[peer] = held
            else:
                del self._peer_bytes[peer]
            if self.in_use_bytes + self._kept_bytes + size <= self.capacity_bytes:
                self._kept.setdefault(size, []).append(buffer)
                self._kept_bytes += size
            self._cond.notify_all()

    def _drop_kept(self, room_bytes: int) -> None:
        """Drop kept buffers, largest first, until they take at most room_bytes (lock held)."""
        for size in sorted(self._kept, reverse=True):
            kept = self._kept[size]
            while kept and self._kept_bytes > room_bytes:
                kept.pop()
                self._kept_bytes -= size
        if self._kept_bytes > room_bytes:
            raise AssertionError("kept bulk buffers exceed the room left in the budget")

    @staticmethod
    def _allocate(size: int) -> bytearray:
        """The one place request buffers are made (tests count calls here)."""
        return bytearray(size)
