"""Replica moves: the pure planner (rebalance.py) and their life in ClusterState (chain_moves.py)."""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import errors
from fireflyfs.meta_service.mgmtd.chain_table import generate_chains
from fireflyfs.meta_service.mgmtd.cluster import ClusterState
from fireflyfs.meta_service.mgmtd.rebalance import Placement, plan_drain, plan_rebalance, spread
from fireflyfs.proto import mgmtd_pb2, types_pb2

from tests.meta_service.mgmtd.test_cluster_state import register


def grown(old_nodes: int, new_nodes: int, per_node: int, replicas: int) -> Placement:
    """A table over old_nodes' targets, then new_nodes with every target free (ids node*100+i)."""
    layout = {node: [node * 100 + i + 1 for i in range(per_node)] for node in range(1, old_nodes + 1)}
    chains = dict(enumerate(generate_chains(layout, replicas), start=1))
    in_chain = {t for members in chains.values() for t in members}
    nodes = range(1, old_nodes + new_nodes + 1)
    node_of = {node * 100 + i + 1: node for node in nodes for i in range(per_node)}
    free = {node: sorted(t for t, n in node_of.items() if n == node and t not in in_chain) for node in nodes}
    return Placement(chains=chains, node_of=node_of, free=free)


def check_chains_distinct_nodes(placement: Placement) -> None:
    used = [t for members in placement.chains.values() for t in members]
    assert len(used) == len(set(used)), "a target is in two chains"
    for chain_id, members in placement.chains.items():
        assert len({placement.node_of[t] for t in members}) == len(members), f"chain {chain_id} repeats a node"


@pytest.mark.parametrize("old,new,per_node,replicas", [(3, 3, 2, 3), (4, 2, 6, 3), (3, 1, 4, 3), (2, 2, 4, 2),
                                                       (6, 6, 6, 3), (5, 1, 6, 1)])
def test_rebalance_evens_out_replicas_per_node_and_keeps_chains_on_distinct_nodes(old, new, per_node, replicas):
    placement = grown(old, new, per_node, replicas)
    before = {chain_id: list(members) for chain_id, members in placement.chains.items()}
    moves = plan_rebalance(placement)
    loads = spread(placement)
    assert max(loads.values()) - min(loads.values()) <= 1, loads
    assert all(loads[node] > 0 for node in range(old + 1, old + new + 1)), loads
    check_chains_distinct_nodes(placement)
    assert len({m.from_target for m in moves}) == len(moves), "no replica moves twice"
    for move in moves:
        assert move.from_target in before[move.chain_id]
        assert placement.node_of[move.to_target] > old, "replicas move onto the new nodes only"
    assert [m for m in plan_rebalance(grown(old, new, per_node, replicas))] == moves   # deterministic


def test_a_balanced_cluster_plans_nothing():
    assert plan_rebalance(grown(3, 0, 4, 3)) == []


def test_an_arriving_replica_is_not_moved_again():
    placement = grown(3, 3, 2, 3)
    placement.arriving = {t for members in placement.chains.values() for t in members}
    assert plan_rebalance(placement) == []


@pytest.mark.parametrize("seed", range(20))
def test_drain_empties_the_node_onto_distinct_nodes(seed):
    rng = random.Random(seed)
    old, per_node = rng.randint(4, 7), rng.randint(2, 5)
    placement = grown(old, rng.randint(0, 2), per_node, 3)
    node = rng.randint(1, old)
    try:
        moves = plan_drain(placement, node)
    except errors.InvalidArgument as exc:
        assert f"cannot drain node {node}" in str(exc)
        return
    assert all(placement.node_of[t] != node for members in placement.chains.values() for t in members)
    assert all(placement.node_of[m.from_target] == node for m in moves)
    check_chains_distinct_nodes(placement)


def test_drain_with_nowhere_to_go_names_the_chain():
    placement = grown(3, 0, 2, 3)
    with pytest.raises(errors.InvalidArgument, match=r"cannot drain node 2: chain \d+ has no node"):
        plan_drain(placement, 2)


# -- ClusterState: a move's life ---------------------------------------------------------------

@pytest.fixture
def cluster(store):
    return ClusterState(store, heartbeat_timeout_ms=1000, now_ms=0)


def beat(cluster, node_id, now_ms, states=None, chunks=None, per_node=2):
    targets = [mgmtd_pb2.TargetHeartbeat(target_id=t, local_state=(states or {}).get(t, types_pb2.ONLINE),
                                         chunk_count=(chunks or {}).get(t, 5))
               for t in (node_id * 100 + i + 1 for i in range(per_node))]
    return cluster.heartbeat(node_id, targets, now_ms)


def chains(cluster, now_ms):
    routing = cluster.routing(now_ms)
    states = {t.id: types_pb2.PublicTargetState.Name(t.public_state) for t in routing.targets}
    return {c.id: [(t, states[t]) for t in c.targets] for c in routing.chains}, routing


def test_a_move_adds_the_new_replica_lets_it_sync_then_retires_the_old_one(cluster):
    register(cluster, 1, 0)
    register(cluster, 2, 0)
    cluster.create_chain_table(replicas=2)
    register(cluster, 3, 0)
    planned, pending, _ = cluster.rebalance(0, dry_run=True)
    assert len(planned) == 1 and cluster.routing(0).moves == []      # a dry run changes nothing
    planned, pending, _ = cluster.rebalance(10)
    (move,) = planned
    assert move.to_target in (301, 302) and move.from_target // 100 in (1, 2)
    view, routing = chains(cluster, 10)
    members = view[move.chain_id]
    assert members[-1] == (move.to_target, "SYNCING")                 # joined behind a SERVING member
    assert [s for _, s in members[:-1]] == ["SERVING", "SERVING"]     # every old replica still there
    assert [(m.chain_id, m.phase) for m in routing.moves] == [(move.chain_id, types_pb2.ChainMove.SYNCING)]
    # it synced: its node reports it up to date
    for node in (1, 2):
        beat(cluster, node, 20)
    beat(cluster, 3, 20, states={move.to_target: types_pb2.UPTODATE})
    cluster.tick(30)
    view, routing = chains(cluster, 30)
    assert move.from_target not in [t for t, _ in view[move.chain_id]]
    assert (move.to_target, "SERVING") in view[move.chain_id] and len(view[move.chain_id]) == 2
    retired = {t.id: t for t in routing.targets}[move.from_target]
    assert (retired.chain_id, retired.retired) == (0, True) and routing.moves == []
    # its node deletes its chunks; reporting none frees it
    beat(cluster, move.from_target // 100, 40, chunks={move.from_target: 0})
    cluster.tick(50)
    assert not {t.id: t for t in cluster.routing(50).targets}[move.from_target].retired


def test_moves_in_flight_are_bounded_and_cancel_takes_a_syncing_replica_back(cluster):
    for node in (1, 2, 3):
        register(cluster, node, 0, per_node=4)
    cluster.create_chain_table(replicas=3)
    for node in (4, 5, 6):
        register(cluster, node, 0, per_node=4)
    planned, pending, _ = cluster.rebalance(10, moves_in_flight=2)
    assert len(planned) >= 3
    phases = sorted(m.phase for m in cluster.routing(10).moves)
    assert phases.count(types_pb2.ChainMove.SYNCING) == 2
    cancelled, _, _ = cluster.rebalance(20, cancel=True)
    assert len(cancelled) == len(planned)
    view, routing = chains(cluster, 20)
    assert routing.moves == [] and all(len(members) == 3 for members in view.values())
    assert all(s == "SERVING" for members in view.values() for _, s in members)


def test_drain_then_remove_a_stopped_node(cluster):
    for node in (1, 2, 3, 4):
        register(cluster, node, 0)
    cluster.create_chain_table(replicas=3)       # 2 chains over 6 of the 8 targets
    view, _ = chains(cluster, 0)
    drained = next(n for n in (1, 2, 3, 4) if any(t // 100 == n for m in view.values() for t, _ in m))
    with pytest.raises(errors.InvalidArgument, match="drain it first"):
        cluster.remove_node(drained, 5)
    planned, _, draining = cluster.drain_node(drained, 10)
    assert draining == [drained] and planned
    now = 10
    for _ in range(len(planned) * 3):            # every joining replica syncs in turn
        now += 10
        _, routing = chains(cluster, now)
        syncing = {m.to_target for m in routing.moves if m.phase == types_pb2.ChainMove.SYNCING}
        for node in (1, 2, 3, 4):
            beat(cluster, node, now, states={t: types_pb2.UPTODATE for t in syncing})
        cluster.tick(now)
    view, routing = chains(cluster, now)
    assert routing.moves == []
    assert all(t // 100 != drained for members in view.values() for t, _ in members)
    with pytest.raises(errors.InvalidArgument, match="still heartbeats"):
        cluster.remove_node(drained, now)
    removed = cluster.remove_node(drained, now + 2000)
    assert sorted(removed) == [drained * 100 + 1, drained * 100 + 2]
    routing = cluster.routing(now + 2000)
    assert drained not in {n.id for n in routing.nodes}
    assert not {t.id for t in routing.targets} & set(removed)
    with pytest.raises(errors.NotFound):
        cluster.drain_node(drained, now + 2000)
