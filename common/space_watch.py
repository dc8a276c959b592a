"""A warning, logged once, when a map or a disk passes a fill threshold (and a note when it falls back).

Why: a store that fills stops taking writes (NoSpace); the operator should
hear about it well before, once, not every heartbeat. ``FillWatch.observe`` is
called wherever space is measured anyway (storage: every heartbeat; meta: a
periodic check) and returns the current warning text ("" when fine) for the
replies that report space (Storage.SpaceInfo, Meta.StatFs).
"""

from __future__ import annotations

import logging
import threading

from . import limits


class FillWatch:
    """Per named resource: above or below warn_fraction of its size, with one log line per crossing."""

    def __init__(self, logger: logging.Logger, owner: str,
                 warn_fraction: float = limits.space_warn_fraction_default) -> None:
        if not 0 < warn_fraction <= 1:
            raise ValueError(f"space warning threshold {warn_fraction} not in (0, 1]")
        self.log = logger
        self.owner = owner
        self.warn_fraction = warn_fraction
        self._above: dict[str, str] = {}     # resource -> its warning, while above the threshold
        self._lock = threading.Lock()

    def observe(self, resource: str, used_bytes: int, size_bytes: int, advice: str = "") -> str:
        """Record one measurement; returns this resource's warning ("" when below the threshold)."""
        fraction = used_bytes / size_bytes if size_bytes > 0 else 0.0
        above = fraction >= self.warn_fraction
        text = (f"{self.owner}: {resource} {fraction:.0%} full ({used_bytes} of {size_bytes} bytes, "
                f"warning at {self.warn_fraction:.0%}){'; ' + advice if advice else ''}") if above else ""
        with self._lock:
            was_above = resource in self._above
            if above:
                self._above[resource] = text
            else:
                self._above.pop(resource, None)
        if above and not was_above:
            self.log.warning("%s", text)
        elif was_above and not above:
            self.log.info("%s: %s back below %.0f%% full (%.0f%%)", self.owner, resource,
                          self.warn_fraction * 100, fraction * 100)
        return text

    def warnings(self) -> list[str]:
        """Every resource's current warning, in resource order."""
        with self._lock:
            return [self._above[name] for name in sorted(self._above)]
