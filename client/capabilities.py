"""The client's capabilities: per file, what meta signed for its reads and writes.

Storage answers a client's read or write only with a capability for the
file's inode (common/capability.py). Meta hands one out with every open
(and with BatchStat's read handles); this cache keeps them by inode, and asks
meta for a fresh one (Meta.GetCapability) when one is missing or about to
expire, so a file kept open for days keeps working. It lives in the FfsClient,
not in its per-process connections: a forked DataLoader worker inherits the
parent's capabilities instead of asking meta again for every file.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from fireflyfs.common import capability, limits

Fetch = Callable[[int, bool, bytes], bytes]     # (inode, write, the capability held or b"")


class Capabilities:
    def __init__(self, fetch: Fetch | None = None, clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._clock = clock
        self._held: dict[int, bytes] = {}     # inode -> the best capability held (write beats read)
        self._lock = threading.Lock()

    def set_fetch(self, fetch: Fetch) -> None:
        self._fetch = fetch

    def remember(self, inode_id: int, blob: bytes) -> None:
        """A capability meta handed out (an open reply, a BatchStat result)."""
        if not blob:
            return
        with self._lock:
            held = self._held.get(inode_id)
            if (held is None or capability.access_of(blob) >= capability.access_of(held)
                    or self._stale(held, capability.access_of(held))):
                if len(self._held) >= limits.capability_cache_entries_max:
                    self._held.clear()
                self._held[inode_id] = blob

    def _stale(self, blob: bytes, access: int) -> bool:
        left_ms = capability.expires_ms_of(blob) - self._clock() * 1000
        return access < capability.READ or left_ms < limits.capability_refresh_before_ms

    def get(self, inode_id: int, write: bool = False) -> bytes:
        """A capability for inode_id good for a while yet (b"" when there is no way to get one:
        storage then refuses, unless security is off)."""
        want = capability.WRITE if write else capability.READ
        held = self._held.get(inode_id)
        if held is not None and capability.access_of(held) >= want and not self._stale(held, want):
            return held
        if self._fetch is None:
            return held or b""
        blob = self._fetch(inode_id, write, held or b"")
        self.remember(inode_id, blob)
        return blob

    def for_inodes(self, inode_ids: Iterable[int]) -> list[bytes]:
        """Read capabilities of each distinct inode, as a read request carries them."""
        return [blob for blob in (self.get(inode_id) for inode_id in dict.fromkeys(inode_ids)) if blob]
