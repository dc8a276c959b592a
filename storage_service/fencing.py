"""Fencing: a storage node that may have been declared dead stops serving.

mgmtd marks a node's targets offline after ``heartbeat_timeout_ms`` without a
heartbeat, and the chain moves on without them. The node cannot know exactly
when that happened, so it stops answering once it has gone half that long
without a successful heartbeat (or registration) reply: by the time mgmtd acts,
the node has already stopped, and no client or predecessor can be served by a
replica the chain no longer includes. Pure: time comes in as ``now`` (seconds,
monotonic).
"""

from __future__ import annotations

import threading

from fireflyfs.common.errors import Unavailable

heartbeat_timeout_ms_default = 10_000


class Fence:
    """Thread-safe record of the last successful mgmtd contact."""

    def __init__(self, node_id: int, heartbeat_timeout_ms: int = heartbeat_timeout_ms_default) -> None:
        if heartbeat_timeout_ms < 2:
            raise ValueError(f"heartbeat timeout {heartbeat_timeout_ms} ms is too small")
        self.node_id = node_id
        self._timeout_ms = heartbeat_timeout_ms
        self._last_ok: float | None = None
        self._lock = threading.Lock()

    @property
    def heartbeat_timeout_ms(self) -> int:
        return self._timeout_ms

    def set_timeout(self, heartbeat_timeout_ms: int) -> None:
        """mgmtd's own timeout (from its replies) wins over the configured one."""
        if heartbeat_timeout_ms >= 2:
            self._timeout_ms = heartbeat_timeout_ms

    def contact_ok(self, now: float) -> None:
        with self._lock:
            if self._last_ok is None or now > self._last_ok:
                self._last_ok = now

    def fenced(self, now: float) -> bool:
        last = self._last_ok
        return last is None or (now - last) * 1000.0 > self._timeout_ms / 2

    def check(self, now: float) -> None:
        """Raise Unavailable when fenced."""
        last = self._last_ok
        if last is None:
            raise Unavailable(f"storage node {self.node_id} has not reached mgmtd yet")
        silent_ms = (now - last) * 1000.0
        if silent_ms > self._timeout_ms / 2:
            raise Unavailable(f"storage node {self.node_id} is fenced: no heartbeat reply for "
                              f"{silent_ms:.0f} ms (> half of the {self._timeout_ms} ms heartbeat timeout)")
