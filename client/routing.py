"""The client's copy of the cluster routing: chunk -> chain -> target -> node.

Resolving where a byte lives is local math (common/layout.py) over a cached
``RoutingInfo``; the metadata service stays off the data path. The cache is
refreshed through Mgmtd.GetRoutingInfo(known_version) when a storage node
says our view is stale (StaleChainVersion, NotHead) or cannot be reached.
The fetch is a plain callable so unit tests drive the cache with no server.

Replicas (CRAQ): writes go to the chain's head, its first SERVING target
(mgmtd keeps serving targets first in chain order); reads may go to any
SERVING target, and ``serving_routes`` lists them head first, tail last.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable

from fireflyfs.common.errors import FfsError, NoChainTable, Unavailable
from fireflyfs.common.rpc import rpc_errors_mapped
from fireflyfs.common.layout import Layout
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc, types_pb2
from .channels import ChannelPool, shared_pool
from .meta_servers import MetaServers

log = logging.getLogger(__name__)

# known_version -> new RoutingInfo, or None when it is still known_version.
FetchRouting = Callable[[int], "types_pb2.RoutingInfo | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where one chunk IO goes: the chain (as the request names it) and the node serving it."""

    chain_id: int
    chain_version: int
    target_id: int
    node_id: int
    address: str
    bulk_address: str = ""       # the node's bulk data listener; "" = gRPC only


class _Snapshot:
    """Indexes over one RoutingInfo version (immutable once built)."""

    def __init__(self, routing: types_pb2.RoutingInfo) -> None:
        self.version = routing.version
        self.nodes = {node.id: node for node in routing.nodes}
        self.targets = {target.id: target for target in routing.targets}
        self.chains = {chain.id: chain for chain in routing.chains}
        self.tables = {table.id: table for table in routing.chain_tables}


def _is_serving(target: types_pb2.TargetInfo) -> bool:
    return target.public_state in (types_pb2.SERVING, types_pb2.PUBLIC_STATE_UNSPECIFIED)


class RoutingCache:
    """Thread-safe cached routing with lookups for the storage client."""

    def __init__(self, fetch: FetchRouting) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    @classmethod
    def for_mgmtd(cls, mgmtd_address: "str | MetaServers", pool: ChannelPool | None = None,
                  timeout_s: float = 5.0, token: str | None = None) -> "RoutingCache":
        """A cache fed by the Mgmtd service of any of the meta servers (every one serves routing);
        the meta servers it lists are learned into them."""
        pool = pool or shared_pool(token)
        servers = mgmtd_address if isinstance(mgmtd_address, MetaServers) else MetaServers(mgmtd_address)

        def fetch(known_version: int):
            failure: FfsError | None = None
            for _ in range(len(servers.known)):
                address = servers.pick()
                stub = pool.stub(address, mgmtd_pb2_grpc.MgmtdStub)
                try:
                    with rpc_errors_mapped():
                        reply = stub.GetRoutingInfo(
                            mgmtd_pb2.GetRoutingInfoRequest(known_version=known_version), timeout=timeout_s)
                except Unavailable as exc:
                    servers.failed(address)
                    failure = exc
                    continue
                if reply.changed:
                    servers.learn(node.address for node in reply.routing.nodes
                                  if node.type == types_pb2.NODE_META)
                return reply.routing if reply.changed else None
            raise failure

        return cls(fetch)

    @property
    def version(self) -> int:
        snapshot = self._snapshot
        return snapshot.version if snapshot else 0

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self.refresh()
        return snapshot

    def refresh(self) -> _Snapshot:
        """Fetch routing newer than what we hold (no-op reply when unchanged)."""
        with self._lock:
            known = self._snapshot.version if self._snapshot else 0
            routing = self._fetch(known)
            if routing is not None:
                if self._snapshot is None or routing.version >= self._snapshot.version:
                    log.debug("routing version %d -> %d", known, routing.version)
                    self._snapshot = _Snapshot(routing)
            if self._snapshot is None:
                raise Unavailable("mgmtd returned no routing information")
            return self._snapshot

    def routing_info(self) -> types_pb2.RoutingInfo:
        """The cached RoutingInfo, rebuilt as a message (for tools and tests)."""
        snapshot = self._current()
        return types_pb2.RoutingInfo(
            version=snapshot.version, nodes=list(snapshot.nodes.values()),
            targets=list(snapshot.targets.values()), chains=list(snapshot.chains.values()),
            chain_tables=list(snapshot.tables.values()))

    def chain_table(self, table_id: int) -> types_pb2.ChainTable:
        snapshot = self._current()
        table = snapshot.tables.get(table_id)
        if table is None:
            snapshot = self.refresh()
            table = snapshot.tables.get(table_id)
        if table is None or not table.chains:
            raise NoChainTable(f"chain table {table_id} does not exist")
        return table

    def chain_id_for(self, layout: Layout, chunk_index: int) -> int:
        """Chain id holding chunk chunk_index of a file with this layout."""
        table = self.chain_table(layout.chain_table_id)
        index = layout.chain_index_for_chunk(chunk_index, len(table.chains))
        return table.chains[index - 1]

    def stripe_chain_ids(self, layout: Layout) -> list[int]:
        """Chain ids of the file's whole stripe, in stripe order."""
        table = self.chain_table(layout.chain_table_id)
        return [table.chains[i - 1] for i in layout.stripe_chain_indices(len(table.chains))]

    def _chain(self, chain_id: int) -> tuple[_Snapshot, types_pb2.ChainInfo]:
        snapshot = self._current()
        chain = snapshot.chains.get(chain_id)
        if chain is None or not chain.targets:
            snapshot = self.refresh()
            chain = snapshot.chains.get(chain_id)
        if chain is None or not chain.targets:
            raise Unavailable(f"chain {chain_id} has no targets in routing v{snapshot.version}")
        return snapshot, chain

    @staticmethod
    def _route(snapshot: _Snapshot, chain: types_pb2.ChainInfo, target_id: int) -> Route:
        target = snapshot.targets[target_id]
        node = snapshot.nodes.get(target.node_id)
        if node is None or not node.address:
            raise Unavailable(f"chain {chain.id} v{chain.version}: node {target.node_id} of target "
                              f"{target.id} has no address in routing v{snapshot.version}")
        return Route(chain.id, chain.version, target.id, node.id, node.address,
                     getattr(node, "bulk_address", ""))

    @staticmethod
    def _states(snapshot: _Snapshot, chain: types_pb2.ChainInfo) -> str:
        def state(target_id: int) -> str:
            target = snapshot.targets.get(target_id)
            return types_pb2.PublicTargetState.Name(target.public_state) if target else "MISSING"
        return ", ".join(f"{t}:{state(t)}" for t in chain.targets)

    def serving_routes(self, chain_id: int) -> list[Route]:
        """Routes to every SERVING target of the chain with an address, head first, tail last."""
        snapshot, chain = self._chain(chain_id)
        routes = []
        for target_id in chain.targets:
            target = snapshot.targets.get(target_id)
            node = snapshot.nodes.get(target.node_id) if target else None
            if target is not None and _is_serving(target) and node is not None and node.address:
                routes.append(self._route(snapshot, chain, target_id))
        if not routes:
            raise Unavailable(f"chain {chain_id} v{chain.version} has no serving target "
                              f"({self._states(snapshot, chain)}; routing v{snapshot.version})")
        return routes

    def head_route(self, chain_id: int) -> Route:
        """Where writes go: the chain's first SERVING target."""
        snapshot, chain = self._chain(chain_id)
        for target_id in chain.targets:
            target = snapshot.targets.get(target_id)
            if target is not None and _is_serving(target):
                return self._route(snapshot, chain, target_id)
        raise Unavailable(f"chain {chain_id} v{chain.version} has no serving head "
                          f"({self._states(snapshot, chain)}; routing v{snapshot.version})")

    def route(self, chain_id: int, for_write: bool = True, spread: int = 0) -> Route:
        """The head for writes; for reads the serving replica number spread (modulo their count)."""
        if for_write:
            return self.head_route(chain_id)
        routes = self.serving_routes(chain_id)
        return routes[spread % len(routes)]

    def chain_for(self, layout: Layout, chunk_index: int, for_write: bool = True) -> Route:
        """Route for chunk chunk_index of a file with this layout."""
        return self.route(self.chain_id_for(layout, chunk_index), for_write, spread=chunk_index)
