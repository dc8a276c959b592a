"""Client failover over replicated chains, with fake nodes and a fake clock (no sockets).

Method: chains of three replicas on three fake nodes sharing one chunk dict;
the tests kill nodes (they answer Unavailable), mark chunks mid-write on some
replicas (ChunkNotCommitted), move chain heads through new routing versions,
and check where requests went, what the caller got, and how long the fake
clock says it took.
"""

from __future__ import annotations

import collections
import os

import pytest

from fireflyfs.client.config import ClientConfig
from fireflyfs.client.replica_select import ReplicaSelector
from fireflyfs.client.routing import Route, RoutingCache
from fireflyfs.client.storage_client import StorageClient
from fireflyfs.common import errors
from fireflyfs.common.layout import Layout
from fireflyfs.proto import types_pb2

from .fakes import FakeCluster, FakePool, make_routing

CHUNK = 64 * 1024
ONE_CHAIN = Layout(chunk_size=CHUNK, stripe_size=1, chain_table_id=1, chain_table_version=1,
                   chain_base=1, seed=3)   # every chunk on chain 1 (nodes 1, 2, 3; head node-1)
INODE = 7


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def env():
    cluster = FakeCluster()
    versions = {"routing": make_routing(replicas=3), "fetches": 0}

    def fetch(known):
        versions["fetches"] += 1
        current = versions["routing"]
        return None if current.version == known else current

    cache = RoutingCache(fetch)
    clock = Clock()
    config = ClientConfig(retry_time_s=10.0)
    client = StorageClient(cache, "c1", pool=FakePool(cluster), config=config, sleep=clock.sleep,
                           clock=clock)
    return cluster, client, versions, clock


def test_reads_spread_over_the_replicas_by_outstanding_requests(env):
    cluster, client, _, _ = env
    data = os.urandom(30 * CHUNK)
    client.write(INODE, ONE_CHAIN, 0, data)
    assert set(cluster.write_addresses) == {"node-1"}, "writes go to the head only"
    cluster.batch_reads.clear()
    assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    per_node = collections.Counter()
    for address, ios in cluster.batch_reads:
        per_node[address] += ios
    assert per_node == {"node-1": 10, "node-2": 10, "node-3": 10}
    assert all(client.selector.outstanding(n) == 0 for n in (1, 2, 3)), "every request was counted done"


def test_writes_go_to_the_first_serving_target(env):
    cluster, client, versions, _ = env
    routing = make_routing(version=2, replicas=3)
    chain = routing.chains[0]
    head = next(t for t in routing.targets if t.id == chain.targets[0])
    head.public_state = types_pb2.OFFLINE
    versions["routing"] = routing
    client.routing.refresh()
    client.write(INODE, ONE_CHAIN, 0, b"abc")
    assert cluster.write_addresses == ["node-2"]
    assert [r.node_id for r in client.routing.serving_routes(chain.id)] == [2, 3]


def test_a_dead_replica_does_not_stop_reads_while_others_serve(env):
    cluster, client, versions, clock = env
    data = os.urandom(6 * CHUNK)
    client.write(INODE, ONE_CHAIN, 0, data)
    cluster.dead.add("node-2")
    for _ in range(3):
        assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    assert clock.now < 1.0, "failed over at once, no waiting for mgmtd"
    asked_dead = cluster.calls["node-2"]
    assert client.read(INODE, ONE_CHAIN, len(data), 0, len(data)) == data
    assert cluster.calls["node-2"] == asked_dead, "a node that just failed is skipped"


def test_not_committed_pauses_briefly_then_asks_the_tail(env):
    cluster, client, versions, clock = env
    client.write(INODE, ONE_CHAIN, 0, b"committed bytes")
    cluster.uncommitted_on = {"node-1": {(INODE, 0)}, "node-2": {(INODE, 0)}}
    client.selector.hold(3, 5)   # the tail looks busy: only repeated not-committed sends the read there
    fetches = versions["fetches"]
    cluster.batch_reads.clear()
    assert client.read(INODE, ONE_CHAIN, 15, 0, 15) == b"committed bytes"
    assert [address for address, _ in cluster.batch_reads][-1] == "node-3"
    assert len(cluster.batch_reads) == 1 + client.config.not_committed_tries_before_tail
    assert versions["fetches"] == fetches, "not-committed is no reason to refresh routing"
    assert clock.sleeps and max(clock.sleeps) <= client.config.not_committed_backoff_s


def test_a_write_to_a_dead_head_waits_for_the_new_chain_version(env):
    cluster, client, versions, clock = env
    cluster.dead.add("node-1")
    moved = make_routing(version=2, replicas=3, chain_version=2)
    chain = moved.chains[0]
    chain.targets[:] = list(chain.targets[1:]) + [chain.targets[0]]
    next(t for t in moved.targets if t.id == chain.targets[-1]).public_state = types_pb2.OFFLINE
    calls = {"n": 0}
    real_sleep = clock.sleep

    def sleep(seconds):   # mgmtd notices the dead node after a few retries
        real_sleep(seconds)
        calls["n"] += 1
        if calls["n"] == 4:
            versions["routing"] = moved
            cluster.chain_version = 2

    client._sleep = sleep
    client.write(INODE, ONE_CHAIN, 0, b"after failover")
    assert cluster.write_addresses == ["node-2"]
    assert client.routing.version == 2
    assert client.read(INODE, ONE_CHAIN, 14, 0, 14) == b"after failover"


def test_giving_up_names_the_chain_and_what_failed(env):
    cluster, client, _, clock = env
    cluster.dead.update({"node-1", "node-2", "node-3"})
    with pytest.raises(errors.Unavailable) as info:
        client.write(INODE, ONE_CHAIN, 0, b"x")
    message = str(info.value)
    assert "gave up after" in message and "chain 1 v1" in message and "node-1" in message
    assert 10.0 <= clock.now < 12.0, "bounded by retry_time_s"
    with pytest.raises(errors.Unavailable, match="read of 1 range.*gave up.*chain 1"):
        client.read(INODE, ONE_CHAIN, 1, 0, 1)


def test_a_write_is_acknowledged_only_with_a_commit_version(env):
    cluster, client, _, _ = env
    cluster.commit_version = 0
    with pytest.raises(errors.Internal, match="without a commit version"):
        client.write(INODE, ONE_CHAIN, 0, b"x")


def test_selector_prefers_idle_and_healthy_nodes():
    clock = Clock()
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
