"""The storage node's copy of routing: chains (order, versions, public states), where
other targets live, and the fence every request passes.

Every request names (chain_id, chain_version); ``resolve`` fences it:

* fenced (no mgmtd contact for half the heartbeat timeout, or never) -> Unavailable
* chain unknown here                          -> StaleChainVersion (our routing may lag: refresh)
* chain_version != our version of the chain   -> StaleChainVersion (whoever is behind refreshes;
                                                 when the caller is ahead we refresh at once)
* chain has no target on this node            -> NotHead
* a write, and the chain's head is not local  -> NotHead
* a read, and the local target is not SERVING -> NotHead (SYNCING targets take writes, not reads)

All of them are Retryable: the client refreshes routing and tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from fireflyfs.common.errors import NotHead, StaleChainVersion, Unavailable
from fireflyfs.proto import types_pb2

from .craq import ChainView
from .fencing import Fence

log = logging.getLogger(__name__)

class RoutingView:
    """Thread-safe; updated by the heartbeat thread, read by every request."""

    def __init__(self, node_id: int, local_target_ids: list[int], fence: Fence | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.local_target_ids = frozenset(local_target_ids)
        self.fence = fence
        self._clock = clock
        self._lock = threading.Lock()
        self._version: int | None = None
        self._chains: dict[int, ChainView] = {}
        self._chain_of_target: dict[int, int] = {}
        self._node_of_target: dict[int, int] = {}
        self._addresses: dict[int, str] = {}
        self._bulk_addresses: dict[int, str] = {}
        self._retired: frozenset[int] = frozenset()
        self.refresh_wanted = threading.Event()  # the heartbeat thread refreshes soon after
        self._listeners: list[Callable[["RoutingView"], None]] = []

    @property
    def version(self) -> int | None:
        return self._version

    def add_listener(self, listener: Callable[["RoutingView"], None]) -> None:
        """Called (on the updating thread) after every routing install."""
        self._listeners.append(listener)

    def update(self, routing, *, force: bool = False) -> bool:
        """Install a RoutingInfo message unless it is older than ours; True if installed.

        force: install even an older version (a registration reply is authoritative:
        mgmtd may have lost its state and restarted its version count).
        """
        states = {t.id: t.public_state for t in routing.targets}
        chains = {chain.id: ChainView(chain.id, chain.version, tuple(chain.targets),
                                      tuple(states.get(t, types_pb2.PUBLIC_STATE_UNSPECIFIED)
                                            for t in chain.targets))
                  for chain in routing.chains}
        chain_of_target = {t: c.chain_id for c in chains.values() for t in c.targets}
        node_of_target = {t.id: t.node_id for t in routing.targets}
        addresses = {n.id: n.address for n in routing.nodes}
        bulk_addresses = {n.id: n.bulk_address for n in routing.nodes if n.bulk_address}
        retired = frozenset(t.id for t in routing.targets if t.retired and t.id not in chain_of_target)
        with self._lock:
            if not force and self._version is not None and routing.version < self._version:
                return False
            old_version = self._version
            self._version, self._chains = routing.version, chains
            self._chain_of_target, self._node_of_target = chain_of_target, node_of_target
            self._addresses, self._bulk_addresses = addresses, bulk_addresses
            self._retired = retired
        if old_version != routing.version:
            local = sorted(c.chain_id for c in chains.values() if self.local_target_ids & set(c.targets))
            log.info("node %d: routing version %s -> %d; %d chains, local chains %s", self.node_id,
                     old_version, routing.version, len(chains), local)
        for listener in self._listeners:
            listener(self)
        return True

    # ------------------------------------------------------------------ lookups

    def chain(self, chain_id: int) -> ChainView | None:
        return self._chains.get(chain_id)

    def chain_of_target(self, target_id: int) -> ChainView | None:
        chain_id = self._chain_of_target.get(target_id)
        return None if chain_id is None else self._chains.get(chain_id)

    def retired(self, target_id: int) -> bool:
        """The target left its chain by a move (rebalance, drain) and is in none: its chunks are garbage."""
        return target_id in self._retired

    def node_of_target(self, target_id: int) -> int | None:
        return self._node_of_target.get(target_id)

    def address_of_target(self, target_id: int) -> str | None:
        node_id = self._node_of_target.get(target_id)
        return None if node_id is None else self._addresses.get(node_id)

    def bulk_address_of_target(self, target_id: int) -> str | None:
        """The bulk listener of the node holding target_id (None: unknown, or the node has none)."""
        node_id = self._node_of_target.get(target_id)
        return None if node_id is None else self._bulk_addresses.get(node_id)

    # ------------------------------------------------------------------ fences

    def check_fence(self) -> None:
        if self._version is None:
            raise Unavailable(f"storage node {self.node_id} is not registered with mgmtd yet")
        if self.fence is not None:
            self.fence.check(self._clock())

    def checked_chain(self, chain_id: int, chain_version: int) -> ChainView:
        """The chain at exactly chain_version (fence passed), else a Retryable error."""
        self.check_fence()
        chain = self._chains.get(chain_id)
        if chain is None:
            self.refresh_wanted.set()
            raise StaleChainVersion(f"chain {chain_id} is not in routing version {self._version} of "
                                    f"storage node {self.node_id}")
        if chain_version != chain.version:
            if chain_version > chain.version:
                self.refresh_wanted.set()
            raise StaleChainVersion(f"chain {chain_id}: request has chain version {chain_version}, "
                                    f"storage node {self.node_id} has {chain.version}")
        return chain

    def resolve(self, chain_id: int, chain_version: int, *, write: bool) -> int:
        """The local target serving chain_id at chain_version (the head when write)."""
        chain = self.checked_chain(chain_id, chain_version)
        if write:
            head = chain.head
            if head is None or head not in self.local_target_ids:
                raise NotHead(f"chain {chain_id} version {chain.version}: head is target {head}, "
                              f"not on storage node {self.node_id}")
            return head
        for target_id in chain.targets:
            if target_id in self.local_target_ids:
                state = chain.state_of(target_id)
                if state != types_pb2.SERVING:
                    raise NotHead(f"chain {chain_id} version {chain.version}: target {target_id} is "
                                  f"{types_pb2.PublicTargetState.Name(state or 0)}, not serving reads")
                return target_id
        raise NotHead(f"chain {chain_id} version {chain.version} (targets {list(chain.targets)}) has "
                      f"no target on storage node {self.node_id}")
