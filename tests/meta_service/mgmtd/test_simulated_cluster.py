"""A simulated cluster under seeded faults keeps replicas safe, then converges to all SERVING.

Goal: the real ClusterState (LMDB store, injected clock) plus storage nodes that
follow the storage contract never let a replica that missed a write serve, and
once faults stop every target ends SERVING and the chains stop changing.
Method (VOPR-style): one ``random.Random(seed)`` draws everything. The seed is
printed first with the command that replays it alone (``FFS_SEED=<seed>``
runs only that seed). Time moves in 100 ms steps.
Fault phase: nodes crash and restart (new incarnation), get partitioned from
mgmtd (heartbeats lost) for a while, single heartbeats get lost, operators set
targets offline/online, mgmtd itself restarts. Storage nodes play the contract:
targets start ONLINE, report UPTODATE once SERVING since the table was made or
after a sync, drop to ONLINE when routing shows them WAITING/OFFLINE/LASTSRV,
fence themselves after half the heartbeat timeout without a heartbeat reply.
Data is modelled per target as "holds every acknowledged write": a write to a
chain is acknowledged only when every SERVING/SYNCING member is alive, unfenced
and on the current chain version; members that are not written lose the flag;
a sync copies it from the predecessor. Safety, checked every step: every
SERVING target holds every acknowledged write, so does a LASTSRV, and the chain
rules hold. Quiet phase: everyone back, no faults; all SERVING within a budget.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from fireflyfs.common import errors
from fireflyfs.meta_service.mgmtd.cluster import ClusterState
from fireflyfs.meta_service.mgmtd.target_states import ORDER_RANK, PublicState
from fireflyfs.meta_service.store import Store
from fireflyfs.proto import mgmtd_pb2, types_pb2
from tests.conftest import announce_seed, seeds_or

STEP_MS = 100
TIMEOUT_MS = 1000
TICK_EVERY_STEPS = 10                    # mgmtd's periodic update, 1 s
FAULT_STEPS = 400
QUIET_STEPS_MAX = 400                    # liveness budget once faults stop
STABLE_STEPS = 30                        # all SERVING and no chain change for this long


@dataclasses.dataclass
class SimTarget:
    id: int
    node_id: int
    local: int = types_pb2.ONLINE
    fresh: bool = False                  # SERVING since the chain table was made, in this incarnation
    synced: bool = False                 # SyncDone received in this incarnation
    has_all: bool = True                 # holds every acknowledged write of its chain
    sync_progress: int = 0
    sync_version: int = 0                # the chain version the current sync session runs at


@dataclasses.dataclass
class SimNode:
    id: int
    targets: list[SimTarget]
    alive: bool = True
    incarnation: int = 1
    partitioned_until_ms: int = 0
    last_ok_ms: int = 0
    next_beat_ms: int = 0
    routing: types_pb2.RoutingInfo | None = None


class Sim:
    def __init__(self, seed: int, path: str) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.path = path
        self.now = 0
        self.store = Store(path)
        self.mgmtd = ClusterState(self.store, TIMEOUT_MS, now_ms=0)
        node_count = self.rng.randint(4, 6)
        per_node = self.rng.randint(1, 3)
        self.sync_steps_max = self.rng.randint(1, 6)
        self.nodes = {n: SimNode(n, [SimTarget(n * 100 + i + 1, n) for i in range(per_node)])
                      for n in range(1, node_count + 1)}
        self.targets = {t.id: t for node in self.nodes.values() for t in node.targets}
        self.params = dict(nodes=node_count, targets_per_node=per_node, sync_steps_max=self.sync_steps_max)
        for node in self.nodes.values():
            self.register(node)
        self.mgmtd.create_chain_table(replicas=3)
        for node in self.nodes.values():
            node.routing = self.mgmtd.routing(self.now)
            for target in node.targets:
                target.fresh = True
        self.chain_versions: dict[int, int] = {}
        self.routing_version = 0
        self.acked_writes = 0
        self.faults: dict[str, int] = {}

    # -- the storage side ------------------------------------------------------------------
    def register(self, node: SimNode) -> None:
        infos = [types_pb2.TargetInfo(id=t.id, path="/x", capacity_bytes=1) for t in node.targets]
        node.routing = self.mgmtd.register_node(node.id, types_pb2.NODE_STORAGE, f"127.0.0.1:{node.id}",
                                                infos, self.now, incarnation=node.incarnation)
        node.last_ok_ms = self.now
        self.apply_routing(node)

    def heartbeat(self, node: SimNode) -> None:
        beats = [mgmtd_pb2.TargetHeartbeat(target_id=t.id, local_state=t.local) for t in node.targets]
        try:
            version = self.mgmtd.heartbeat(node.id, beats, self.now, node.incarnation)
        except errors.NotFound:
            self.register(node)
            return
        node.last_ok_ms = self.now
        if node.routing is None or version != node.routing.version:
            node.routing = self.mgmtd.routing(self.now)
            self.apply_routing(node)

    def apply_routing(self, node: SimNode) -> None:
        """The contract's local-state rules, applied when a node learns new routing."""
        states = {t.id: t.public_state for t in node.routing.targets}
        for target in node.targets:
            public = states[target.id]
            if public == types_pb2.SERVING:
                if target.fresh or target.synced:
                    target.local = types_pb2.UPTODATE
            elif public != types_pb2.SYNCING:
                target.local, target.fresh, target.synced = types_pb2.ONLINE, False, False

    def crash(self, node: SimNode) -> None:
        node.alive = False

    def restart(self, node: SimNode) -> None:
        node.alive, node.incarnation, node.partitioned_until_ms = True, node.incarnation + 1, 0
        for target in node.targets:
            target.local, target.fresh, target.synced, target.sync_progress = types_pb2.ONLINE, False, False, 0
        self.register(node)

    def reachable(self, node: SimNode) -> bool:
        return node.alive and self.now >= node.partitioned_until_ms

    def fenced(self, node: SimNode) -> bool:
        return self.now - node.last_ok_ms > TIMEOUT_MS // 2

    # -- data model: writes and syncs -----------------------------------------------------------
    def truth(self):
        routing = self.mgmtd.routing(self.now)
        return routing, {t.id: t.public_state for t in routing.targets}

    def write_and_sync(self) -> None:
        routing, states = self.truth()
        for chain in routing.chains:
            members = [t for t in chain.targets if states[t] in (types_pb2.SERVING, types_pb2.SYNCING)]
            if self.rng.random() < 0.7 and members and states[members[0]] == types_pb2.SERVING:
                if all(self.member_ok(t, chain) for t in members):
                    self.acked_writes += 1
                    for t in chain.targets:
                        if t not in members:
                            self.targets[t].has_all = False
            for index, t in enumerate(chain.targets):
                target = self.targets[t]
                if states[t] != types_pb2.SYNCING:
                    target.sync_progress = 0
                    continue
                predecessor = self.targets[chain.targets[index - 1]]
                if (index == 0 or states[predecessor.id] != types_pb2.SERVING
                        or not self.member_ok(predecessor.id, chain) or not self.member_ok(t, chain)):
                    continue
                if target.sync_version != chain.version:
                    target.sync_version, target.sync_progress = chain.version, 0
                target.sync_progress += 1
                if target.sync_progress >= self.rng.randint(1, self.sync_steps_max):
                    # SyncDone: the target reports UPTODATE from its next heartbeat on.
                    target.synced, target.has_all = True, predecessor.has_all
                    target.local = types_pb2.UPTODATE

    def member_ok(self, target_id: int, chain: types_pb2.ChainInfo) -> bool:
        node = self.nodes[self.targets[target_id].node_id]
        if not node.alive or self.fenced(node) or node.routing is None:
            return False
        view = {c.id: c.version for c in node.routing.chains}
        return view.get(chain.id) == chain.version

    # -- checks ------------------------------------------------------------------------------
    def check_safety(self) -> None:
        routing, states = self.truth()
        assert routing.version >= self.routing_version, "routing version went back"
        self.routing_version = routing.version
        for chain in routing.chains:
            assert chain.version >= self.chain_versions.get(chain.id, 0), f"chain {chain.id} version went back"
            self.chain_versions[chain.id] = chain.version
            publics = [PublicState(states[t]) for t in chain.targets]
            assert [ORDER_RANK[p] for p in publics] == sorted(ORDER_RANK[p] for p in publics), publics
            assert publics.count(PublicState.SYNCING) <= 1 and publics.count(PublicState.LASTSRV) <= 1
            for t in chain.targets:
                if states[t] in (types_pb2.SERVING, types_pb2.LASTSRV):
                    assert self.targets[t].has_all, (
                        f"target {t} is {types_pb2.PublicTargetState.Name(states[t])} but missed a write")

    def all_serving(self) -> bool:
        return all(s == types_pb2.SERVING for s in self.truth()[1].values())

    # -- driving -----------------------------------------------------------------------------
    def step(self, faults: bool) -> None:
        self.now += STEP_MS
        if faults:
            self.inject_fault()
        for node in self.nodes.values():
            if self.reachable(node) and self.now >= node.next_beat_ms:
                node.next_beat_ms = self.now + self.rng.choice((100, 200, 200, 300))
                if faults and self.rng.random() < 0.05:
                    continue                                   # one heartbeat lost
                self.heartbeat(node)
        if self.now // STEP_MS % TICK_EVERY_STEPS == 0:
            self.mgmtd.tick(self.now)
        self.write_and_sync()
        self.check_safety()

    def count(self, fault: str) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1

    def inject_fault(self) -> None:
        rng = self.rng
        roll = rng.random()
        live = [n for n in self.nodes.values() if n.alive]
        dead = [n for n in self.nodes.values() if not n.alive]
        if roll < 0.02 and live:
            self.count("crash")
            self.crash(rng.choice(live))
        elif roll < 0.05 and dead:
            self.count("restart")
            self.restart(rng.choice(dead))
        elif roll < 0.06 and live:
            self.count("partition")
            rng.choice(live).partitioned_until_ms = self.now + rng.randint(1, 25) * STEP_MS
        elif roll < 0.07:
            target = rng.choice(list(self.targets))
            try:
                self.mgmtd.set_target_state(target, rng.random() < 0.6, self.now)
                self.count("admin")
            except errors.InvalidArgument:
                self.count("admin refused")                    # the chain's last server
        elif roll < 0.075:
            self.count("mgmtd restart")
            self.store.close()                                  # mgmtd restarts on the same store
            self.store = Store(self.path)
            self.mgmtd = ClusterState(self.store, TIMEOUT_MS, now_ms=self.now)

    def quiet(self) -> int:
        """Everyone back, no faults; returns the steps until all SERVING and stable."""
        for node in self.nodes.values():
            if not node.alive:
                self.restart(node)
            node.partitioned_until_ms = 0
        for target in self.mgmtd.admin_offline_targets():
            self.mgmtd.set_target_state(target, False, self.now)
        stable_since = None
        for steps in range(1, QUIET_STEPS_MAX + 1):
            before = dict(self.chain_versions)
            self.step(faults=False)
            if self.all_serving() and self.chain_versions == before:
                stable_since = stable_since or steps
                if steps - stable_since >= STABLE_STEPS:
                    return steps
            else:
                stable_since = None
        raise AssertionError(f"no convergence in {QUIET_STEPS_MAX} quiet steps: "
                             f"{[(c.id, list(c.targets)) for c in self.truth()[0].chains]} "
                             f"{ {t: types_pb2.PublicTargetState.Name(s) for t, s in self.truth()[1].items()} }")

    def close(self) -> None:
        self.store.close()


def run(seed: int, tmp_path, request) -> None:
    announce_seed(request, seed)
    sim = Sim(seed, str(tmp_path / f"sim-{seed}"))
    print(f"params {sim.params}")
    try:
        for _ in range(FAULT_STEPS):
            sim.step(faults=True)
        steps = sim.quiet()
        print(f"faults {sim.faults}; max chain version {max(sim.chain_versions.values())}")
        print(f"converged after {steps} quiet steps; {sim.acked_writes} acknowledged writes")
        assert sim.acked_writes > 0 and max(sim.chain_versions.values()) > 1
        assert all(t.has_all for t in sim.targets.values())
    finally:
        sim.close()


@pytest.mark.parametrize("seed", seeds_or(range(1, 9)))
def test_faults_then_convergence(seed, tmp_path, request):
    run(seed, tmp_path, request)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds_or(range(100, 160)))
def test_faults_then_convergence_many_seeds(seed, tmp_path, request):
    run(seed, tmp_path, request)
