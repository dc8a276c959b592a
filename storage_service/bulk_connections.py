"""The bulk listener's limits, and the clock each connection runs against.

A connection is always in one ``Phase``. The listener's watchdog
(bulk_server.py) cuts a connection whose phase has lasted too long
(``overdue``): idle between requests for ``idle_s_max`` (pooled client
connections come back within seconds; one silent for minutes holds a thread
and a descriptor for nothing), or receiving one request, or sending one
reply, for ``request_s_max`` in all. The whole-request deadline is what stops
a slow trickle: a peer sending a byte a second satisfies every per-recv
timeout forever. Cutting is ``shutdown()`` from the watchdog thread, which
wakes the connection's thread in its blocking recv or send; phase changes and
cuts take the connection's lock, so a request that has been fully received is
never cut before it is applied.

WORKING (the node applies a request: chunk engine, chain driver, a
request-to-send wait) is bounded by those parts' own deadlines, not here.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import socket
import threading
import time
from typing import Callable

from fireflyfs.common import limits
from fireflyfs.common.errors import InvalidArgument
from fireflyfs.proto import bulk_wire as wire

from .bulk_buffers import size_class


class Phase(enum.Enum):
    IDLE = "idle"                  # between requests, since the last reply
    RECEIVING = "receiving"        # a request frame, since its first byte
    WORKING = "working"            # the node applies a request
    SENDING = "sending"            # a reply, since its first byte


@dataclasses.dataclass(frozen=True, slots=True)
class BulkLimits:
    """What one bulk listener holds at most; defaults in common/limits.py, flags in server.py."""

    connections_max: int = limits.bulk_connections_max
    connections_per_peer_max: int = limits.bulk_connections_per_peer_max
    inflight_bytes_max: int = limits.bulk_inflight_bytes_max
    inflight_bytes_per_peer_max: int = limits.bulk_inflight_bytes_per_peer_max
    budget_wait_s_max: float = limits.bulk_budget_wait_s_max
    idle_s_max: float = limits.bulk_idle_s_max
    request_s_max: float = limits.bulk_request_s_max

    def __post_init__(self) -> None:
        largest_request_bytes = max(wire.write_data_bytes_max, wire.read_ios_max * wire.READ_IO.size)
        if not size_class(largest_request_bytes) <= self.inflight_bytes_per_peer_max <= self.inflight_bytes_max:
            raise InvalidArgument(f"bulk in-flight bytes per peer ({self.inflight_bytes_per_peer_max}) must hold "
                                  f"the largest request ({size_class(largest_request_bytes)} bytes) and fit "
                                  f"the total ({self.inflight_bytes_max})")
        if not 1 <= self.connections_per_peer_max <= self.connections_max:
            raise InvalidArgument(f"bulk connection caps: per peer {self.connections_per_peer_max} must be "
                                  f"in 1..{self.connections_max} (the total)")
        for name in ("budget_wait_s_max", "idle_s_max", "request_s_max"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"bulk {name} must be positive, not {getattr(self, name)}")

    @property
    def watch_interval_s(self) -> float:
        """How often the watchdog looks: a cut comes at most this late."""
        return min(1.0, max(0.02, min(self.idle_s_max, self.request_s_max) / 8))


def overdue(phase: Phase, since: float, now: float, bulk_limits: BulkLimits) -> str | None:
    """Why a connection in phase since `since` must be cut at `now`, or None."""
    if phase is Phase.IDLE and now - since > bulk_limits.idle_s_max:
        return f"idle for more than {bulk_limits.idle_s_max:g} s"
    if phase in (Phase.RECEIVING, Phase.SENDING) and now - since > bulk_limits.request_s_max:
        return f"{phase.value} one frame for more than {bulk_limits.request_s_max:g} s"
    return None


class ConnectionCut(ConnectionError):
    """The watchdog cut this connection (or the node is stopping)."""


class Connection:
    """One accepted bulk connection: its socket, its peer address and the phase it is in."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.sock = sock
        self.accepted_sock = sock     # the listener's key for it (sock becomes the TLS socket over it)
        self.peer_host, self.peer_port = peer
        self._clock = clock
        self._lock = threading.Lock()
        self.phase = Phase.IDLE
        self.since = clock()
        self.cut_reason: str | None = None

    def enter(self, phase: Phase) -> None:
        """Start a phase now; ConnectionCut if the connection was cut meanwhile."""
        with self._lock:
            if self.cut_reason is not None:
                raise ConnectionCut(self.cut_reason)
            self.phase = phase
            self.since = self._clock()

    def receiving(self) -> None:
        self.enter(Phase.RECEIVING)

    def deadline(self, bulk_limits: BulkLimits) -> float:
        """When the current receiving or sending phase will be cut (clock time)."""
        return self.since + bulk_limits.request_s_max

    def now(self) -> float:
        return self._clock()

    def cut_if_overdue(self, now: float, bulk_limits: BulkLimits) -> str | None:
        """Shut the socket down if its phase has lasted too long; the reason, or None."""
        with self._lock:
            if self.cut_reason is not None:
                return None
            reason = overdue(self.phase, self.since, now, bulk_limits)
            if reason is None:
                return None
            self.cut_reason = reason
            try:
                self.sock.shutdown(socket.SHUT_RDWR)   # wakes the connection's thread
            except OSError:
                pass
            return reason


class BurstLog:
    """Logs the first of a burst of like events, then at most one line per interval_s with a count.

    An abusive peer can cause thousands of refusals or bad frames a second;
    one line each would bury everything else in the log.
    """

    def __init__(self, logger: logging.Logger, level: int, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._level = level
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_at = float("-inf")
        self._suppressed = 0

    def event(self, message: str, *args) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next_at:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next_at = now + self._interval_s
        if suppressed:
            message += f" (and {suppressed} more like it since the last report)"
        self._logger.log(self._level, message, *args)
