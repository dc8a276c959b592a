"""What meta signs for storage: chunk capabilities for the files a caller may read or write.

Meta issues a capability only after the namespace has checked the caller may
(an open, a create, a read handle of BatchStat), and renews one by inode id
only for a caller that shows a capability issued before for that inode: its
proof that it opened the file by its path (common/capability.py has the
format and storage's side). Admin tools and meta's own storage client get
capabilities for any inode.
"""

from __future__ import annotations

import time
from typing import Callable

from fireflyfs.common import capability, limits
from fireflyfs.common.errors import PermissionDenied


class CapabilityIssuer:
    def __init__(self, cluster_secret: bytes, ttl_ms: int = limits.capability_ttl_ms,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._secret = cluster_secret
        self._ttl_ms = ttl_ms
        self._clock_ms = clock_ms

    def issue(self, inode_id: int, write: bool) -> bytes:
        return capability.sign(self._secret, inode_id, capability.WRITE if write else capability.READ,
                               self._clock_ms(), ttl_ms=self._ttl_ms)

    def require_held(self, inode_id: int, previous: bytes) -> None:
        """PermissionDenied unless previous is a capability this cluster issued for inode_id
        (expired ones count): a renewal by id needs the proof of an earlier open by path."""
        if capability.issued(self._secret, previous).inode_id != inode_id:
            raise PermissionDenied(f"the capability presented is for another inode than {inode_id}")
