"""Reports of replicas whose bytes failed their CRCs here, sent to the node holding them, off the read path.

When the client itself catches a replica's rotten bytes (the bulk path sends
whole blocks unverified, ReadOutcome.checksum_failed), the read goes on from
another replica and the node holding the bad copy is told
(Storage.ReportBadChunk): it re-verifies the chunk and rewrites it from a good
replica (storage_service/repair.py). The report runs on an IO thread and its
failure is only logged: the user's read never waits for it. A reader looping
over a rotten file reports each (target, chunk) once per ``interval_s``, not
once per read.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from fireflyfs.common.errors import FfsError
from .routing import Route
from .storage_transport import describe

log = logging.getLogger(__name__)

report_interval_s_default = 10.0
reported_entries_max = 4096


class BadReplicaReporter:
    """``report`` sends (via ``send``, run by ``submit``) at most once per chunk and interval."""

    def __init__(self, send: Callable[[Route, int, int], None], submit: Callable[[Callable[[], None]], Any],
                 clock: Callable[[], float] = time.monotonic,
                 interval_s: float = report_interval_s_default) -> None:
        self._send = send
        self._submit = submit
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._reported: dict[tuple[int, int, int], float] = {}    # (target, inode, index) -> when
        self.sent = 0

    def report(self, route: Route, inode_id: int, chunk_index: int) -> bool:
        """Report the replica route names for this chunk unless it was reported lately; True if sent."""
        now = self._clock()
        item = (route.target_id, inode_id, chunk_index)
        with self._lock:
            last = self._reported.get(item)
            if last is not None and now - last < self._interval_s:
                return False
            if len(self._reported) >= reported_entries_max:
                self._reported = {k: t for k, t in self._reported.items() if now - t < self._interval_s}
                if len(self._reported) >= reported_entries_max:
                    self._reported.clear()
            self._reported[item] = now
        log.warning("chunk %d:%d on %s failed its CRCs on arrival; reporting it to the node",
                    inode_id, chunk_index, describe(route))
        self._submit(lambda: self._send_quietly(route, inode_id, chunk_index))
        return True

    def _send_quietly(self, route: Route, inode_id: int, chunk_index: int) -> None:
        try:
            self._send(route, inode_id, chunk_index)
            with self._lock:
                self.sent += 1
        except FfsError as exc:     # the node is down or busy: scrub finds the chunk anyway
            log.info("report of chunk %d:%d to %s failed: %s: %s", inode_id, chunk_index, describe(route),
                     type(exc).__name__, exc)
