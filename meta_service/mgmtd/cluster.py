"""Cluster manager state: nodes, targets, chains, chain tables and the routing version.

Registration, chain tables and status changes are persisted in the meta
LMDB (nodes/targets/chains/chain_tables DBs) in one transaction each, and each
one bumps the persisted routing version. Heartbeat-fed figures that change all
the time (last heartbeat time, used bytes, chunk counts) stay in memory and are
merged into every routing snapshot without a version bump; a change of node
status (HEARTBEAT_CONNECTED <-> HEARTBEAT_FAILED, derived from heartbeat age
against ``now_ms``) or of a target's local state is persisted and bumps it.
After a restart every known node gets a fresh grace period (its last
heartbeat counts as "now"), so a restart of this process fails nobody.

Target public state is SERVING for now; the state machine comes with CRAQ.
"""

from __future__ import annotations

import logging
import threading

from fireflyfs.common.errors import AlreadyExists, InvalidArgument, NotFound
from fireflyfs.proto import mgmtd_pb2, types_pb2

from ..store import Store, Txn, u32_key, u64_key
from .chain_table import DEFAULT_REPLICAS, generate_chains

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_MS_DEFAULT = 10_000


def _records(txn: Txn, db: str, message_cls) -> list:
    out = []
    for _key, value in txn.scan(db):
        message = message_cls()
        message.ParseFromString(value)
        out.append(message)
    return out


class ClusterState:
    def __init__(self, store: Store, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS_DEFAULT,
                 now_ms: int = 0) -> None:
        self.store = store
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._lock = threading.RLock()
        self._usage: dict[int, mgmtd_pb2.TargetHeartbeat] = {}
        with store.write() as txn:
            if txn.get_counter("routing_version", 0) == 0:
                txn.set_counter("routing_version", 1)
            nodes = _records(txn, "nodes", types_pb2.NodeInfo)
        self._last_heartbeat_ms = {node.id: now_ms for node in nodes}
        self._status = {node.id: node.status for node in nodes}

    # -- writes ------------------------------------------------------------
    def register_node(self, node_id: int, node_type: int, address: str, targets: list[types_pb2.TargetInfo],
                      now_ms: int, hostname: str = "", pid: int = 0) -> types_pb2.RoutingInfo:
        if node_id <= 0:
            raise InvalidArgument(f"node id must be positive, got {node_id}")
        if node_type == types_pb2.NODE_TYPE_UNSPECIFIED:
            raise InvalidArgument("node type is required")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"node address {address!r} is not host:port")
        ids = [target.id for target in targets]
        if len(set(ids)) != len(ids) or 0 in ids:
            raise InvalidArgument(f"target ids must be distinct and non-zero: {ids}")
        if targets and node_type != types_pb2.NODE_STORAGE:
            raise InvalidArgument("only storage nodes have targets")
        with self._lock, self.store.write() as txn:
            changed = False
            for target in targets:
                key = u64_key(target.id)
                old = txn.get_msg("targets", key, types_pb2.TargetInfo)
                if old is not None and old.node_id != node_id:
                    raise InvalidArgument(f"target {target.id} belongs to node {old.node_id}, not {node_id}")
                record = types_pb2.TargetInfo()
                if old is not None:
                    record.CopyFrom(old)
                else:
                    record.id, record.node_id = target.id, node_id
                    record.public_state = types_pb2.SERVING
                    record.local_state = types_pb2.UPTODATE
                record.path, record.capacity_bytes = target.path, target.capacity_bytes
                if record != old:
                    txn.put_msg("targets", key, record)
                    changed = True
            node = types_pb2.NodeInfo(id=node_id, type=node_type, address=address,
                                      status=types_pb2.HEARTBEAT_CONNECTED, hostname=hostname, pid=pid)
            old_node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
            if node != old_node:
                txn.put_msg("nodes", u32_key(node_id), node)
                changed = True
                log.info("node %d registered at %s (was %s)", node_id, address,
                         old_node.address if old_node else "unknown")
            if changed:
                self._bump(txn)
            self._last_heartbeat_ms[node_id] = now_ms
            self._status[node_id] = types_pb2.HEARTBEAT_CONNECTED
        return self.routing(now_ms)

    def heartbeat(self, node_id: int, targets: list[mgmtd_pb2.TargetHeartbeat], now_ms: int) -> int:
        """Record a heartbeat; returns the routing version the node should hold."""
        with self._lock:
            if node_id not in self._last_heartbeat_ms:
                raise NotFound(f"node {node_id} is not registered; call RegisterNode first")
            with self.store.read() as txn:
                records = {t.id: t for t in _records(txn, "targets", types_pb2.TargetInfo)}
            moved = []
            for beat in targets:
                record = records.get(beat.target_id)
                if record is None or record.node_id != node_id:
                    raise InvalidArgument(f"target {beat.target_id} is not registered on node {node_id}")
                self._usage[beat.target_id] = beat
                if beat.local_state and beat.local_state != record.local_state:
                    log.info("target %d local state %s -> %s (heartbeat)", record.id,
                             types_pb2.LocalTargetState.Name(record.local_state),
                             types_pb2.LocalTargetState.Name(beat.local_state))
                    record.local_state = beat.local_state
                    moved.append(record)
            if moved:
                with self.store.write() as txn:
                    for record in moved:
                        txn.put_msg("targets", u64_key(record.id), record)
                    self._bump(txn)
            self._last_heartbeat_ms[node_id] = now_ms
            self.refresh_status(now_ms)
            return self.routing_version()

    def refresh_status(self, now_ms: int) -> bool:
        """Persist node status changes implied by heartbeat age; True when the version moved."""
        with self._lock:
            wanted = {node_id: self._status_at(node_id, now_ms) for node_id in self._last_heartbeat_ms}
            if all(self._status.get(node_id) == status for node_id, status in wanted.items()):
                return False
            with self.store.write() as txn:
                for node_id, status in wanted.items():
                    if self._status.get(node_id) == status:
                        continue
                    node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
                    log.warning("node %d status %s -> %s (last heartbeat %d ms ago)", node_id,
                                types_pb2.NodeStatus.Name(node.status), types_pb2.NodeStatus.Name(status),
                                now_ms - self._last_heartbeat_ms[node_id])
                    node.status = status
                    txn.put_msg("nodes", u32_key(node_id), node)
                    self._status[node_id] = status
                self._bump(txn)
            return True

    def create_chain_table(self, table_id: int = 0, replicas: int = 0,
                           only_if_missing: bool = False) -> tuple[types_pb2.ChainTable, bool]:
        """Build a chain table over the targets not yet in a chain; (table, created)."""
        with self._lock, self.store.write() as txn:
            tables = {t.id: t for t in _records(txn, "chain_tables", types_pb2.ChainTable)}
            if only_if_missing and tables:
                return tables.get(table_id) or tables[min(tables)], False
            if table_id in tables:
                raise AlreadyExists(f"chain table {table_id} already exists")
            table_id = table_id or max(tables, default=0) + 1
            replicas = replicas or DEFAULT_REPLICAS
            by_node: dict[int, list[int]] = {}
            for target in _records(txn, "targets", types_pb2.TargetInfo):
                if target.chain_id == 0:
                    by_node.setdefault(target.node_id, []).append(target.id)
            if not by_node:
                raise InvalidArgument("no storage targets outside a chain; register storage nodes first")
            chain_targets = generate_chains(by_node, replicas)
            first_chain_id = max((c.id for c in _records(txn, "chains", types_pb2.ChainInfo)), default=0) + 1
            chain_ids = []
            for offset, members in enumerate(chain_targets):
                chain = types_pb2.ChainInfo(id=first_chain_id + offset, version=1, targets=members)
                txn.put_msg("chains", u32_key(chain.id), chain)
                chain_ids.append(chain.id)
                for target_id in members:
                    target = txn.get_msg("targets", u64_key(target_id), types_pb2.TargetInfo)
                    target.chain_id = chain.id
                    txn.put_msg("targets", u64_key(target_id), target)
            table = types_pb2.ChainTable(id=table_id, version=1, chains=chain_ids, replicas=replicas)
            txn.put_msg("chain_tables", u32_key(table_id), table)
            self._bump(txn)
            log.info("chain table %d created: %d chains of %d replicas", table_id, len(chain_ids), replicas)
            return table, True

    # -- reads -------------------------------------------------------------
    def routing_version(self) -> int:
        with self.store.read() as txn:
            return txn.get_counter("routing_version", 1)

    def routing(self, now_ms: int) -> types_pb2.RoutingInfo:
        """A consistent snapshot (one read txn) with live heartbeat figures merged in."""
        self.refresh_status(now_ms)
        with self.store.read() as txn:
            info = types_pb2.RoutingInfo(
                version=txn.get_counter("routing_version", 1),
                nodes=_records(txn, "nodes", types_pb2.NodeInfo),
                targets=_records(txn, "targets", types_pb2.TargetInfo),
                chains=_records(txn, "chains", types_pb2.ChainInfo),
                chain_tables=_records(txn, "chain_tables", types_pb2.ChainTable))
        for node in info.nodes:
            node.last_heartbeat_ms = self._last_heartbeat_ms.get(node.id, 0)
        for target in info.targets:
            usage = self._usage.get(target.id)
            if usage is not None:
                target.used_bytes, target.chunk_count = usage.used_bytes, usage.chunk_count
                target.capacity_bytes = usage.capacity_bytes or target.capacity_bytes
        return info

    def capacity(self, now_ms: int) -> tuple[int, int]:
        """(capacity bytes, used bytes) over every target, for StatFs."""
        targets = self.routing(now_ms).targets
        return sum(t.capacity_bytes for t in targets), sum(t.used_bytes for t in targets)

    # -- helpers -----------------------------------------------------------
    def _status_at(self, node_id: int, now_ms: int) -> int:
        age_ms = now_ms - self._last_heartbeat_ms[node_id]
        return types_pb2.HEARTBEAT_CONNECTED if age_ms <= self.heartbeat_timeout_ms else types_pb2.HEARTBEAT_FAILED

    @staticmethod
    def _bump(txn: Txn) -> int:
        version = txn.get_counter("routing_version", 1) + 1
        txn.set_counter("routing_version", version)
        return version
