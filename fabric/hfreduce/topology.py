"""Who is on which host, who leads it, and where every rank listens (pure, from the rendezvous table).

Ranks that report the same host key share a host: they reduce through shared
memory and only the host's leader (its lowest rank) joins the inter-node
trees. Hosts are numbered by their lowest rank, so every rank derives the
same node numbering, tree shape and therefore summation order.
"""

from __future__ import annotations

import dataclasses

from .trees import TreeNode, dtree


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    rank: int
    world_size: int
    hosts: tuple[tuple[int, ...], ...]          # ranks on each host, ascending; hosts by lowest rank
    addresses: tuple[tuple[str, int], ...]      # HFReduce listen address of each rank

    @classmethod
    def from_table(cls, table: list[dict], rank: int) -> "Topology":
        if sorted(int(e["rank"]) for e in table) != list(range(len(table))):
            raise ValueError("rendezvous table does not hold ranks 0..n-1 exactly once")
        by_host: dict[str, list[int]] = {}
        for entry in sorted(table, key=lambda e: int(e["rank"])):
            by_host.setdefault(str(entry["host"]), []).append(int(entry["rank"]))
        hosts = tuple(sorted((tuple(ranks) for ranks in by_host.values()), key=lambda h: h[0]))
        addresses = tuple((str(e["address"][0]), int(e["address"][1]))
                          for e in sorted(table, key=lambda e: int(e["rank"])))
        return cls(rank, len(table), hosts, addresses)

    @property
    def node(self) -> int:
        """Index of this rank's host among the hosts."""
        return next(i for i, ranks in enumerate(self.hosts) if self.rank in ranks)

    @property
    def node_count(self) -> int:
        return len(self.hosts)

    @property
    def local_ranks(self) -> tuple[int, ...]:
        return self.hosts[self.node]

    @property
    def local_rank(self) -> int:
        return self.local_ranks.index(self.rank)

    @property
    def leader(self) -> int:
        return self.local_ranks[0]

    @property
    def is_leader(self) -> bool:
        return self.rank == self.leader

    def leader_of(self, node: int) -> int:
        return self.hosts[node][0]

    def trees(self) -> tuple[TreeNode, TreeNode]:
        """This host's place in the two inter-node trees (over host indices)."""
        return dtree(self.node_count, self.node)
