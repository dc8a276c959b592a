"""Which meta server's mgmtd is primary: an etcd lease and one election key (issue 11).

Every meta server on the etcd engine runs a mgmtd; one is primary. To become
primary a server grants itself a lease (TTL: a third of the heartbeat
timeout, at least etcd's minimum) and creates the election key under it in
one Txn that succeeds only if the key does not exist (create_revision == 0).
The key's value names the primary (``<node id> <address>``), so standbys
and NotPrimary answers can point at it. The primary keeps the lease alive;
if a renewal finds it gone (expired while the primary was cut off or
paused), the primary steps down at once.

Never two primaries acting: every cluster-state write of the primary is
fenced with ``Guard(key, create_revision)`` (etcd_store.py), so a primary
whose lease expired cannot write even before it notices: its commit fails
the compare and answers NotPrimary. Standbys poll the key and campaign when
it is gone, so a dead primary is replaced within its lease TTL plus a poll.

Takeover (``on_elected``): the new primary reloads cluster state and gives
every node a full heartbeat timeout of grace before timing it out: the
heartbeats the old primary saw are not in the store.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from fireflyfs.common import errors
from fireflyfs.proto.etcd.client import EtcdClient, compare_create_revision, op_put

from ..etcd_store import Guard

log = logging.getLogger(__name__)

lease_ttl_s_min = 2           # etcd refuses shorter leases than about its election timeout
poll_interval_s = 0.5
ELECTION_KEY = "mgmtd/primary"


def lease_ttl_s(heartbeat_timeout_ms: int) -> int:
    return max(lease_ttl_s_min, heartbeat_timeout_ms // 3000)


def primary_label(node_id: int, address: str) -> bytes:
    return f"{node_id} {address}".encode()


def parse_label(value: bytes) -> tuple[int, str]:
    node_id, _, address = value.decode().partition(" ")
    return int(node_id), address


class Election:
    """Campaigns for the election key, holds it, and reports who is primary."""

    def __init__(self, client: EtcdClient, prefix: bytes, node_id: int, address: str, ttl_s: int,
                 on_elected: Callable[[Guard], None], on_deposed: Callable[[], None],
                 poll_s: float = poll_interval_s) -> None:
        self.client = client
        self.key = prefix + ELECTION_KEY.encode()
        self.node_id = node_id
        self.address = address
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lease = 0
        self.guard: Guard | None = None               # set while this server is primary
        self.primary: tuple[int, str] | None = None   # (node id, address) of the primary as last seen
        self.terms = 0                                 # times this server became primary
        self._last_round_ok = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="mgmtd-election", daemon=True)

    @property
    def is_primary(self) -> bool:
        return self.guard is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self, resign: bool = True) -> None:
        """Stop campaigning; resign (revoke the lease, so a standby takes over at once) if primary."""
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            lease, self._lease = self._lease, 0
            was_primary = self.guard is not None
            self.guard = None
        if was_primary:
            self._on_deposed()
        if lease and resign:
            try:
                self.client.lease_revoke(lease)
            except errors.FfsError as exc:
                log.warning("mgmtd could not resign (its lease ends by itself): %s", exc)

    def step(self) -> None:
        """One round: see who holds the key; campaign when nobody does."""
        held = self.client.get(self.key)
        if held is not None:
            self.primary = parse_label(held.value)
            if self.guard is not None and held.create_revision != self.guard.create_revision:
                self._depose("another mgmtd holds the election key")
            return
        if self.guard is not None:
            self._depose("the election key is gone (lease expired)")
        self._campaign()

    def _campaign(self) -> None:
        lease = self.client.lease_grant(self.ttl_s)
        label = primary_label(self.node_id, self.address)
        result = self.client.txn([compare_create_revision(self.key, "=", 0)], [op_put(self.key, label, lease)])
        if not result.succeeded:
            self.client.lease_revoke(lease)
            return
        with self._lock:
            self._lease = lease
            self.guard = Guard(self.key, result.revision)
            self.primary = (self.node_id, self.address)
            self.terms += 1
        self.client.lease_keepalive(lease, max(0.2, self.ttl_s / 3), on_lost=self._lost)
        log.warning("mgmtd on node %d (%s) is now primary (lease %x, ttl %d s)", self.node_id, self.address,
                    lease, self.ttl_s)
        self._on_elected(self.guard)

    def _lost(self, reason: errors.FfsError) -> None:
        self._depose(f"its lease was lost: {reason}")

    def _depose(self, why: str) -> None:
        with self._lock:
            if self.guard is None:
                return
            self.guard, self._lease = None, 0
        log.warning("mgmtd on node %d steps down: %s", self.node_id, why)
        self._on_deposed()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self._last_round_ok = time.monotonic()
            except errors.FfsError as exc:
                log.warning("mgmtd election round failed: %s", exc)
                if time.monotonic() - self._last_round_ok > self.ttl_s:
                    # Cut off from etcd for longer than the lease: it has expired there (and the
                    # guard already fences our writes); stop acting here too.
                    self._depose(f"etcd unreachable for over the {self.ttl_s} s lease")
            self._stop.wait(self.poll_s)
