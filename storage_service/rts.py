"""Request-to-send, storage side: send read data only once the client granted it, or fail in time.

3FS (``StorageOperator`` + ``RDMAControl``): when a read request carries the
control flag, the server, after its disk read, asks the client for permission
(``applyTransmission``) before it takes its RDMA-write slot, and gives up after
``rdma_transmission_req_timeout``. Here the bulk handler (bulk_server.py) asks
with an RTS frame on the request's own connection and waits for GRANT; this
class holds the policy and the counters, no sockets.

The timeout keeps a client that stops granting from holding a server thread
(and the chunk files it has open) forever: the read fails with a retryable
``Unavailable`` naming the wait, the connection stays usable (a grant that
arrives later is ignored), and other clients never notice. Default 10 s,
``FFS_STORAGE_RTS_GRANT_TIMEOUT_S`` to change it.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from fireflyfs.common.errors import Unavailable

grant_timeout_env = "FFS_STORAGE_RTS_GRANT_TIMEOUT_S"
grant_timeout_s_default = 10.0


class GrantTimeout(Unavailable):
    """The client granted no transfer within the server's timeout."""


@dataclasses.dataclass(slots=True)
class GateStats:
    asked: int = 0
    granted: int = 0
    timed_out: int = 0
    sending_now: int = 0
    sending_peak: int = 0     # most granted replies being sent at once through this gate


class GrantGate:
    """Policy and bookkeeping of request-to-send for one storage node (or, in tests, several)."""

    def __init__(self, grant_timeout_s: float = grant_timeout_s_default) -> None:
        if grant_timeout_s <= 0:
            raise ValueError(f"request-to-send grant timeout must be positive, not {grant_timeout_s}")
        self.grant_timeout_s = grant_timeout_s
        self._lock = threading.Lock()
        self.stats = GateStats()

    @classmethod
    def from_env(cls, environ=None) -> "GrantGate":
        environ = os.environ if environ is None else environ
        raw = environ.get(grant_timeout_env)
        try:
            return cls(float(raw) if raw else grant_timeout_s_default)
        except ValueError as exc:
            raise ValueError(f"{grant_timeout_env}={raw!r}: {exc}") from exc

    def asking(self) -> None:
        with self._lock:
            self.stats.asked += 1

    def timed_out(self, ios: int, data_bytes: int, peer: str) -> GrantTimeout:
        """The error the read fails with when no grant came (counted)."""
        with self._lock:
            self.stats.timed_out += 1
        return GrantTimeout(f"request-to-send: client {peer} granted no transfer within "
                            f"{self.grant_timeout_s:g} s (read of {ios} IOs, {data_bytes} bytes); retry")

    def begin_sending(self) -> None:
        """A granted reply starts going out (counted, to check the client's bound in tests)."""
        with self._lock:
            self.stats.granted += 1
            self.stats.sending_now += 1
            self.stats.sending_peak = max(self.stats.sending_peak, self.stats.sending_now)

    def end_sending(self) -> None:
        with self._lock:
            self.stats.sending_now -= 1
