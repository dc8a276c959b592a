"""Bounded retry with backoff, shared by the storage and metadata clients.

One ``RetryBudget`` per user-level call: it keeps the deadline, the backoff and
the attempt count, and when time is up raises the last error's class with a
message that says what was being done, for how long, and what failed last
(the storage client puts the chain, target and node into that error), so
"gave up" is never anonymous. Time and sleep are parameters: tests drive them.
"""

from __future__ import annotations

import time
from typing import Callable

from fireflyfs.common.errors import FfsError
from .config import ClientConfig


class RetryBudget:
    def __init__(self, what: str, config: ClientConfig, total_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.what = what
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._started = clock()
        self._total_s = config.retry_time_s if total_s is None else total_s
        self._backoff_s = config.retry_backoff_s_first
        self.attempts = 0

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def _check(self, exc: FfsError) -> None:
        self.attempts += 1
        if self.elapsed_s >= self._total_s:
            raise type(exc)(f"{self.what}: gave up after {self.elapsed_s:.1f}s and {self.attempts} "
                            f"attempts; last error: {type(exc).__name__}: {exc}") from exc

    def backoff(self, exc: FfsError) -> None:
        """After a failure that needs the world to change (routing, a restart): wait longer each time."""
        self._check(exc)
        remaining = self._total_s - self.elapsed_s
        self._sleep(max(0.0, min(self._backoff_s, remaining)))
        self._backoff_s = min(self._backoff_s * 2, self._config.retry_backoff_s_max)

    def pause(self, exc: FfsError) -> None:
        """After a transient conflict (a chunk mid-write): a short fixed wait."""
        self._check(exc)
        self._sleep(self._config.not_committed_backoff_s)
