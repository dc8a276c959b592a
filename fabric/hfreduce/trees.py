"""The double binary tree of HFReduce's inter-node step (as NCCL's ncclGetBtree/ncclGetDtree).

Tree 0 is a binary tree over ranks 0..n-1 rooted at 0 in which, by the bit
pattern of the rank, odd ranks are leaves. Tree 1 is tree 0 mirrored
(r -> n-1-r) when n is even and shifted by one (r -> r+1 mod n) when n is odd,
so the leaves of one tree are the interior nodes of the other: each tree
carries half the data and each rank's link budget is spent evenly, the point
of the double tree (Sanders, Speck, Träff 2009). For even n every rank is a
leaf in exactly one tree; for odd n so is every rank but 0, which is interior
in both (tests/fabric/test_trees.py checks this for n up to 64).

Pure functions, no I/O: the allreduce asks ``dtree(n, rank)`` for its
parent and children in each tree.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class TreeNode:
    """One rank's place in one tree: parent (None at the root) and children in summation order."""

    parent: int | None
    children: tuple[int, ...]

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def is_leaf(self) -> bool:
        return not self.children


def btree(n: int, rank: int) -> TreeNode:
    """Rank's place in the bit-pattern binary tree rooted at 0 (ncclGetBtree)."""
    if not 0 <= rank < n:
        raise ValueError(f"rank {rank} outside 0..{n - 1}")
    bit = 1
    while bit < n and not bit & rank:
        bit <<= 1
    if rank == 0:
        return TreeNode(None, (bit >> 1,) if n > 1 else ())
    parent = (rank ^ bit) | (bit << 1)
    if parent >= n:
        parent = rank ^ bit
    low = bit >> 1
    children: list[int] = []
    if low:
        children.append(rank - low)
        while low and rank + low >= n:
            low >>= 1
        if low:
            children.append(rank + low)
    return TreeNode(parent, tuple(children))


def _mapped(node: TreeNode, to_rank) -> TreeNode:
    return TreeNode(None if node.parent is None else to_rank(node.parent),
                    tuple(to_rank(child) for child in node.children))


def dtree(n: int, rank: int) -> tuple[TreeNode, TreeNode]:
    """Rank's place in tree 0 and in tree 1 (mirror for even n, shift by one for odd n)."""
    first = btree(n, rank)
    if n % 2 == 0:
        second = _mapped(btree(n, n - 1 - rank), lambda r: n - 1 - r)
    else:
        second = _mapped(btree(n, (rank - 1) % n), lambda r: (r + 1) % n)
    return first, second


def tree_root(n: int, tree: int) -> int:
    """The root rank of tree 0 or 1."""
    if tree == 0 or n == 1:
        return 0
    return n - 1 if n % 2 == 0 else 1
