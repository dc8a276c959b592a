"""Pure chain-table generator: free targets grouped by node -> chains.

Rules, in priority order, for each new chain of R targets:
  1. its R targets sit on R distinct nodes (a node failure costs a chain at
     most one replica);
  2. the next target comes from a node that has shared the fewest chains with
     the nodes already picked (peers spread, so a failed node's recovery load
     spreads over many nodes, as 3FS's placement aims for);
  3. then from the node with the most free targets left (uses them all on
     balanced clusters);
  4. heads rotate over nodes: the member with the fewest heads so far leads
     (ties: the one that led least recently), so for R=1 consecutive chains alternate nodes and a
     file's stripe spreads, and for R>1 head load (all writes) spreads.

Default replicas is 1 for now (DEFAULT_REPLICAS): replication arrives with the
CRAQ issue; the generator already handles R > 1.
"""

from __future__ import annotations

import collections
import itertools

from fireflyfs.common.errors import InvalidArgument

DEFAULT_REPLICAS = 1
REPLICAS_MAX = 8


def generate_chains(targets_by_node: dict[int, list[int]], replicas: int) -> list[list[int]]:
    """Chains as lists of target ids, head first; leftover targets (fewer free nodes than R) stay out."""
    if not 1 <= replicas <= REPLICAS_MAX:
        raise InvalidArgument(f"replicas {replicas} not in 1..{REPLICAS_MAX}")
    nodes = sorted(node for node, targets in targets_by_node.items() if targets)
    if len(nodes) < replicas:
        raise InvalidArgument(f"{replicas} replicas need {replicas} storage nodes with free targets; "
                              f"{len(nodes)} have some")
    remaining = {node: sorted(targets_by_node[node]) for node in nodes}
    position_of = {node: index for index, node in enumerate(nodes)}
    shared = collections.Counter()  # frozenset({a, b}) -> chains a and b share
    heads = collections.Counter()
    last_head_step: dict[int, int] = {}
    last_used_step: dict[int, int] = {}
    chains: list[list[int]] = []
    for step in itertools.count():
        candidates = [node for node in nodes if remaining[node]]
        if len(candidates) < replicas:
            break
        chosen: list[int] = []
        for _ in range(replicas):
            def rank(node: int) -> tuple[int, int, int, int]:
                return (sum(shared[frozenset((node, peer))] for peer in chosen),
                        -len(remaining[node]),
                        last_used_step.get(node, -1),
                        position_of[node])
            chosen.append(min((node for node in candidates if node not in chosen), key=rank))
        # The member with the fewest heads so far leads the chain (set chosen, order free).
        head = min(chosen, key=lambda node: (heads[node], last_head_step.get(node, -1), position_of[node]))
        last_head_step[head] = step
        last_used_step.update((node, step) for node in chosen)
        chosen.remove(head)
        chosen.insert(0, head)
        for pair in itertools.combinations(chosen, 2):
            shared[frozenset(pair)] += 1
        heads[chosen[0]] += 1
        chains.append([remaining[node].pop(0) for node in chosen])
    return _balance_heads(chains, node_of={t: n for n, ts in targets_by_node.items() for t in ts})


def _balance_heads(chains: list[list[int]], node_of: dict[int, int]) -> list[list[int]]:
    """Move a chain's head to a member whose node leads 2+ fewer chains, until none does.

    Each move lowers the sum of squared head counts, so the loop ends; the
    bound only guards against a bug.
    """
    heads = collections.Counter(node_of[chain[0]] for chain in chains)
    for _ in range(len(chains) * REPLICAS_MAX + 1):
        moved = False
        for chain in chains:
            best = min(chain, key=lambda target: heads[node_of[target]])
            if heads[node_of[best]] + 1 < heads[node_of[chain[0]]]:
                heads[node_of[chain[0]]] -= 1
                heads[node_of[best]] += 1
                chain.remove(best)
                chain.insert(0, best)
                moved = True
        if not moved:
            break
    return chains
