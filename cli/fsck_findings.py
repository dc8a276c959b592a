"""fsck as pure logic: replicas' chunk metadata in, findings out (no I/O here).

What counts as a problem, per chain, comparing its SERVING replicas with the
head (the replica CRAQ treats as authoritative, as resync does):

    divergent   both hold the chunk, but length, checksum or commit version differ
    missing     the head holds it, a replica does not
    extra       a replica holds it, the head does not (resync would remove it)
    pending     a replica holds it with update_version != commit_version (a write
                in flight, or one a failure left behind)
    orphan      the chunk's inode is neither in the namespace nor queued for GC

A live cluster changes under fsck, so the runner compares twice and keeps only
findings seen identically in both passes (``persistent``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterable, Mapping, Sequence


class FindingKind(str, enum.Enum):
    DIVERGENT = "divergent"
    MISSING = "missing"
    EXTRA = "extra"
    PENDING = "pending"
    ORPHAN = "orphan"


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkMeta:
    """One chunk on one target, as Storage.GetChunkMetas reports it."""

    inode: int
    index: int
    length: int
    commit_version: int
    update_version: int
    chain_version: int
    checksum: int

    @property
    def chunk(self) -> tuple[int, int]:
        return self.inode, self.index

    @property
    def pending(self) -> bool:
        return self.update_version != self.commit_version

    @classmethod
    def from_proto(cls, info) -> "ChunkMeta":
        return cls(info.chunk.inode, info.chunk.index, info.length, info.commit_version,
                   info.update_version, info.chain_version, info.chunk_checksum)

    def describe(self) -> str:
        return (f"len {self.length} v{self.commit_version}/u{self.update_version} "
                f"chain v{self.chain_version} crc {self.checksum:#010x}")


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    chain_id: int
    inode: int
    index: int
    target_id: int                  # the replica the finding is about
    head_target_id: int             # the reference replica (0 for orphans on no head)
    detail: str

    @property
    def key(self) -> tuple:
        return self.kind, self.chain_id, self.inode, self.index, self.target_id

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["kind"] = self.kind.value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Replica:
    """One SERVING target of a chain and every chunk it holds (head first in a chain's list)."""

    target_id: int
    metas: Sequence[ChunkMeta]


def _differs(head: ChunkMeta, other: ChunkMeta) -> list[str]:
    fields = []
    for name in ("length", "checksum", "commit_version"):
        if getattr(head, name) != getattr(other, name):
            fields.append(name)
    return fields


def compare_chain(chain_id: int, replicas: Sequence[Replica]) -> list[Finding]:
    """Findings of one chain; replicas[0] is the head. Pending chunks are reported, not compared."""
    if not replicas:
        return []
    head = replicas[0]
    head_metas = {meta.chunk: meta for meta in head.metas}
    findings = [Finding(FindingKind.PENDING, chain_id, m.inode, m.index, head.target_id, head.target_id,
                        m.describe()) for m in head.metas if m.pending]
    for replica in replicas[1:]:
        metas = {meta.chunk: meta for meta in replica.metas}
        for chunk, meta in sorted(metas.items()):
            reference = head_metas.get(chunk)
            if meta.pending:
                findings.append(Finding(FindingKind.PENDING, chain_id, *chunk, replica.target_id, head.target_id,
                                        meta.describe()))
            elif reference is None:
                findings.append(Finding(FindingKind.EXTRA, chain_id, *chunk, replica.target_id, head.target_id,
                                        f"{meta.describe()}; absent on the head"))
            elif not reference.pending and (fields := _differs(reference, meta)):
                findings.append(Finding(FindingKind.DIVERGENT, chain_id, *chunk, replica.target_id, head.target_id,
                                        f"{', '.join(fields)} differ: head {reference.describe()}, "
                                        f"replica {meta.describe()}"))
        for chunk in sorted(set(head_metas) - set(metas)):
            findings.append(Finding(FindingKind.MISSING, chain_id, *chunk, replica.target_id, head.target_id,
                                    f"head has {head_metas[chunk].describe()}"))
    return findings


def find_orphans(chain_id: int, replicas: Sequence[Replica], live_inodes: set[int]) -> list[Finding]:
    """Chunks of this chain whose inode is in none of live_inodes (existing or GC-pending)."""
    head_id = replicas[0].target_id if replicas else 0
    return [Finding(FindingKind.ORPHAN, chain_id, meta.inode, meta.index, replica.target_id, head_id,
                    f"inode {meta.inode} is neither in the namespace nor queued for GC")
            for replica in replicas for meta in replica.metas if meta.inode not in live_inodes]


def inode_ids(replicas: Iterable[Replica]) -> set[int]:
    return {meta.inode for replica in replicas for meta in replica.metas}


def persistent(first: Iterable[Finding], second: Iterable[Finding]) -> list[Finding]:
    """Findings of the second pass that the first pass saw too (same kind, chunk and target)."""
    seen = {finding.key for finding in first}
    return [finding for finding in second if finding.key in seen]


@dataclasses.dataclass(slots=True)
class Report:
    chains_checked: int = 0
    replicas_checked: int = 0
    chunks_checked: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    repaired: list[Finding] = dataclasses.field(default_factory=list)
    repair_failures: list[tuple[Finding, str]] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def counts(self) -> Mapping[str, int]:
        counts = {kind.value: 0 for kind in FindingKind}
        for finding in self.findings:
            counts[finding.kind.value] += 1
        return counts

    def to_json(self) -> dict:
        return {
            "clean": self.clean,
            "chains_checked": self.chains_checked,
            "replicas_checked": self.replicas_checked,
            "chunks_checked": self.chunks_checked,
            "counts": dict(self.counts()),
            "findings": [finding.to_json() for finding in self.findings],
            "repaired": [finding.to_json() for finding in self.repaired],
            "repair_failures": [dict(finding.to_json(), error=error) for finding, error in self.repair_failures],
        }
