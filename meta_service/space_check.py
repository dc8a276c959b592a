"""The meta process's periodic space check: its LMDB map and the disk under it, warned once each.

Why: the metadata store answers NoSpace when its map reaches its max or its
disk fills (store.py); this thread logs a warning well before, once per
crossing of the threshold (common/space_watch.py), and keeps the current
warning for Meta.StatFs. The map is measured against the most it may grow to,
not its current size: growing is routine, reaching the max is not.
"""

from __future__ import annotations

import logging
import shutil

from fireflyfs.common.periodic import Periodic
from fireflyfs.common import limits
from fireflyfs.common.space_watch import FillWatch

from .store import Store

log = logging.getLogger(__name__)

SPACE_CHECK_INTERVAL_MS_DEFAULT = 10_000


class MetaSpaceCheck:
    def __init__(self, store: Store, warn_fraction: float = limits.space_warn_fraction_default,
                 interval_ms: int = SPACE_CHECK_INTERVAL_MS_DEFAULT) -> None:
        if interval_ms <= 0:
            raise ValueError(f"space check interval must be positive, got {interval_ms} ms")
        self.store = store
        self.interval_ms = interval_ms
        self.watch = FillWatch(log, f"metadata store {store.path}", warn_fraction)
        self._periodic = Periodic("meta-space-check", lambda: self.interval_ms / 1000, self.check_once, log)

    def check_once(self) -> str:
        """Measure map and disk now; returns the current warnings ("" when none)."""
        usage = self.store.map_usage()
        self.watch.observe("LMDB map", usage.used_bytes, usage.map_bytes_max,
                           "raise --map-size-max and restart")
        disk = shutil.disk_usage(self.store.path)
        self.watch.observe("disk", disk.total - disk.free, disk.total, "free space on its file system")
        return self.warning()

    def warning(self) -> str:
        return "; ".join(self.watch.warnings())

    def start(self) -> None:
        self.check_once()
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
