"""Per-chunk locks of one target, held for a whole chain update (stage -> forward -> commit).

CRAQ serializes a chunk's updates at every replica: the head takes the lock
before choosing the update version and keeps it until the successor's ack is
committed, so each chunk has at most one update in flight per replica. Locks
are created on demand and dropped when unused (a dict, not stripes, because a
lock is held across network round trips and unrelated chunks must not wait on
each other). Acquisition takes a timeout: a lock held by an update that is
stuck on a dead successor must not pin request threads forever.

The registry of in-flight updates lets resync wait until no update admitted
under an older routing is still running (see resync.py).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from fireflyfs.common.errors import Unavailable


class ChunkLocks:
    def __init__(self, target_id: int) -> None:
        self.target_id = target_id
        self._guard = threading.Lock()
        self._locks: dict[bytes, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: bytes, timeout_s: float) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=max(timeout_s, 0.0)):
                raise Unavailable(f"target {self.target_id}: chunk {key.hex()} is busy with another "
                                  f"update for more than {timeout_s:.1f}s")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock_now, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock_now, users - 1)


class InFlight:
    """Chain updates in progress on one target, each with the chain version it works under."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._versions: dict[int, int] = {}     # slot -> chain version (0: not admitted yet)
        self._next = 0
        self.changed = threading.Condition(self._guard)

    def enter(self) -> int:
        with self._guard:
            self._next += 1
            self._versions[self._next] = 0
            return self._next

    def set_version(self, slot: int, chain_version: int) -> None:
        with self._guard:
            self._versions[slot] = chain_version

    def leave(self, slot: int) -> None:
        with self.changed:
            self._versions.pop(slot, None)
            self.changed.notify_all()

    def wait_drained(self, chain_version: int, timeout_s: float) -> bool:
        """True once no update works under a chain version older than chain_version."""
        with self.changed:
            return self.changed.wait_for(
                lambda: all(v >= chain_version for v in self._versions.values()), timeout_s)
