"""A background thread that runs one step of a service at a fixed interval.

Why one class: the meta service's GC, session reaper, space check and chain
ticker all need the same loop, and its one rule matters: a step that raises
is logged and tried again next interval, because a service must outlive one
bad pass (a store closing at shutdown, storage down for a while).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable


class Periodic:
    """Calls step() every interval_s() seconds on a daemon thread named name, until stop()."""

    def __init__(self, name: str, interval_s: Callable[[], float], step: Callable[[], object],
                 logger: logging.Logger, join_timeout_s: float = 5.0) -> None:
        self.name = name
        self._interval_s = interval_s    # read before each wait, so a changed interval takes effect
        self._step = step
        self._log = logger
        self._join_timeout_s = join_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s()):
            try:
                self._step()
            except Exception:  # noqa: BLE001 - keep the thread alive; the next interval retries
                self._log.exception("%s: pass failed, retrying next interval", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_timeout_s)
