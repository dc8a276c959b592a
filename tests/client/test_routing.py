"""RoutingCache: chunk -> chain -> target -> node resolved locally, refreshed on demand.

Method: feed the cache from a fake fetch function and compare its answers with
the layout math of common/layout.py and the RoutingInfo it was given.
"""

import pytest

from fireflyfs.common.errors import NoChainTable, Unavailable
from fireflyfs.common.layout import Layout
from fireflyfs.client.routing import RoutingCache
from fireflyfs.proto import types_pb2

from .fakes import make_routing


class Fetcher:
    def __init__(self, *routings):
        self.routings = list(routings)
        self.asked = []

    def __call__(self, known_version):
        self.asked.append(known_version)
        current = self.routings[0] if len(self.routings) == 1 else self.routings.pop(0)
        return None if current.version == known_version else current


LAYOUT = Layout(chunk_size=64 * 1024, stripe_size=4, chain_table_id=1, chain_table_version=1,
                chain_base=3, seed=12345)


def test_chain_for_follows_layout_math_and_routing():
    routing = make_routing(chains=6)
    cache = RoutingCache(Fetcher(routing))
    stripe = LAYOUT.stripe_chain_indices(6)
    for chunk_index in range(12):
        route = cache.chain_for(LAYOUT, chunk_index)
        expected_chain = list(routing.chain_tables[0].chains)[stripe[chunk_index % 4] - 1]
        assert route.chain_id == expected_chain
        chain = next(c for c in routing.chains if c.id == expected_chain)
        target = next(t for t in routing.targets if t.id == chain.targets[0])
        assert route.target_id == target.id
        assert route.address == f"node-{target.node_id}"
        assert route.chain_version == 1
    assert cache.stripe_chain_ids(LAYOUT) == [stripe[i] for i in range(4)]


def test_routing_is_fetched_once_then_cached():
    fetcher = Fetcher(make_routing())
    cache = RoutingCache(fetcher)
    for index in range(20):
        cache.chain_for(LAYOUT, index)
    assert fetcher.asked == [0]


def test_refresh_asks_with_known_version_and_picks_up_new_chain_versions():
    fetcher = Fetcher(make_routing(version=1), make_routing(version=2, chain_version=7))
    cache = RoutingCache(fetcher)
    assert cache.chain_for(LAYOUT, 0).chain_version == 1
    cache.refresh()
    assert fetcher.asked == [0, 1]
    assert cache.version == 2
    assert cache.chain_for(LAYOUT, 0).chain_version == 7


def test_unchanged_reply_keeps_the_snapshot():
    fetcher = Fetcher(make_routing(version=5))
    cache = RoutingCache(fetcher)
    cache.refresh()
    cache.refresh()
    assert fetcher.asked == [0, 5]
    assert cache.version == 5


def test_missing_chain_table_is_an_error_after_one_refresh():
    routing = make_routing()
    del routing.chain_tables[:]
    fetcher = Fetcher(routing)
    cache = RoutingCache(fetcher)
    with pytest.raises(NoChainTable):
        cache.chain_for(LAYOUT, 0)
    assert len(fetcher.asked) == 2


def test_reads_use_a_serving_replica_and_writes_the_head():
    routing = make_routing(chains=6)
    chain = routing.chains[0]
    routing.targets.add(id=999, node_id=2, chain_id=chain.id, public_state=types_pb2.SERVING)
    routing.targets.add(id=998, node_id=3, chain_id=chain.id, public_state=types_pb2.OFFLINE)
    chain.targets.extend([999, 998])
    head = chain.targets[0]
    cache = RoutingCache(Fetcher(routing))
    assert cache.route(chain.id, for_write=True).target_id == head
    picked = {cache.route(chain.id, for_write=False, spread=s).target_id for s in range(6)}
    assert picked == {head, 999}


def test_node_without_address_is_unavailable():
    routing = make_routing()
    for node in routing.nodes:
        node.address = ""
    cache = RoutingCache(Fetcher(routing))
    with pytest.raises(Unavailable):
        cache.chain_for(LAYOUT, 0)
