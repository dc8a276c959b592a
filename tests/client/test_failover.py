"""Client failover over replicated chains on in-process storage nodes, with a fake clock (no sockets).

Method: chains of three replicas on three InProcessCluster nodes (real
targets, chain drivers and Storage servicers: a write travels the chain and is
acknowledged after every replica committed it), behind the InProcessTransport,
blocking and pipelined. The tests kill nodes (the transport finds them
unreachable), leave a chunk mid-write on some replicas (a real pending
update: the engines answer ChunkNotCommitted), move chain heads through new
routing versions installed on the nodes, and check where requests went, what
the caller got, what the replicas hold, and how long the fake clock says it
took.
"""

from __future__ import annotations

import collections
import os

import pytest

from fireflyfs.client.config import ClientConfig
from fireflyfs.client.replica_select import ReplicaSelector
from fireflyfs.client.routing import Route
from fireflyfs.common import errors
from fireflyfs.common.layout import Layout
from fireflyfs.proto import types_pb2

from .fakes import make_routing
from .in_process import ClientOnNodes, FakeClock

CHUNK = 64 * 1024
ONE_CHAIN = Layout(chunk_size=CHUNK, stripe_size=1, chain_table_id=1, chain_table_version=1,
                   chain_base=1, seed=3)   # every chunk on chain 1 (nodes 1, 2, 3; head node-1)
INODE = 7


@pytest.fixture(params=[False, True], ids=["blocking", "pipelined"])
def env(request, tmp_path):
    made = ClientOnNodes(tmp_path, make_routing(replicas=3), pipelined=request.param, client_id="c1",
                         config=ClientConfig(retry_time_s=10.0))
    yield made
    made.close()


def test_reads_spread_over_the_replicas_by_outstanding_requests(env):
    client = env.client
    data = os.urandom(30 * CHUNK)
    client.write(INODE, ONE_CHAIN, 0, data)
    assert {address for address, *_ in env.transport.writes} == {"node-1"}, "writes go to the head only"
    assert set(env.cluster.metas(INODE, 29)) == {"node-1", "node-2", "node-3"}, "the chain forwarded them"
    env.transport.reads.clear()
    assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    per_node = collections.Counter()
    for address, ios in env.transport.reads:
        per_node[address] += ios
    assert per_node == {"node-1": 10, "node-2": 10, "node-3": 10}
    assert all(client.selector.outstanding(n) == 0 for n in (1, 2, 3)), "every request was counted done"


def test_writes_go_to_the_first_serving_target(env):
    routing = make_routing(version=2, replicas=3)
    chain = routing.chains[0]
    head = next(t for t in routing.targets if t.id == chain.targets[0])
    head.public_state = types_pb2.OFFLINE
    env.move_routing(routing)
    env.client.routing.refresh()
    env.client.write(INODE, ONE_CHAIN, 0, b"abc")
    assert [address for address, *_ in env.transport.writes] == ["node-2"]
    assert set(env.cluster.metas(INODE, 0)) == {"node-2", "node-3"}, "the offline target is out of the chain"
    assert [r.node_id for r in env.client.routing.serving_routes(chain.id)] == [2, 3]


def test_a_dead_replica_does_not_stop_reads_while_others_serve(env):
    client = env.client
    data = os.urandom(6 * CHUNK)
    client.write(INODE, ONE_CHAIN, 0, data)
    env.cluster.dead.add("node-2")
    for _ in range(3):
        assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    assert env.clock.now < 1.0, "failed over at once, no waiting for mgmtd"
    asked_dead = env.transport.requests["node-2"]
    assert asked_dead >= 1
    assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    assert env.transport.requests["node-2"] == asked_dead, "a node that just failed is skipped"


def test_not_committed_pauses_briefly_then_asks_the_tail(env):
    client = env.client
    client.write(INODE, ONE_CHAIN, 0, b"committed bytes")
    for address in ("node-1", "node-2"):      # a newer write staged there, not yet acknowledged by the tail
        env.cluster.leave_pending(address, 1, INODE, 0, b"new")
    client.selector.hold(3, 5)   # the tail looks busy: only repeated not-committed sends the read there
    fetches = env.fetches
    env.transport.reads.clear()
    assert client.read(INODE, ONE_CHAIN, 15, 0, 15) == b"committed bytes"
    assert [address for address, _ in env.transport.reads][-1] == "node-3"
    assert len(env.transport.reads) == 1 + client.config.not_committed_tries_before_tail
    assert env.fetches == fetches, "not-committed is no reason to refresh routing"
    assert env.clock.sleeps and max(env.clock.sleeps) <= client.config.not_committed_backoff_s


def test_a_write_to_a_dead_head_waits_for_the_new_chain_version(env):
    env.cluster.dead.add("node-1")
    moved = make_routing(version=2, replicas=3, chain_version=2)
    chain = moved.chains[0]
    chain.targets[:] = list(chain.targets[1:]) + [chain.targets[0]]
    next(t for t in moved.targets if t.id == chain.targets[-1]).public_state = types_pb2.OFFLINE
    real_sleep = env.clock.sleep

    def sleep(seconds):   # mgmtd notices the dead node after a few retries
        real_sleep(seconds)
        if len(env.clock.sleeps) == 4:
            env.move_routing(moved)

    env.client._sleep = sleep
    env.client.write(INODE, ONE_CHAIN, 0, b"after failover")
    assert [address for address, *_ in env.transport.writes] == ["node-2"]
    assert set(env.cluster.metas(INODE, 0)) == {"node-2", "node-3"}
    assert env.client.routing.version == 2
    assert env.client.read(INODE, ONE_CHAIN, 14, 0, 14) == b"after failover"


def test_giving_up_names_the_chain_and_what_failed(env):
    env.cluster.dead.update({"node-1", "node-2", "node-3"})
    with pytest.raises(errors.Unavailable) as info:
        env.client.write(INODE, ONE_CHAIN, 0, b"x")
    message = str(info.value)
    assert "gave up after" in message and "chain 1 v1" in message and "node-1" in message
    assert type(info.value) is errors.Unavailable, "an unreachable node surfaces as plain Unavailable"
    assert 10.0 <= env.clock.now < 12.0, "bounded by retry_time_s"
    with pytest.raises(errors.Unavailable, match="read of 1 range.*gave up.*chain 1"):
        env.client.read(INODE, ONE_CHAIN, 1, 0, 1)


def test_a_write_is_acknowledged_only_with_a_commit_version(env):
    env.transport.zero_commit_version = True     # a head that forgot it: no real core answers so
    with pytest.raises(errors.Internal, match="without a commit version"):
        env.client.write(INODE, ONE_CHAIN, 0, b"x")


def test_selector_prefers_idle_and_healthy_nodes():
    clock = FakeClock()
    selector = ReplicaSelector(avoid_s=2.0, clock=clock)
    routes = [Route(1, 1, 100 + n, n, f"node-{n}") for n in (1, 2, 3)]
    picked = [selector.pick(routes).node_id for _ in range(6)]
    assert collections.Counter(picked) == {1: 2, 2: 2, 3: 2}
    selector.done(2, 2)
    assert selector.pick(routes).node_id == 2
    selector.mark_failed(3)
    selector.done(3, 2)
    assert selector.pick(routes).node_id != 3, "an idle but failed node is avoided"
    clock.now += 3
    assert selector.pick(routes).node_id == 3, "avoidance ends"
    only_failed = [routes[0]]
    selector.mark_failed(1)
    assert selector.pick(only_failed).node_id == 1, "with no alternative, try it anyway"


def test_config_from_environment():
    config = ClientConfig.from_env({"FFS_CLIENT_RETRY_TIME_S": "2.5",
                                    "FFS_CLIENT_NOT_COMMITTED_TRIES_BEFORE_TAIL": "4"},
                                   storage_read_timeout_s=3)
    assert (config.retry_time_s, config.not_committed_tries_before_tail, config.storage_read_timeout_s) == (
        2.5, 4, 3)
    with pytest.raises(ValueError):
        ClientConfig.from_env({"FFS_CLIENT_RETRY_TIME_S": "soon"})
    with pytest.raises(ValueError):
        ClientConfig(retry_time_s=-1)
