"""Pure chain-table generator: free targets grouped by node -> chains.

Why it matters: when a node fails, the reads it served move to the other
members of each of its chains, and its resync later pulls from them. If one
peer shared most of its chains, that peer would take most of the load; 3FS
solves a balanced incomplete block design for this. We get close with:
  1. a greedy pass: each chain's R targets on R distinct nodes (a node failure
     costs a chain at most one replica), the next node being the one that has
     shared the fewest chains with the nodes already picked, then the one with
     the most free targets left (uses them all on balanced clusters);
  2. a seeded, bounded local search that swaps nodes between chains while the
     sum of squared pair counts (chains shared by each node pair) drops, which
     evens out how many chains every pair shares: a node's chains spread over as
     many peers as possible, none holding much more than R-1 / N-1 of them;
  3. heads rotate over nodes: the member with the fewest heads so far leads
     (ties: the one that led least recently), then heads move to members whose
     node leads 2+ fewer chains, so head load (all writes) spreads and for R=1
     consecutive chains alternate nodes (a file's stripe spreads).
Deterministic: the same input always gives the same table.
"""

from __future__ import annotations

import collections
import itertools
import random

from fireflyfs.common.errors import InvalidArgument

REPLICAS_MAX = 8
REPLICATED_DEFAULT = 3
SPREAD_MOVES_MAX = 200_000          # local-search budget (moves tried), bounds the time on big clusters
SPREAD_SEED = 0x3F5


def default_replicas(storage_nodes: int) -> int:
    """3 replicas when there are at least 3 storage nodes, else 1 (never two replicas on one node)."""
    return REPLICATED_DEFAULT if storage_nodes >= REPLICATED_DEFAULT else 1


def generate_chains(targets_by_node: dict[int, list[int]], replicas: int) -> list[list[int]]:
    """Chains as lists of target ids, head first; leftover targets (fewer free nodes than R) stay out."""
    if not 1 <= replicas <= REPLICAS_MAX:
        raise InvalidArgument(f"replicas {replicas} not in 1..{REPLICAS_MAX}")
    nodes = sorted(node for node, targets in targets_by_node.items() if targets)
    if len(nodes) < replicas:
        raise InvalidArgument(f"{replicas} replicas need {replicas} storage nodes with free targets; "
                              f"{len(nodes)} have some")
    node_chains = _spread_peers(_greedy(targets_by_node, nodes, replicas))
    node_chains = _pick_heads(node_chains, nodes)
    remaining = {node: sorted(targets_by_node[node]) for node in nodes}
    chains = [[remaining[node].pop(0) for node in members] for members in node_chains]
    return _balance_heads(chains, node_of={t: n for n, ts in targets_by_node.items() for t in ts})


def pair_counts(node_chains: list[list[int]]) -> collections.Counter:
    """(node a, node b) with a < b -> chains both are members of."""
    counts: collections.Counter = collections.Counter()
    for members in node_chains:
        counts.update(itertools.combinations(sorted(members), 2))
    return counts


def _greedy(targets_by_node: dict[int, list[int]], nodes: list[int], replicas: int) -> list[list[int]]:
    left = {node: len(targets_by_node[node]) for node in nodes}
    position_of = {node: index for index, node in enumerate(nodes)}
    shared: collections.Counter = collections.Counter()
    last_used_step: dict[int, int] = {}
    node_chains: list[list[int]] = []
    for step in itertools.count():
        candidates = [node for node in nodes if left[node]]
        if len(candidates) < replicas:
            return node_chains
        chosen: list[int] = []
        for _ in range(replicas):
            def rank(node: int) -> tuple[int, int, int, int]:
                return (sum(shared[frozenset((node, peer))] for peer in chosen), -left[node],
                        last_used_step.get(node, -1), position_of[node])
            chosen.append(min((node for node in candidates if node not in chosen), key=rank))
        for node in chosen:
            left[node] -= 1
            last_used_step[node] = step
        shared.update(frozenset(pair) for pair in itertools.combinations(chosen, 2))
        node_chains.append(chosen)


def _spread_peers(node_chains: list[list[int]]) -> list[list[int]]:
    """Swap node a of one chain with node b of another while the sum of squared pair counts drops.

    A swap keeps every node's chain count and the distinct-nodes rule. The
    budget bounds the loop; it also stops after a long run of useless tries.
    """
    if len(node_chains) < 2 or len(node_chains[0]) < 2:
        return node_chains
    chains = [list(members) for members in node_chains]
    counts = pair_counts(chains)
    rng = random.Random(SPREAD_SEED)
    stale_max = 20 * len(chains) * len(chains[0]) ** 2

    def key(a: int, b: int) -> tuple[int, int]:
        return (a, b) if a < b else (b, a)

    def replace(members: list[int], old: int, new: int) -> int:
        """Put new in place of old; returns the change of the objective."""
        delta = 0
        for other in members:
            if other != old:
                before_old, before_new = counts[key(old, other)], counts[key(new, other)]
                delta += (before_old - 1) ** 2 - before_old ** 2 + (before_new + 1) ** 2 - before_new ** 2
                counts[key(old, other)] -= 1
                counts[key(new, other)] += 1
        members[members.index(old)] = new
        return delta

    stale = 0
    for _ in range(SPREAD_MOVES_MAX):
        first, second = rng.sample(chains, 2)
        a, b = rng.choice(first), rng.choice(second)
        if a not in second and b not in first:
            if replace(first, a, b) + replace(second, b, a) < 0:
                stale = 0
                continue
            replace(second, a, b)   # undo, in reverse order
            replace(first, b, a)
        stale += 1
        if stale > stale_max:
            break
    return chains


def _pick_heads(node_chains: list[list[int]], nodes: list[int]) -> list[list[int]]:
    """Put first the member with the fewest heads so far (ties: led least recently, then node order)."""
    position_of = {node: index for index, node in enumerate(nodes)}
    heads: collections.Counter = collections.Counter()
    last_head_step: dict[int, int] = {}
    ordered = []
    for step, members in enumerate(node_chains):
        head = min(members, key=lambda node: (heads[node], last_head_step.get(node, -1), position_of[node]))
        heads[head] += 1
        last_head_step[head] = step
        ordered.append([head] + [node for node in members if node != head])
    return ordered


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
