"""Pure move planner: which replica of which chain goes to which free target.

Why moves and not new tables: data already written lives on its chains, so a
new node only takes load when existing chains gain replicas on it. A move adds
a free target to a chain, lets the normal resync fill it, and only then takes
the old replica out (cluster.py runs that); this module only decides.

Rebalance evens out the replicas each storage node holds: while the fullest
node holds 2+ more than the emptiest node that has a free target, one replica
of a chain on the fullest node moves there (never onto a node the chain already
uses: a node failure must cost a chain at most one replica). Drain moves every
replica off one node, each to the emptiest node with a free target outside that
chain. Both see the chains as they will be once the moves under way are done,
never move a replica that is itself arriving, and never use a draining node.
Deterministic: the same input gives the same plan.
"""

from __future__ import annotations

import collections
import dataclasses

from fireflyfs.common.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class PlannedMove:
    chain_id: int
    from_target: int
    to_target: int


@dataclasses.dataclass
class Placement:
    """What the planner sees: chains (target ids, head first), each target's node, and the free
    targets of every node that may receive replicas."""

    chains: dict[int, list[int]]
    node_of: dict[int, int]
    free: dict[int, list[int]]                          # node -> free target ids (sorted)
    arriving: set[int] = dataclasses.field(default_factory=set)    # targets a move brings in
    draining: set[int] = dataclasses.field(default_factory=set)
    moves_per_chain: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def loads(self) -> collections.Counter:
        """Replicas per node, every node that holds one or could receive one counted (0 too)."""
        counts = collections.Counter({node: 0 for node in self.free if node not in self.draining})
        for members in self.chains.values():
            counts.update(self.node_of[target] for target in members)
        return counts

    def _apply(self, move: PlannedMove) -> None:
        members = self.chains[move.chain_id]
        members[members.index(move.from_target)] = move.to_target
        self.free[self.node_of[move.to_target]].remove(move.to_target)
        self.arriving.add(move.to_target)
        self.moves_per_chain[move.chain_id] += 1

    def _receivers(self, chain_id: int) -> list[int]:
        used = {self.node_of[target] for target in self.chains[chain_id]}
        return [node for node, targets in self.free.items()
                if targets and node not in used and node not in self.draining]


def plan_rebalance(placement: Placement) -> list[PlannedMove]:
    """Moves that leave every node within one replica of the others, as far as free targets allow."""
    moves: list[PlannedMove] = []
    while True:
        loads = placement.loads()
        move = _best_move(placement, loads)
        if move is None:
            return moves
        placement._apply(move)
        moves.append(move)


def _best_move(placement: Placement, loads: collections.Counter) -> PlannedMove | None:
    """From the fullest node (then the next) to the emptiest receiver, chains with the fewest moves
    first (a chain's moves run one after another; different chains' in parallel). A chain has at
    most one replica on a node, so the source node names the replica that moves."""
    for source in sorted(loads, key=lambda node: (-loads[node], node)):
        for chain_id in sorted(placement.chains, key=lambda c: (placement.moves_per_chain[c], c)):
            members = placement.chains[chain_id]
            on_source = [t for t in members if placement.node_of[t] == source and t not in placement.arriving]
            if not on_source:
                continue
            receivers = [node for node in placement._receivers(chain_id) if loads[source] - loads[node] >= 2]
            if not receivers:
                continue
            node = min(receivers, key=lambda n: (loads[n], n))
            return PlannedMove(chain_id, on_source[0], placement.free[node][0])
    return None


def plan_drain(placement: Placement, node_id: int) -> list[PlannedMove]:
    """Every replica on node_id to another node; InvalidArgument naming a chain with nowhere to go."""
    placement.draining.add(node_id)
    moves: list[PlannedMove] = []
    for chain_id in sorted(placement.chains):
        for target in list(placement.chains[chain_id]):
            if placement.node_of[target] != node_id:
                continue
            receivers = placement._receivers(chain_id)
            if not receivers:
                raise InvalidArgument(
                    f"cannot drain node {node_id}: chain {chain_id} has no node with a free target "
                    f"outside it; add a storage node first")
            loads = placement.loads()
            node = min(receivers, key=lambda n: (loads[n], n))
            move = PlannedMove(chain_id, target, placement.free[node][0])
            placement._apply(move)
            moves.append(move)
    return moves


def spread(placement: Placement) -> dict[int, int]:
    """Replicas per node (the report after a rebalance)."""
    return dict(sorted(placement.loads().items()))
