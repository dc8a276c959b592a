"""The double binary tree: shape properties for every n up to 64, checked as in the paper's claim.

Method: build both trees for each n and check they are spanning trees rooted
where tree_root says, binary, consistent (child lists and parents agree), and
that leaves alternate: for even n every rank is a leaf in exactly one tree.
"""

from __future__ import annotations

import pytest

from fireflyfs.fabric.hfreduce.trees import btree, dtree, tree_root


def _check_tree(n: int, nodes, root: int) -> None:
    assert nodes[root].parent is None
    for rank, node in enumerate(nodes):
        assert len(node.children) <= 2
        for child in node.children:
            assert nodes[child].parent == rank
        if rank != root:
            assert rank in nodes[node.parent].children
    seen, frontier = {root}, [root]
    while frontier:
        rank = frontier.pop()
        for child in nodes[rank].children:
            assert child not in seen
            seen.add(child)
            frontier.append(child)
    assert seen == set(range(n))


@pytest.mark.parametrize("n", range(1, 65))
def test_both_trees_span_all_ranks(n):
    pairs = [dtree(n, rank) for rank in range(n)]
    for tree in (0, 1):
        _check_tree(n, [pair[tree] for pair in pairs], tree_root(n, tree))


@pytest.mark.parametrize("n", range(2, 65))
def test_every_rank_is_a_leaf_in_at_most_one_tree(n):
    for rank in range(n):
        first, second = dtree(n, rank)
        leaves = first.is_leaf + second.is_leaf
        if n % 2 == 0 or rank != 0:
            assert leaves == 1, (n, rank, first, second)
        else:
            assert leaves == 0      # odd n: rank 0 is interior in both, all others a leaf once


def test_matches_nccls_illustration_for_14_ranks():
    # NCCL trees.cc: 0 -> 8; 8 -> 4, 12; 12 -> 10, 13; 4 -> 2, 6; 2 -> 1, 3
    assert btree(14, 0).children == (8,)
    assert btree(14, 8).children == (4, 12)
    assert btree(14, 12).children == (10, 13)
    assert btree(14, 13).parent == 12
    assert btree(14, 2).children == (1, 3)


def test_rank_out_of_range_is_refused():
    with pytest.raises(ValueError):
        btree(4, 4)
