"""The periodic chain update: ``ClusterState.tick`` on a background thread.

Why: heartbeats drive the state machine, but a node that dies sends none, and
with every storage node dead nobody would call in at all. 3FS's mgmtd
recomputes chains every second; so do we (interval configurable; the clock is
a parameter so a test can drive it).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from fireflyfs.common.periodic import Periodic

from .cluster import ClusterState

log = logging.getLogger(__name__)

TICK_INTERVAL_MS_DEFAULT = 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ClusterTicker:
    def __init__(self, cluster: ClusterState, interval_ms: int = TICK_INTERVAL_MS_DEFAULT,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        if interval_ms <= 0:
            raise ValueError(f"tick interval must be positive, got {interval_ms} ms")
        self.cluster = cluster
        self.interval_ms = interval_ms
        self.clock_ms = clock_ms
        self.ticks = 0
        self._periodic = Periodic("mgmtd-ticker", lambda: self.interval_ms / 1000, self.tick_once, log)

    def tick_once(self) -> bool:
        self.ticks += 1
        return self.cluster.tick(self.clock_ms())

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
