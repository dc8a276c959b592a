"""Which serving replica a read goes to: the node with the fewest requests outstanding.

3FS's LoadBalance policy: the client counts its own in-flight requests per
storage node and sends each read to the least busy serving replica, so a hot
chain's reads fan out over all its replicas and a slow node gets less. Ties
are broken by a seeded RNG so a process's clients do not all pile onto the
head. A node whose call just failed (connection refused, deadline) is avoided
for ``avoid_s`` while another replica serves, so reads fail over at once
instead of waiting for mgmtd to notice the node is gone.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from typing import Callable, Iterator, Sequence

from .routing import Route


class ReplicaSelector:
    def __init__(self, avoid_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._avoid_s = avoid_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._outstanding: dict[int, int] = {}
        self._failed_until: dict[int, float] = {}

    def pick(self, routes: Sequence[Route]) -> Route:
        """The least loaded usable route; counts one request outstanding on its node (see ``done``)."""
        if not routes:
            raise ValueError("no replica to pick from")
        now = self._clock()
        with self._lock:
            def rank(route: Route) -> tuple[bool, int, float]:
                avoided = self._failed_until.get(route.node_id, 0.0) > now
                return avoided, self._outstanding.get(route.node_id, 0), self._rng.random()
            chosen = min(routes, key=rank)
            self._outstanding[chosen.node_id] = self._outstanding.get(chosen.node_id, 0) + 1
            return chosen

    def hold(self, node_id: int, count: int = 1) -> None:
        """Count requests outstanding on a node chosen some other way (writes to the head)."""
        with self._lock:
            self._outstanding[node_id] = self._outstanding.get(node_id, 0) + count

    def done(self, node_id: int, count: int = 1) -> None:
        with self._lock:
            left = self._outstanding.get(node_id, 0) - count
            if left > 0:
                self._outstanding[node_id] = left
            else:
                self._outstanding.pop(node_id, None)

    @contextlib.contextmanager
    def holding(self, node_id: int) -> Iterator[None]:
        self.hold(node_id)
        try:
            yield
        finally:
            self.done(node_id)

    def mark_failed(self, node_id: int) -> None:
        with self._lock:
            self._failed_until[node_id] = self._clock() + self._avoid_s

    def outstanding(self, node_id: int) -> int:
        with self._lock:
            return self._outstanding.get(node_id, 0)
