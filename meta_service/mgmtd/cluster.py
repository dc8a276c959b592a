"""Cluster manager state: nodes, targets, chains, chain tables and the routing version.

Registration, chain tables, status and state changes are persisted in the meta
LMDB (nodes/targets/chains/chain_tables DBs; node incarnations and admin
offline flags as named counters) in one transaction each, and each change bumps
the persisted routing version. Heartbeat figures that change all the time
(last heartbeat time, used bytes, chunk counts) stay in memory and are merged
into every routing snapshot without a version bump.

What feeds the target-state machine (target_states.py), and why:
  * the local state a storage node reports for each target in its heartbeat;
  * LOCAL_OFFLINE inferred for every target of a node whose last heartbeat is
    older than the heartbeat timeout (the node is presumed dead; storage fences
    itself at half that, so it stopped serving before we move its chains on);
  * LOCAL_OFFLINE for every target of a node that registers with a NEW
    incarnation (process start time): a restarted process may have missed
    writes, so it must resync instead of resuming SERVING;
  * LOCAL_OFFLINE for targets an operator set offline (SetTargetState).
Each of these, and a periodic ``tick``, runs one round of chain recomputation
(chain_updater.py) in the same transaction. After a restart of this process
every known node gets a fresh grace period (its last heartbeat counts as
"now"), so restarting mgmtd fails nobody.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from fireflyfs.common.errors import AlreadyExists, InvalidArgument, NotFound, NotPrimary
from fireflyfs.proto import mgmtd_pb2, types_pb2

from fireflyfs.meta_service.store import Store, Txn, u32_key, u64_key
from . import chain_moves
from .chain_table import default_replicas, generate_chains
from .chain_updater import update_chains
from .rebalance import plan_drain, plan_rebalance
from .target_states import LocalState

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_MS_DEFAULT = 10_000
_ADMIN_OFFLINE_PREFIX = "mgmtd.admin_offline."


def _records(txn: Txn, db: str, message_cls) -> list:
    out = []
    for _key, value in txn.scan(db):
        message = message_cls()
        message.ParseFromString(value)
        out.append(message)
    return out


def _incarnation_key(node_id: int) -> str:
    return f"mgmtd.incarnation.{node_id}"


def _share_free_space(targets, usage_by_target: dict) -> None:
    """Each target without a quota gets as capacity its used bytes plus an equal share of its file
    system's free space, shared with every target on that file system (fs_id), of any node.

    Each target reporting its whole file system's size made sums count one disk once per
    target (3 nodes x 2 targets on one disk: 6 disks). With shares, capacity summed over
    targets is the bytes held plus the free bytes of each file system once.
    """
    sharing: dict[str, int] = {}
    for target in targets:
        usage = usage_by_target.get(target.id)
        if usage is not None and usage.fs_id and not usage.capacity_configured:
            sharing[usage.fs_id] = sharing.get(usage.fs_id, 0) + 1
    for target in targets:
        usage = usage_by_target.get(target.id)
        if usage is not None and usage.fs_id in sharing and not usage.capacity_configured:
            target.capacity_bytes = usage.used_bytes + usage.fs_free_bytes // sharing[usage.fs_id]


def _movable(admin_offline: set[int], statuses: dict[int, int]):
    """Whether a move may use a target (as a new replica, or count it as free): not held offline
    by an operator, its node connected, and not reported offline."""
    return lambda record: (record.id not in admin_offline and record.local_state != types_pb2.LOCAL_OFFLINE
                           and statuses.get(record.node_id) == types_pb2.HEARTBEAT_CONNECTED)


class ClusterState:
    def __init__(self, store: Store, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS_DEFAULT,
                 now_ms: int = 0, acting: bool = True) -> None:
        if heartbeat_timeout_ms <= 0:
            raise InvalidArgument(f"heartbeat timeout must be positive, got {heartbeat_timeout_ms} ms")
        self.store = store
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._lock = threading.RLock()
        self._usage: dict[int, mgmtd_pb2.TargetHeartbeat] = {}
        self.guard = None              # with etcd: the election key this mgmtd holds as primary
        # LMDB: one meta server, always primary. etcd: the meta server starts it as a standby
        # (acting=False) and the election makes it act; a standby answers NotPrimary naming
        # primary_hint().
        self.acting = acting
        self.primary_of: Callable[[], tuple[int, str] | None] = lambda: None   # (node id, address)

        def load(txn):
            if txn.get_counter("routing_version", 0) == 0:
                txn.set_counter("routing_version", 1)
            return (_records(txn, "nodes", types_pb2.NodeInfo),
                    {int(key.decode()[len(_ADMIN_OFFLINE_PREFIX):])
                     for key, _ in txn.scan("counters", _ADMIN_OFFLINE_PREFIX.encode())})

        nodes, self._admin_offline = store.transact(load)
        self._settled = False          # the last chain round changed nothing (skip the next)
        self._last_heartbeat_ms = {node.id: now_ms for node in nodes}
        self._status = {node.id: node.status for node in nodes}

    # -- writes ------------------------------------------------------------
    def register_node(self, node_id: int, node_type: int, address: str, targets: list[types_pb2.TargetInfo],
                      now_ms: int, hostname: str = "", pid: int = 0,
                      incarnation: int = 0, bulk_address: str = "",
                      metrics_address: str = "") -> types_pb2.RoutingInfo:
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
        self._require_primary()

        def mutate(txn):
            status = {**self._status, node_id: types_pb2.HEARTBEAT_CONNECTED}   # fresh on every run
            for target in targets:
                old = txn.get_msg("targets", u64_key(target.id), types_pb2.TargetInfo)
                if old is not None and old.node_id != node_id:
                    raise InvalidArgument(f"target {target.id} belongs to node {old.node_id}, not {node_id}")
            known = txn.get_counter(_incarnation_key(node_id), 0)
            if incarnation and incarnation < known:
                raise InvalidArgument(f"node {node_id}: incarnation {incarnation} is older than the "
                                      f"registered {known}; a newer process of this node registered")
            changed = False
            for target in targets:
                key = u64_key(target.id)
                old = txn.get_msg("targets", key, types_pb2.TargetInfo)
                record = types_pb2.TargetInfo()
                if old is not None:
                    record.CopyFrom(old)
                else:
                    record.id, record.node_id = target.id, node_id
                    record.public_state = types_pb2.SERVING
                    record.local_state = types_pb2.ONLINE
                record.path, record.capacity_bytes = target.path, target.capacity_bytes
                if record != old:
                    txn.put_msg("targets", key, record)
                    changed = True
            if incarnation and incarnation != known:
                txn.set_counter(_incarnation_key(node_id), incarnation)
                if known:
                    changed |= self._restarted(txn, node_id, known, incarnation)
            node = types_pb2.NodeInfo(id=node_id, type=node_type, address=address,
                                      status=types_pb2.HEARTBEAT_CONNECTED, hostname=hostname, pid=pid,
                                      bulk_address=bulk_address, metrics_address=metrics_address)
            old_node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
            if node != old_node:
                txn.put_msg("nodes", u32_key(node_id), node)
                changed = True
                log.info("node %d registered at %s (was %s)", node_id, address,
                         old_node.address if old_node else "unknown")
            changed |= self._update_chains(txn, f"node {node_id} registered", status=status)
            if changed:
                self._bump(txn)
            return status

        with self._lock:
            self._status = self.store.transact(mutate, guard=self.guard)
            self._last_heartbeat_ms[node_id] = now_ms
        return self.routing(now_ms)

    def heartbeat(self, node_id: int, targets: list[mgmtd_pb2.TargetHeartbeat], now_ms: int,
                  incarnation: int = 0) -> int:
        """Record a heartbeat, advance the chains; returns the routing version the node should hold.

        The common case (same local states, no node timed out, chains settled)
        takes only a read transaction: heartbeats never queue behind metadata
        writes for nothing.
        """
        self._require_primary()
        with self._lock:
            if node_id not in self._last_heartbeat_ms:
                raise NotFound(f"node {node_id} is not registered; call RegisterNode first")
            with self.store.read() as txn:
                moved = self._check_heartbeat(txn, node_id, targets, incarnation)
                version = txn.get_counter("routing_version", 1)
            for beat in targets:
                self._usage[beat.target_id] = beat
            self._last_heartbeat_ms[node_id] = now_ms
            if not moved and self._settled and not self._status_due(now_ms):
                return version
            def mutate(txn):
                status = dict(self._status)          # a rerun starts again from what was applied
                changed = False
                for record, reported in self._check_heartbeat(txn, node_id, targets, incarnation):
                    log.info("target %d local state %s -> %s (heartbeat)", record.id,
                             types_pb2.LocalTargetState.Name(record.local_state),
                             types_pb2.LocalTargetState.Name(reported))
                    record.local_state = reported
                    txn.put_msg("targets", u64_key(record.id), record)
                    changed = True
                changed |= self._refresh_status(txn, now_ms, status)
                changed |= self._update_chains(txn, f"heartbeat of node {node_id}", status=status)
                if changed:
                    self._bump(txn)
                return txn.get_counter("routing_version", 1), status

            version, self._status = self.store.transact(mutate, guard=self.guard)
            return version

    def tick(self, now_ms: int) -> bool:
        """The periodic round: time out silent nodes, advance every chain; True when routing moved."""
        with self._lock:
            if not self.acting or (self._settled and not self._status_due(now_ms)):
                return False
            return self._tick(now_ms)

    def _tick(self, now_ms: int) -> bool:
        def mutate(txn):
            status = dict(self._status)
            changed = self._refresh_status(txn, now_ms, status)
            changed |= self._update_chains(txn, "periodic update", status=status)
            if changed:
                self._bump(txn)
            return changed, status

        with self._lock:
            changed, self._status = self.store.transact(mutate, guard=self.guard)
            return changed

    def refresh_status(self, now_ms: int) -> bool:
        """Apply node timeouts due by now_ms (no write when none is); True when routing moved."""
        with self._lock:
            if not self.acting or not self._status_due(now_ms):
                return False
            return self._tick(now_ms)

    def set_target_state(self, target_id: int, offline: bool,
                         now_ms: int) -> tuple[types_pb2.ChainInfo | None, types_pb2.TargetInfo, int]:
        """Administrative offline/online of one target; (its chain, the target, routing version).

        Offline holds the target OFFLINE until set online. Taking the last
        SERVING target of a chain offline is refused: it would stop the chain.
        """
        self._require_primary()
        with self._lock:
            self.refresh_status(now_ms)

            def mutate(txn):
                record = txn.get_msg("targets", u64_key(target_id), types_pb2.TargetInfo)
                if record is None:
                    raise NotFound(f"target {target_id} does not exist")
                chain = (txn.get_msg("chains", u32_key(record.chain_id), types_pb2.ChainInfo)
                         if record.chain_id else None)
                admin = set(self._admin_offline)
                if offline and target_id not in admin and chain is not None:
                    others = [txn.get_msg("targets", u64_key(t), types_pb2.TargetInfo)
                              for t in chain.targets if t != target_id]
                    if (record.public_state == types_pb2.SERVING
                            and not any(o.public_state == types_pb2.SERVING for o in others)):
                        raise InvalidArgument(f"target {target_id} is the last SERVING target of chain "
                                              f"{chain.id}; taking it offline would stop the chain")
                flag = _ADMIN_OFFLINE_PREFIX + str(target_id)
                changed = (target_id in admin) != offline
                if changed:
                    log.warning("target %d administratively %s", target_id, "offline" if offline else "online")
                if offline:
                    admin.add(target_id)
                    txn.set_counter(flag, 1)
                else:
                    admin.discard(target_id)
                    txn.delete("counters", flag.encode())
                changed |= self._update_chains(txn, f"admin set target {target_id} "
                                                    f"{'offline' if offline else 'online'}", admin)
                if changed:
                    self._bump(txn)
                record = txn.get_msg("targets", u64_key(target_id), types_pb2.TargetInfo)
                chain = (txn.get_msg("chains", u32_key(record.chain_id), types_pb2.ChainInfo)
                         if record.chain_id else None)
                return chain, record, txn.get_counter("routing_version", 1), admin

            chain, record, version, self._admin_offline = self.store.transact(mutate, guard=self.guard)
            return chain, record, version

    def create_chain_table(self, table_id: int = 0, replicas: int = 0,
                           only_if_missing: bool = False) -> tuple[types_pb2.ChainTable, bool]:
        """Build a chain table over the targets not yet in a chain; (table, created).

        replicas 0 picks the default (3 with at least 3 storage nodes, else 1).
        Every member starts SERVING at chain version 1: the targets are empty,
        so there is nothing to sync.
        """
        def mutate(txn):
            tables = {t.id: t for t in _records(txn, "chain_tables", types_pb2.ChainTable)}
            if only_if_missing and tables:
                return tables.get(table_id) or tables[min(tables)], False
            if table_id in tables:
                raise AlreadyExists(f"chain table {table_id} already exists")
            new_id = table_id or max(tables, default=0) + 1
            by_node: dict[int, list[int]] = {}
            incoming = {move.to_target for move in chain_moves.pending(txn)}
            for target in _records(txn, "targets", types_pb2.TargetInfo):
                if target.chain_id == 0 and not target.retired and target.id not in incoming:
                    by_node.setdefault(target.node_id, []).append(target.id)
            if not by_node:
                raise InvalidArgument("no storage targets outside a chain; register storage nodes first")
            copies = replicas or default_replicas(len(by_node))
            chain_targets = generate_chains(by_node, copies)
            first_chain_id = max((c.id for c in _records(txn, "chains", types_pb2.ChainInfo)), default=0) + 1
            chain_ids = []
            for offset, members in enumerate(chain_targets):
                chain = types_pb2.ChainInfo(id=first_chain_id + offset, version=1, targets=members)
                txn.put_msg("chains", u32_key(chain.id), chain)
                chain_ids.append(chain.id)
                for target_id in members:
                    target = txn.get_msg("targets", u64_key(target_id), types_pb2.TargetInfo)
                    target.chain_id = chain.id
                    target.public_state = types_pb2.SERVING
                    txn.put_msg("targets", u64_key(target_id), target)
            table = types_pb2.ChainTable(id=new_id, version=1, chains=chain_ids, replicas=copies)
            txn.put_msg("chain_tables", u32_key(new_id), table)
            self._bump(txn)
            self._settled = False      # new chains: the next round checks their members' states
            log.info("chain table %d created: %d chains of %d replicas", new_id, len(chain_ids), copies)
            return table, True

        self._require_primary()
        with self._lock:
            return self.store.transact(mutate, guard=self.guard)

    def _usable(self, now_ms: int):
        return _movable(set(self._admin_offline),
                        {node: self._status_at(node, now_ms) for node in self._last_heartbeat_ms})

    def _plan_moves(self, plan, reason: str, dry_run: bool, moves_in_flight: int, now_ms: int,
                    before=None) -> tuple[list, list, list[int]]:
        """Run plan(placement) in one transaction; queue its moves unless dry_run.
        (planned, pending, draining nodes)."""
        def mutate(txn):
            if before is not None:
                before(txn)
            planned = plan(chain_moves.placement(txn, self._usable(now_ms)))
            if dry_run:
                moves = [types_pb2.ChainMove(chain_id=p.chain_id, from_target=p.from_target,
                                             to_target=p.to_target, reason=reason) for p in planned]
                return moves, chain_moves.pending(txn) + moves, sorted(chain_moves.draining(txn))
            chain_moves.set_in_flight(txn, moves_in_flight)
            moves = chain_moves.queue(txn, planned, reason)
            if self._update_chains(txn, reason) or moves:
                self._bump(txn)
            return moves, chain_moves.pending(txn), sorted(chain_moves.draining(txn))

        self._require_primary()
        with self._lock:
            self.refresh_status(now_ms)
            if dry_run:
                with self.store.read() as txn:
                    return mutate(txn)
            return self.store.transact(mutate, guard=self.guard)

    def rebalance(self, now_ms: int, dry_run: bool = False, moves_in_flight: int = 0,
                  cancel: bool = False) -> tuple[list, list, list[int]]:
        """Queue the moves that even out replicas per storage node (new nodes fill up); cancel
        drops every queued move, takes back the syncing ones and ends every drain."""
        if moves_in_flight < 0:
            raise InvalidArgument(f"moves in flight must be positive, got {moves_in_flight}")
        if cancel:
            self._require_primary()

            def mutate(txn):
                moves = chain_moves.cancel(txn)
                if self._update_chains(txn, "moves cancelled") or moves:
                    self._bump(txn)
                return moves, [], []

            with self._lock:
                return self.store.transact(mutate, guard=self.guard)
        return self._plan_moves(plan_rebalance, "rebalance", dry_run, moves_in_flight, now_ms)

    def drain_node(self, node_id: int, now_ms: int, dry_run: bool = False,
                   moves_in_flight: int = 0) -> tuple[list, list, list[int]]:
        """Move every replica off node_id's targets, and keep it empty until it is removed."""
        with self.store.read() as txn:
            node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
        if node is None or node.type != types_pb2.NODE_STORAGE:
            raise NotFound(f"storage node {node_id} is not registered")

        def mark(txn):
            chain_moves.set_draining(txn, node_id, True)

        return self._plan_moves(lambda placement: plan_drain(placement, node_id), f"drain node {node_id}",
                                dry_run, moves_in_flight, now_ms, before=None if dry_run else mark)

    def remove_node(self, node_id: int, now_ms: int) -> list[int]:
        """Forget a stopped storage node whose targets are in no chain and no move; its target ids."""
        self._require_primary()
        with self._lock:
            self.refresh_status(now_ms)

            def mutate(txn):
                node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
                if node is None:
                    raise NotFound(f"node {node_id} is not registered")
                if node.type != types_pb2.NODE_STORAGE:
                    raise InvalidArgument(f"node {node_id} is not a storage node")
                targets = [t for t in _records(txn, "targets", types_pb2.TargetInfo) if t.node_id == node_id]
                moving = {target for m in chain_moves.pending(txn) for target in (m.from_target, m.to_target)}
                held = sorted(f"target {t.id} in chain {t.chain_id}" for t in targets if t.chain_id) + \
                    sorted(f"target {t.id} in a move" for t in targets if t.id in moving)
                if held:
                    raise InvalidArgument(f"node {node_id} still holds replicas ({', '.join(held)}); "
                                          f"drain it first: ffs admin node drain URL {node_id}")
                if node_id in self._last_heartbeat_ms and self._status_at(node_id, now_ms) == \
                        types_pb2.HEARTBEAT_CONNECTED:
                    raise InvalidArgument(f"node {node_id} still heartbeats; stop its process first "
                                          f"(it is presumed gone {self.heartbeat_timeout_ms} ms after "
                                          f"its last heartbeat)")
                for target in targets:
                    txn.delete("targets", u64_key(target.id))
                    txn.delete("counters", (_ADMIN_OFFLINE_PREFIX + str(target.id)).encode())
                txn.delete("nodes", u32_key(node_id))
                txn.delete("counters", _incarnation_key(node_id).encode())
                chain_moves.set_draining(txn, node_id, False)
                self._bump(txn)
                return [t.id for t in targets]

            removed = self.store.transact(mutate, guard=self.guard)
            self._last_heartbeat_ms.pop(node_id, None)
            self._status.pop(node_id, None)
            for target_id in removed:
                self._usage.pop(target_id, None)
                self._admin_offline.discard(target_id)
            log.warning("node %d removed with targets %s", node_id, removed)
            return removed

    # -- primary and standby (election.py) ---------------------------------------------
    def _require_primary(self) -> None:
        if not self.acting:
            primary = self.primary_of()
            raise NotPrimary(f"this mgmtd is a standby; the primary is "
                             f"{primary[1] if primary else 'not elected yet'}")

    def take_over(self, guard, now_ms: int) -> None:
        """Elected: act from the stored state, fenced by guard. Heartbeats the old primary saw are
        not stored, so every node gets a full heartbeat timeout from now before it times out."""
        with self._lock:
            with self.store.read() as txn:
                nodes = _records(txn, "nodes", types_pb2.NodeInfo)
                admin = {int(key.decode()[len(_ADMIN_OFFLINE_PREFIX):])
                         for key, _ in txn.scan("counters", _ADMIN_OFFLINE_PREFIX.encode())}
            self._admin_offline = admin
            self._last_heartbeat_ms = {node.id: now_ms for node in nodes}
            self._status = {node.id: node.status for node in nodes}
            self._settled = False
            self.guard = guard
            self.acting = True

    def step_down(self) -> None:
        with self._lock:
            self.acting = False
            self.guard = None

    # -- reads -------------------------------------------------------------
    def routing_version(self) -> int:
        with self.store.read() as txn:
            return txn.get_counter("routing_version", 1)

    def admin_offline_targets(self) -> list[int]:
        return sorted(self._admin_offline)

    def routing(self, now_ms: int) -> types_pb2.RoutingInfo:
        """A consistent snapshot (one read txn) with live heartbeat figures merged in."""
        self.refresh_status(now_ms)
        with self.store.read() as txn:
            primary = self.primary_of()
            info = types_pb2.RoutingInfo(
                mgmtd_primary_id=primary[0] if primary else 0,
                version=txn.get_counter("routing_version", 1),
                nodes=_records(txn, "nodes", types_pb2.NodeInfo) + _records(txn, "meta_servers", types_pb2.NodeInfo),
                targets=_records(txn, "targets", types_pb2.TargetInfo),
                chains=_records(txn, "chains", types_pb2.ChainInfo),
                chain_tables=_records(txn, "chain_tables", types_pb2.ChainTable),
                moves=chain_moves.pending(txn))
        for node in info.nodes:
            node.last_heartbeat_ms = self._last_heartbeat_ms.get(node.id, 0)
        for target in info.targets:
            usage = self._usage.get(target.id)
            if usage is not None:
                target.used_bytes, target.chunk_count = usage.used_bytes, usage.chunk_count
                target.capacity_bytes = usage.capacity_bytes or target.capacity_bytes
                target.fs_id = usage.fs_id
        _share_free_space(info.targets, self._usage)
        return info

    def capacity(self, now_ms: int) -> tuple[int, int]:
        """(capacity bytes, used bytes) over every target, for StatFs."""
        targets = self.routing(now_ms).targets
        return sum(t.capacity_bytes for t in targets), sum(t.used_bytes for t in targets)

    # -- helpers -----------------------------------------------------------
    def _check_heartbeat(self, txn: Txn, node_id: int, targets: list[mgmtd_pb2.TargetHeartbeat],
                         incarnation: int) -> list[tuple[types_pb2.TargetInfo, int]]:
        """Validate a heartbeat (raises before anything changes); (target, reported local state) for
        each target whose local state moved."""
        known = txn.get_counter(_incarnation_key(node_id), 0)
        if incarnation and known and incarnation != known:
            if incarnation < known:
                raise InvalidArgument(f"node {node_id}: heartbeat from incarnation {incarnation}, "
                                      f"but incarnation {known} registered since")
            raise NotFound(f"node {node_id}: incarnation {incarnation} never registered; "
                           "call RegisterNode first")
        moved = []
        for beat in targets:
            record = txn.get_msg("targets", u64_key(beat.target_id), types_pb2.TargetInfo)
            if record is None or record.node_id != node_id:
                raise InvalidArgument(f"target {beat.target_id} is not registered on node {node_id}")
            if beat.local_state not in types_pb2.LocalTargetState.values():
                # Stored, an unknown state would break every later chain round (LocalState(...) raises).
                raise InvalidArgument(f"target {beat.target_id}: unknown local state {beat.local_state}")
            # A beat without a state still proves the node is alive: at least ONLINE.
            reported = beat.local_state or types_pb2.ONLINE
            if reported != record.local_state:
                moved.append((record, reported))
        return moved

    def _status_due(self, now_ms: int) -> bool:
        return any(self._status.get(n) != self._status_at(n, now_ms) for n in self._last_heartbeat_ms)

    def _restarted(self, txn: Txn, node_id: int, old: int, new: int) -> bool:
        """A new process of a known node: its targets are offline until they resync."""
        changed = False
        for record in _records(txn, "targets", types_pb2.TargetInfo):
            if record.node_id == node_id and record.local_state != types_pb2.LOCAL_OFFLINE:
                log.warning("target %d local state %s -> LOCAL_OFFLINE (node %d restarted: incarnation "
                            "%d -> %d; must resync)", record.id,
                            types_pb2.LocalTargetState.Name(record.local_state), node_id, old, new)
                record.local_state = types_pb2.LOCAL_OFFLINE
                txn.put_msg("targets", u64_key(record.id), record)
                changed = True
        return changed

    def _refresh_status(self, txn: Txn, now_ms: int, statuses: dict[int, int]) -> bool:
        """Persist node status changes implied by heartbeat age into txn and statuses (a copy of
        self._status the caller applies after the commit: a rerun starts again from the old one);
        a failed node's targets go LOCAL_OFFLINE."""
        changed = False
        for node_id in self._last_heartbeat_ms:
            status = self._status_at(node_id, now_ms)
            if statuses.get(node_id) == status:
                continue
            node = txn.get_msg("nodes", u32_key(node_id), types_pb2.NodeInfo)
            log.warning("node %d status %s -> %s (last heartbeat %d ms ago, timeout %d ms)", node_id,
                        types_pb2.NodeStatus.Name(node.status), types_pb2.NodeStatus.Name(status),
                        now_ms - self._last_heartbeat_ms[node_id], self.heartbeat_timeout_ms)
            node.status = status
            txn.put_msg("nodes", u32_key(node_id), node)
            statuses[node_id] = status
            changed = True
            if status != types_pb2.HEARTBEAT_FAILED:
                continue
            for record in _records(txn, "targets", types_pb2.TargetInfo):
                if record.node_id == node_id and record.local_state != types_pb2.LOCAL_OFFLINE:
                    log.warning("target %d local state %s -> LOCAL_OFFLINE (node %d heartbeat timed out)",
                                record.id, types_pb2.LocalTargetState.Name(record.local_state), node_id)
                    record.local_state = types_pb2.LOCAL_OFFLINE
                    txn.put_msg("targets", u64_key(record.id), record)
        return changed

    def _update_chains(self, txn: Txn, why: str, admin_offline: set[int] | None = None,
                       status: dict[int, int] | None = None) -> bool:
        admin = self._admin_offline if admin_offline is None else admin_offline
        statuses = self._status if status is None else status

        def effective_local(record: types_pb2.TargetInfo) -> LocalState:
            if record.id in admin or statuses.get(record.node_id) == types_pb2.HEARTBEAT_FAILED:
                return LocalState.OFFLINE
            return LocalState(record.local_state) if record.local_state else LocalState.ONLINE

        chunk_counts = {target_id: beat.chunk_count for target_id, beat in self._usage.items()}
        moved, active = chain_moves.advance(txn, chunk_counts, _movable(admin, statuses))
        changed = bool(update_chains(txn, effective_local, why)) or moved
        # Nothing moved and no move under way: until an input changes, another round would not
        # move anything either.
        self._settled = not changed and not active
        return changed

    def _status_at(self, node_id: int, now_ms: int) -> int:
        age_ms = now_ms - self._last_heartbeat_ms[node_id]
        return types_pb2.HEARTBEAT_CONNECTED if age_ms <= self.heartbeat_timeout_ms else types_pb2.HEARTBEAT_FAILED

    @staticmethod
    def _bump(txn: Txn) -> int:
        version = txn.get_counter("routing_version", 1) + 1
        txn.set_counter("routing_version", version)
        return version
