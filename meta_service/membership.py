"""A meta server among several on etcd: its place in the routing info, and its mgmtd's election.

Each meta server keeps a record in the ``meta_servers`` table under an etcd
lease of its own, so the routing info (ClusterState.routing) lists the meta
servers alive now as NODE_META nodes and clients spread their calls over
them; a server that dies drops out when its lease ends. The mgmtd election
(mgmtd/election.py) decides which one acts as the cluster manager: it takes
over the cluster state (with a grace period for every node), grants every
write-session holder a fresh lease term (the old primary's renewals are not
stored), and steps down when its lease is lost.

A meta server's node id is kept in DATA_DIR/meta_node_id, allocated from the
store on first start (ids from META_NODE_ID_FIRST, apart from storage nodes).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from fireflyfs.common import errors
from fireflyfs.common.auth import META_NODE_ID_FIRST
from fireflyfs.proto import types_pb2

from .leases import LeaseTable, session_holders
from .mgmtd.cluster import ClusterState
from .mgmtd.election import Election, lease_ttl_s
from .store import u32_key

log = logging.getLogger(__name__)

register_retry_s = 0.5


def meta_node_id(data_dir: str, store) -> int:
    """This server's node id: kept in data_dir, allocated from the store the first time."""
    path = os.path.join(data_dir, "meta_node_id")
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    node_id = store.transact(lambda txn: txn.next_id("meta_node_id", META_NODE_ID_FIRST))
    with open(path + ".tmp", "w") as handle:
        handle.write(f"{node_id}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)
    return node_id


class MetaMembership:
    def __init__(self, store, node_id: int, address: str, cluster: ClusterState, leases: LeaseTable,
                 heartbeat_timeout_ms: int, excluded_clients: frozenset[str] = frozenset(),
                 metrics_address: str = "") -> None:
        self.store = store
        self.metrics_address = metrics_address
        self.node_id = node_id
        self.address = address
        self.cluster = cluster
        self.leases = leases
        self.excluded_clients = excluded_clients
        self.ttl_s = lease_ttl_s(heartbeat_timeout_ms)
        self.election = Election(store.client, store.prefix, node_id, address, self.ttl_s,
                                 on_elected=self._elected, on_deposed=cluster.step_down)
        cluster.primary_of = lambda: self.election.primary
        self._record_key = store.key("meta_servers", u32_key(node_id))
        self._lease = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_registered, name="meta-membership", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.election.start()

    def stop(self) -> None:
        self._stop.set()
        self.election.stop(resign=True)
        self._thread.join(5)
        if self._lease:
            try:
                self.store.client.lease_revoke(self._lease)     # leave the routing info now
            except errors.FfsError as exc:
                log.warning("meta server %d: leaving the routing info failed: %s", self.node_id, exc)

    def _elected(self, guard) -> None:
        self.cluster.take_over(guard, time.time_ns() // 1_000_000)
        self.leases.grant_all(session_holders(self.store, excluded=self.excluded_clients))

    def _register(self) -> None:
        lease = self.store.client.lease_grant(self.ttl_s)
        record = types_pb2.NodeInfo(id=self.node_id, type=types_pb2.NODE_META, address=self.address,
                                    status=types_pb2.HEARTBEAT_CONNECTED, hostname=socket.gethostname(),
                                    pid=os.getpid(), metrics_address=self.metrics_address)
        self.store.client.put(self._record_key, record.SerializeToString(), lease_id=lease)
        self._lease = lease
        lost = threading.Event()
        self.store.client.lease_keepalive(lease, max(0.2, self.ttl_s / 3), on_lost=lambda _: lost.set())
        log.info("meta server %d registered at %s", self.node_id, self.address)
        while not self._stop.is_set() and not lost.is_set():
            self._stop.wait(0.2)

    def _keep_registered(self) -> None:
        while not self._stop.is_set():
            try:
                self._register()
            except errors.FfsError as exc:
                log.warning("meta server %d: registration in etcd failed (retrying): %s", self.node_id, exc)
                self._stop.wait(register_retry_s)
