"""Client-side pacing per traffic class: a token bucket in front of a class's requests.

Traffic classes (traffic.py) decide who goes first at a congested queue;
request-to-send (client/rts.py) bounds how many servers answer at once. Pacing
is the third, optional tool: a client that knows its share of the bottleneck
(say 80 Mbit/s of storage on a 200 Mbit/s port) asks for data no faster than
that, so its replies never build a queue at all. 3FS paces by bounding
concurrent requests (``storage.traffic_control``); a byte rate is the TCP
analogue, and a token bucket lets short bursts through.

Off by default. Turn on per class from the environment, read once per process
and class: ``FFS_PACE_STORAGE_MBIT=80`` (rate) and optionally
``FFS_PACE_STORAGE_BURST_BYTES`` (default 256 KiB). The bulk client paces read
requests by the bytes they ask for and writes by the bytes they carry
(client/bulk_client.py).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from .traffic import TrafficClass

rate_env_format = "FFS_PACE_{}_MBIT"
burst_env_format = "FFS_PACE_{}_BURST_BYTES"
burst_bytes_default = 256 * 1024
delay_s_max = 10.0      # one request never waits longer than this (a huge request on a slow pace)


class TokenBucket:
    """Tokens are bytes, refilled at rate_bytes_per_s up to burst_bytes.

    ``reserve`` never refuses: a request larger than the tokens present takes
    them into debt and is told how long to wait, so requests keep their order
    and a request larger than the burst still goes (after its wait). Pure given
    ``now``; ``pace`` adds the clock and the sleep (both parameters).
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: int = burst_bytes_default,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 now: float | None = None) -> None:
        if rate_bytes_per_s <= 0 or burst_bytes <= 0:
            raise ValueError(f"token bucket needs a positive rate and burst, not {rate_bytes_per_s}/{burst_bytes}")
        self.rate_bytes_per_s = float(rate_bytes_per_s)
        self.burst_bytes = int(burst_bytes)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst_bytes)
        self._stamp = clock() if now is None else now
        self._lock = threading.Lock()
        self.delayed_s_total = 0.0

    def reserve(self, nbytes: int, now: float) -> float:
        """Take nbytes; seconds to wait before sending them (0 if the bucket had them)."""
        if nbytes < 0:
            raise ValueError("cannot reserve a negative byte count")
        with self._lock:
            elapsed = max(0.0, now - self._stamp)
            self._stamp = max(self._stamp, now)
            self._tokens = min(self.burst_bytes, self._tokens + elapsed * self.rate_bytes_per_s)
            self._tokens -= nbytes
            delay = 0.0 if self._tokens >= 0 else -self._tokens / self.rate_bytes_per_s
            return min(delay, delay_s_max)

    def pace(self, nbytes: int) -> float:
        """Wait until nbytes may go; returns the wait."""
        delay = self.reserve(nbytes, self._clock())
        if delay > 0:
            self.delayed_s_total += delay
            self._sleep(delay)
        return delay


_pacers: dict[tuple[TrafficClass, str, str], TokenBucket | None] = {}
_pacers_lock = threading.Lock()


def pacer(traffic_class: TrafficClass) -> TokenBucket | None:
    """The process's bucket for a class, from the environment (None: not paced)."""
    name = traffic_class.name
    rate = os.environ.get(rate_env_format.format(name), "")
    burst = os.environ.get(burst_env_format.format(name), "")
    key = (traffic_class, rate, burst)
    if key in _pacers:
        return _pacers[key]
    with _pacers_lock:
        if key not in _pacers:
            bucket = None
            if rate and float(rate) > 0:
                bucket = TokenBucket(float(rate) * 1e6 / 8, int(burst) if burst else burst_bytes_default)
            _pacers[key] = bucket
        return _pacers[key]


def pace(traffic_class: TrafficClass, nbytes: int) -> float:
    """Wait as the class's bucket says (no-op when the class is not paced); returns the wait."""
    bucket = pacer(traffic_class)
    return bucket.pace(nbytes) if bucket is not None else 0.0
