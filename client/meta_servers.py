"""The meta servers one client talks to: the addresses it was given plus those routing info lists.

On etcd several stateless meta servers serve one namespace (issue 11). A
client is given one or more of them (``ffs://h1:p1,h2:p2/path``,
``FFS_ADDRESS``, ``FfsClient("h1:p1,h2:p2")``), learns the rest from the
routing info (NODE_META nodes, which live there only while their server
does), spreads its calls over them round robin, and skips a server that
just failed for ``down_s``. Any server answers any call: request ids and
idempotency records live in the shared store, so a retry that lands on
another server gets the first outcome.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable, Iterable

from fireflyfs.common.primary_follower import split_addresses

down_s_default = 2.0


class MetaServers:
    def __init__(self, addresses: str | list[str], down_s: float = down_s_default,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.configured = split_addresses(addresses) if isinstance(addresses, str) else list(addresses)
        self.down_s = down_s
        self._clock = clock
        self._known = list(self.configured)
        self._down_until: dict[str, float] = {}
        self._turn = itertools.count()
        self._lock = threading.Lock()

    @property
    def known(self) -> list[str]:
        return list(self._known)

    def alive(self) -> list[str]:
        now = self._clock()
        return [address for address in self._known if self._down_until.get(address, 0.0) <= now]

    def pick(self) -> str:
        """The server for the next call: round robin over those not down (all, if every one is)."""
        candidates = self.alive() or self._known
        return candidates[next(self._turn) % len(candidates)]

    def failed(self, address: str) -> None:
        with self._lock:
            self._down_until[address] = self._clock() + self.down_s

    def learn(self, addresses: Iterable[str]) -> None:
        """The meta servers the routing info lists now (the configured ones always stay)."""
        listed = [address for address in addresses if address]
        if not listed:
            return
        with self._lock:
            self._known = self.configured + [a for a in dict.fromkeys(listed) if a not in self.configured]
