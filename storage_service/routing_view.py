"""The storage node's copy of routing: which chains exist, their versions, and which
local target serves each.

Every request names (chain_id, chain_version); ``resolve`` fences it:

* no routing yet (not registered)            -> Unavailable (the node serves nothing)
* chain unknown here                          -> StaleChainVersion (our routing may lag: refresh)
* chain_version != our version of the chain   -> StaleChainVersion (whoever is behind refreshes;
                                                 when the caller is ahead we refresh at once)
* chain has no target on this node            -> NotHead
* a write, and the chain's head is not local  -> NotHead

All of them are Retryable: the client refreshes routing and tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from fireflyfs.common.errors import NotHead, StaleChainVersion, Unavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ChainRoute:
    chain_id: int
    version: int
    targets: tuple[int, ...]     # head first


class RoutingView:
    """Thread-safe; updated by the heartbeat thread, read by every request."""

    def __init__(self, node_id: int, local_target_ids: list[int]) -> None:
        self.node_id = node_id
        self.local_target_ids = frozenset(local_target_ids)
        self._lock = threading.Lock()
        self._version: int | None = None
        self._chains: dict[int, ChainRoute] = {}
        self.refresh_wanted = threading.Event()  # the heartbeat thread refreshes soon after

    @property
    def ready(self) -> bool:
        return self._version is not None

    @property
    def version(self) -> int | None:
        return self._version

    def update(self, routing, *, force: bool = False) -> bool:
        """Install a RoutingInfo message unless it is older than ours; True if installed.

        force: install even an older version (a registration reply is authoritative:
        mgmtd may have lost its state and restarted its version count).
        """
        chains = {chain.id: ChainRoute(chain.id, chain.version, tuple(chain.targets))
                  for chain in routing.chains}
        with self._lock:
            if not force and self._version is not None and routing.version < self._version:
                return False
            old_version, self._version, self._chains = self._version, routing.version, chains
        if old_version != routing.version:
            local = sorted(c.chain_id for c in chains.values() if self.local_target_ids & set(c.targets))
            log.info("node %d: routing version %s -> %d; %d chains, local chains %s", self.node_id,
                     old_version, routing.version, len(chains), local)
        return True

    def chain(self, chain_id: int) -> ChainRoute | None:
        return self._chains.get(chain_id)

    def resolve(self, chain_id: int, chain_version: int, *, write: bool) -> int:
        """The local target serving chain_id at chain_version (the head when write)."""
        version = self._version
        if version is None:
            raise Unavailable(f"storage node {self.node_id} is not registered with mgmtd yet")
        chain = self._chains.get(chain_id)
        if chain is None:
            self.refresh_wanted.set()
            raise StaleChainVersion(f"chain {chain_id} is not in routing version {version} of "
                                    f"storage node {self.node_id}")
        if chain_version != chain.version:
            if chain_version > chain.version:
                self.refresh_wanted.set()
            raise StaleChainVersion(f"chain {chain_id}: request has chain version {chain_version}, "
                                    f"storage node {self.node_id} has {chain.version}")
        if write:
            head = chain.targets[0] if chain.targets else None
            if head not in self.local_target_ids:
                raise NotHead(f"chain {chain_id} version {chain.version}: head is target {head}, "
                              f"not on storage node {self.node_id}")
            return head
        for target_id in chain.targets:
            if target_id in self.local_target_ids:
                return target_id
        raise NotHead(f"chain {chain_id} version {chain.version} (targets {list(chain.targets)}) has "
                      f"no target on storage node {self.node_id}")

    def local_chains(self) -> dict[int, ChainRoute]:
        return {cid: c for cid, c in self._chains.items() if self.local_target_ids & set(c.targets)}
