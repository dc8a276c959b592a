"""ClusterState drives the target-state machine: timeouts, restarts, admin offline, versions.

Method: a real LMDB store and an injected clock (ms); storage nodes are played
by calls to register_node/heartbeat with the local states the storage contract
prescribes (ONLINE after start, UPTODATE once serving or synced). Every step
checks public states, chain order, chain versions and the routing version.
"""

from __future__ import annotations

import pytest

from fireflyfs.common import errors
from fireflyfs.meta_service.mgmtd.cluster import ClusterState
from fireflyfs.meta_service.mgmtd.ticker import ClusterTicker
from fireflyfs.meta_service.store import Store
from fireflyfs.proto import mgmtd_pb2, types_pb2

from tests.meta_service.conftest import dump

TIMEOUT_MS = 1000
S, SY, W, LS, O = "SERVING", "SYNCING", "WAITING", "LASTSRV", "OFFLINE"
UPTODATE, ONLINE = types_pb2.UPTODATE, types_pb2.ONLINE


def register(cluster, node_id, now_ms, incarnation=1, per_node=3):
    infos = [types_pb2.TargetInfo(id=node_id * 100 + i + 1, path=f"/d/{i}", capacity_bytes=1000)
             for i in range(per_node)]
    return cluster.register_node(node_id, types_pb2.NODE_STORAGE, f"127.0.0.1:{9000 + node_id}", infos,
                                 now_ms, incarnation=incarnation)


def beat(cluster, node_id, now_ms, local=UPTODATE, incarnation=1, per_node=3, only=None):
    beats = [mgmtd_pb2.TargetHeartbeat(target_id=node_id * 100 + i + 1, local_state=local)
             for i in range(per_node) if only is None or node_id * 100 + i + 1 in only]
    return cluster.heartbeat(node_id, beats, now_ms, incarnation)


def view(cluster, now_ms):
    """{chain id: (version, [(target, public state name)...])} and the routing version."""
    routing = cluster.routing(now_ms)
    states = {t.id: types_pb2.PublicTargetState.Name(t.public_state) for t in routing.targets}
    return {c.id: (c.version, [(t, states[t]) for t in c.targets]) for c in routing.chains}, routing.version


def chains_of_node(chains, node_id):
    return {cid for cid, (_, members) in chains.items() if any(t // 100 == node_id for t, _ in members)}


@pytest.fixture
def cluster(store):
    state = ClusterState(store, heartbeat_timeout_ms=TIMEOUT_MS, now_ms=0)
    for node in (1, 2, 3, 4):
        register(state, node, 0)
    table, _ = state.create_chain_table()
    assert table.replicas == 3 and len(table.chains) == 4
    for node in (1, 2, 3, 4):
        beat(state, node, 0)
    return state


def test_fresh_table_all_serving_at_version_1(cluster):
    chains, _ = view(cluster, 0)
    assert all(version == 1 and [s for _, s in members] == [S, S, S]
               for version, members in chains.values())
    assert cluster.tick(500) is False   # nothing due: no version moves


def test_silent_node_goes_offline_to_the_chain_end_and_versions_bump_once(cluster):
    before, routing_version = view(cluster, 0)
    for now in (300, 600, 900):
        for node in (1, 3, 4):
            beat(cluster, node, now)
    assert cluster.tick(1200) is True          # node 2 silent for 1200 ms > 1000
    after, routing_after = view(cluster, 1200)
    hit = chains_of_node(before, 2)
    assert hit and routing_after > routing_version
    for cid, (version, members) in after.items():
        if cid not in hit:
            assert (version, members) == before[cid]
            continue
        assert version == before[cid][0] + 1
        assert members[-1][0] // 100 == 2 and members[-1][1] == O
        assert [s for _, s in members[:-1]] == [S, S]
    routing = cluster.routing(1200)
    assert {n.id: n.status for n in routing.nodes}[2] == types_pb2.HEARTBEAT_FAILED
    assert all(t.local_state == types_pb2.LOCAL_OFFLINE for t in routing.targets if t.node_id == 2)
    assert cluster.tick(1300) is False and view(cluster, 1300) == (after, routing_after)


def test_node_back_waits_syncs_one_at_a_time_then_serves(cluster):
    for now in (400, 800, 1200):
        for node in (1, 3, 4):
            beat(cluster, node, now)
    cluster.tick(1500)
    hit = chains_of_node(view(cluster, 1500)[0], 2)
    # The node is back (same process, was partitioned) still claiming UPTODATE: waits, must resync.
    beat(cluster, 2, 1600, local=UPTODATE)
    chains, _ = view(cluster, 1600)
    assert all(members[-1] == (members[-1][0], W) for cid, (_, members) in chains.items() if cid in hit)
    # It saw WAITING in routing and dropped to ONLINE: each chain syncs it (predecessor serving).
    beat(cluster, 2, 1700, local=ONLINE)
    chains, _ = view(cluster, 1700)
    for cid in hit:
        states = [s for _, s in chains[cid][1]]
        assert states == [S, S, SY], states
    # Sync done: UPTODATE -> SERVING, it is now the tail.
    beat(cluster, 2, 1800, local=UPTODATE)
    chains, _ = view(cluster, 1800)
    for cid in hit:
        assert [s for _, s in chains[cid][1]] == [S, S, S] and chains[cid][1][-1][0] // 100 == 2
        assert chains[cid][0] == 5   # offline, waiting, syncing, serving: four changes after v1


def test_restart_with_new_incarnation_is_offline_at_once(cluster, store):
    before, _ = view(cluster, 0)
    routing = register(cluster, 3, 100, incarnation=2)   # quicker than the heartbeat timeout
    states = {t.id: t.public_state for t in routing.targets}
    assert all(states[t] == types_pb2.OFFLINE for t in (301, 302, 303))
    assert all(t.local_state == types_pb2.LOCAL_OFFLINE for t in routing.targets if t.node_id == 3)
    for cid in chains_of_node(before, 3):
        assert routing.chains[cid - 1].version == before[cid][0] + 1
    version = routing.version
    assert register(cluster, 3, 150, incarnation=2).version == version   # same process again: no change
    snapshot = dump(store)
    with pytest.raises(errors.InvalidArgument, match="older"):
        register(cluster, 3, 160, incarnation=1)          # a stale process never takes over
    with pytest.raises(errors.InvalidArgument, match="registered since"):
        beat(cluster, 3, 170, incarnation=1)
    with pytest.raises(errors.NotFound, match="never registered"):
        beat(cluster, 3, 170, incarnation=3)
    assert dump(store) == snapshot
    beat(cluster, 3, 200, local=ONLINE, incarnation=2)
    chains, _ = view(cluster, 200)
    assert {s for cid in chains_of_node(chains, 3) for t, s in chains[cid][1] if t // 100 == 3} == {W}


def test_restart_of_the_only_replica_comes_back_as_last_server(store):
    cluster = ClusterState(store, heartbeat_timeout_ms=TIMEOUT_MS, now_ms=0)
    register(cluster, 1, 0, per_node=1)
    table, _ = cluster.create_chain_table()
    assert table.replicas == 1
    routing = register(cluster, 1, 10, incarnation=2, per_node=1)
    assert routing.targets[0].public_state == types_pb2.LASTSRV   # holds every acknowledged write
    beat(cluster, 1, 20, local=ONLINE, incarnation=2, per_node=1)
    assert cluster.routing(20).targets[0].public_state == types_pb2.SERVING


def test_admin_offline_holds_until_online(cluster, store, tmp_path):
    chain, target, version = cluster.set_target_state(101, True, 10)
    assert target.public_state == types_pb2.OFFLINE and list(chain.targets)[-1] == 101
    assert chain.version == 2 and cluster.admin_offline_targets() == [101]
    assert cluster.set_target_state(101, True, 20)[2] == version        # idempotent: no bump
    for now in (100, 200, 300):
        beat(cluster, 1, now, local=ONLINE)
        cluster.tick(now)
    assert {t.id: t.public_state for t in cluster.routing(300).targets}[101] == types_pb2.OFFLINE
    # The flag survives a restart of the cluster manager.
    assert ClusterState(store, TIMEOUT_MS, now_ms=300).admin_offline_targets() == [101]
    chain, target, _ = cluster.set_target_state(101, False, 400)
    assert target.public_state == types_pb2.WAITING and cluster.admin_offline_targets() == []
    beat(cluster, 1, 500, local=ONLINE)
    assert {t.id: t.public_state for t in cluster.routing(500).targets}[101] == types_pb2.SYNCING
    beat(cluster, 1, 600, local=UPTODATE)
    assert {t.id: t.public_state for t in cluster.routing(600).targets}[101] == types_pb2.SERVING


def test_admin_refuses_to_stop_a_chain_and_unknown_targets(cluster, store):
    chain, _, _ = cluster.set_target_state(101, True, 10)
    others = [t for t in chain.targets if t != 101]
    cluster.set_target_state(others[0], True, 20)
    snapshot = dump(store)
    with pytest.raises(errors.InvalidArgument, match="last SERVING"):
        cluster.set_target_state(others[1], True, 30)
    with pytest.raises(errors.NotFound):
        cluster.set_target_state(999, True, 30)
    assert dump(store) == snapshot


def test_mgmtd_restart_keeps_incarnations_and_grants_grace(tmp_path):
    path = str(tmp_path / "m")
    store = Store(path)
    cluster = ClusterState(store, TIMEOUT_MS, now_ms=0)
    for node in (1, 2, 3):
        register(cluster, node, 0, incarnation=7, per_node=1)
    cluster.create_chain_table()
    store.close()
    store = Store(path)
    reopened = ClusterState(store, TIMEOUT_MS, now_ms=60_000)
    version = reopened.routing(60_000).version
    # Same processes re-register after the restart: nothing moves.
    assert register(reopened, 1, 60_100, incarnation=7, per_node=1).version == version
    assert reopened.tick(60_500) is False
    assert all(t.public_state == types_pb2.SERVING for t in reopened.routing(60_500).targets)
    store.close()


def test_default_replicas_follow_the_node_count(store):
    cluster = ClusterState(store, TIMEOUT_MS, now_ms=0)
    register(cluster, 1, 0)
    register(cluster, 2, 0)
    table, _ = cluster.create_chain_table()
    assert table.replicas == 1 and len(table.chains) == 6


def test_ticker_uses_its_clock(cluster):
    now = [0]
    ticker = ClusterTicker(cluster, interval_ms=10, clock_ms=lambda: now[0])
    assert ticker.tick_once() is False
    now[0] = 5000                                  # everyone silent for 5 s
    assert ticker.tick_once() is True
    routing = cluster.routing(5000)
    assert all(n.status == types_pb2.HEARTBEAT_FAILED for n in routing.nodes)
    # Every serving target failed at once: each chain keeps exactly one last server (its head).
    for chain in routing.chains:
        states = [{t.id: t.public_state for t in routing.targets}[t] for t in chain.targets]
        assert states == [types_pb2.LASTSRV, types_pb2.OFFLINE, types_pb2.OFFLINE]
    with pytest.raises(ValueError):
        ClusterTicker(cluster, interval_ms=0)


def test_quiet_heartbeats_and_ticks_take_no_write_transaction(cluster, store, monkeypatch):
    """Heartbeats share the meta LMDB writer with every namespace mutation: when nothing moves
    they must not queue behind it."""
    for node in (1, 2, 3, 4):
        beat(cluster, node, 100)
    cluster.tick(100)
    writes = []
    real_transact = store.transact
    monkeypatch.setattr(store, "transact", lambda mutate, guard=None: writes.append(1)
                        or real_transact(mutate, guard=guard))
    for now in (200, 300):
        for node in (1, 2, 3, 4):
            beat(cluster, node, now)
        assert cluster.tick(now) is False
    assert writes == []
    beat(cluster, 1, 400, local=ONLINE)        # a state moved: written, and routing moves
    assert writes
