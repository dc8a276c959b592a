"""fsck as pure logic: replicas' chunk metadata (and verdicts on their bytes) in, findings out.

Per chunk of a chain, the SERVING replicas vote (``decide``): a committed copy
whose bytes match its own block CRCs votes for its content (commit version,
length, stored checksum and, when verified, the CRC of the bytes read); a
replica without the chunk votes for absence. Two copies never vote:

    rotten   bytes that fail their own block CRCs (bit rot): never good
    pending  update_version != commit_version (a write in flight, or one a
             failure left behind): left to the next write or resync

The good copy is the content a strict majority of voters agree on. Without
one, the head's side wins only a tie it can justify: its committed version
is higher than every other side's (absence counts as version 0, so a head
holding the chunk beats a replica without it, never the reverse). Anything
else is an unjustifiable tie, reported as ``no-majority`` and left alone.
A lone voter is a majority: the one good copy beside a rotten one wins,
head or not.

What each replica is then told (``FindingKind``):

    rotten             its bytes fail its own CRCs; rewrite from the good copy
    divergent          its stored metadata (length, checksum, version) differs
                       from the good copy's; rewrite
    content-divergent  same metadata, but the bytes read differ (both sides
                       pass their own CRCs); rewrite
    missing            the good copy exists, this replica has none; rewrite
    extra              the majority has no such chunk, this replica has; delete
    pending            see above; no action
    no-majority        replicas disagree and no side wins; no action
    orphan             the chunk's inode is neither in the namespace nor
                       queued for GC; delete (guarded: fsck_plan.py)

A live cluster changes under fsck, so the runner compares twice and keeps only
findings seen identically in both passes (``persistent``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterable, Mapping, Sequence


class FindingKind(str, enum.Enum):
    ROTTEN = "rotten"
    DIVERGENT = "divergent"
    CONTENT_DIVERGENT = "content-divergent"
    MISSING = "missing"
    EXTRA = "extra"
    PENDING = "pending"
    NO_MAJORITY = "no-majority"
    ORPHAN = "orphan"


REWRITE_KINDS = frozenset({FindingKind.ROTTEN, FindingKind.DIVERGENT, FindingKind.CONTENT_DIVERGENT,
                           FindingKind.MISSING})
DELETE_KINDS = frozenset({FindingKind.EXTRA, FindingKind.ORPHAN})


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkMeta:
    """One chunk on one target, as Storage.GetChunkMetas reports it.

    verified: its bytes were re-read (GetChunkMetas with verify); only then do
    content_crc and bad_block_count mean anything.
    """

    inode: int
    index: int
    length: int
    commit_version: int
    update_version: int
    chain_version: int
    checksum: int
    verified: bool = False
    content_crc: int = 0
    bad_block_count: int = 0

    @property
    def chunk(self) -> tuple[int, int]:
        return self.inode, self.index

    @property
    def pending(self) -> bool:
        return self.update_version != self.commit_version

    @property
    def rotten(self) -> bool:
        return self.verified and self.bad_block_count > 0

    def content(self, with_bytes: bool) -> tuple:
        """What replicas must agree on: the stored metadata, and the CRC of the bytes read if with_bytes."""
        return self.commit_version, self.length, self.checksum, self.content_crc if with_bytes else None

    @classmethod
    def from_proto(cls, info) -> "ChunkMeta":
        return cls(info.chunk.inode, info.chunk.index, info.length, info.commit_version,
                   info.update_version, info.chain_version, info.chunk_checksum, info.verified,
                   info.content_crc, info.bad_block_count)

    def describe(self) -> str:
        text = (f"len {self.length} v{self.commit_version}/u{self.update_version} "
                f"chain v{self.chain_version} crc {self.checksum:#010x}")
        if self.verified:
            text += f" content {self.content_crc:#010x}"
            if self.bad_block_count:
                text += f" ROTTEN {self.bad_block_count} blocks"
        return text


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    chain_id: int
    inode: int
    index: int
    target_id: int                  # the replica the finding is about (0: the chain as a whole)
    source_target_id: int           # the replica holding the good copy to rewrite from (0: none)
    detail: str

    @property
    def key(self) -> tuple:
        return self.kind, self.chain_id, self.inode, self.index, self.target_id

    @property
    def chunk(self) -> tuple[int, int]:
        return self.inode, self.index

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["kind"] = self.kind.value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Replica:
    """One SERVING target of a chain and every chunk it holds (head first in a chain's list)."""

    target_id: int
    metas: Sequence[ChunkMeta]


# ---- the majority decision -------------------------------------------------------------

ABSENT = "absent"   # the vote of a replica without the chunk


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """Which content of one chunk is good, and why.

    decided False: no side won (reason says why). Else good is the agreed
    content (``ChunkMeta.content``) or ABSENT, and source_target_id the first
    replica in chain order holding it (0 for ABSENT). with_bytes: contents
    were compared by the bytes read too (every voter's copy was verified).
    """

    decided: bool
    good: tuple | str | None
    source_target_id: int
    reason: str
    with_bytes: bool = False


def _version(vote: tuple | str) -> int:
    return 0 if vote == ABSENT else vote[0]


def decide(copies: Sequence[tuple[int, ChunkMeta | None]]) -> Decision:
    """The good copy of one chunk among its replicas, (target id, meta or None if absent), head first."""
    voting = [(target_id, meta) for target_id, meta in copies
              if meta is None or not (meta.pending or meta.rotten)]
    # Bytes are compared only when every voter's were read (a copy rewritten mid-read is not).
    with_bytes = all(meta.verified for _, meta in voting if meta is not None)
    votes: dict[tuple | str, list[int]] = {}
    for target_id, meta in voting:
        votes.setdefault(ABSENT if meta is None else meta.content(with_bytes), []).append(target_id)
    if not voting:
        return Decision(False, None, 0, "no replica holds a committed copy that passes its own CRCs")
    ranked = sorted(votes.items(), key=lambda item: -len(item[1]))
    top, top_targets = ranked[0]
    if 2 * len(top_targets) > len(voting):
        silent = len(copies) - len(voting)
        return Decision(True, top, 0 if top == ABSENT else top_targets[0],
                        f"{len(top_targets)} of {len(voting)} voting replicas agree"
                        + (f"; {silent} rotten or pending did not vote" if silent else ""), with_bytes)
    head_id = copies[0][0]
    head_vote = next((vote for vote, targets in votes.items() if head_id in targets), None)
    if (head_vote is not None and len(votes[head_vote]) == len(top_targets)
            and all(_version(head_vote) > _version(vote) for vote in votes if vote != head_vote)):
        return Decision(True, head_vote, 0 if head_vote == ABSENT else head_id,
                        f"a tie among {len(voting)} voting replicas; the head holds the highest committed "
                        f"version", with_bytes)
    sides = "; ".join(f"{'absent' if vote == ABSENT else f'v{vote[0]} len {vote[1]}'} on {targets}"
                      for vote, targets in ranked)
    return Decision(False, None, 0, f"no majority and no tie the head can justify: {sides}")


def _compare(good: ChunkMeta, meta: ChunkMeta) -> tuple[FindingKind, str]:
    fields = [name for name in ("length", "checksum", "commit_version")
              if getattr(good, name) != getattr(meta, name)]
    if fields:
        return FindingKind.DIVERGENT, f"{', '.join(fields)} differ"
    return FindingKind.CONTENT_DIVERGENT, "bytes differ under equal metadata"


def judge_chunk(chain_id: int, chunk: tuple[int, int],
                copies: Sequence[tuple[int, ChunkMeta | None]]) -> list[Finding]:
    """Findings of one chunk over its replicas (head first); none when all agree."""
    findings = [Finding(FindingKind.PENDING, chain_id, *chunk, target_id, 0, meta.describe())
                for target_id, meta in copies if meta is not None and meta.pending]
    decision = decide(copies)
    if not decision.decided:
        findings += [Finding(FindingKind.ROTTEN, chain_id, *chunk, target_id, 0,
                             f"{meta.describe()}; no good copy: {decision.reason}")
                     for target_id, meta in copies if meta is not None and meta.rotten]
        if any(meta is None or not (meta.pending or meta.rotten) for _, meta in copies):
            findings.append(Finding(FindingKind.NO_MAJORITY, chain_id, *chunk, 0, 0, decision.reason))
        return findings
    source = decision.source_target_id
    good = dict(copies)[source] if source else None
    for target_id, meta in copies:
        if meta is not None and meta.pending:
            continue
        if good is None:
            if meta is not None:
                findings.append(Finding(FindingKind.EXTRA, chain_id, *chunk, target_id, 0,
                                        f"{meta.describe()}; absent on the others ({decision.reason})"))
        elif meta is None:
            findings.append(Finding(FindingKind.MISSING, chain_id, *chunk, target_id, source,
                                    f"good copy on {source}: {good.describe()} ({decision.reason})"))
        elif meta.rotten:
            findings.append(Finding(FindingKind.ROTTEN, chain_id, *chunk, target_id, source,
                                    f"{meta.describe()}; good copy on {source} ({decision.reason})"))
        elif meta.content(decision.with_bytes) != decision.good:
            kind, what = _compare(good, meta)
            findings.append(Finding(kind, chain_id, *chunk, target_id, source,
                                    f"{what}: good copy on {source} {good.describe()}, here "
                                    f"{meta.describe()} ({decision.reason})"))
    return findings


def compare_chain(chain_id: int, replicas: Sequence[Replica]) -> list[Finding]:
    """Findings of one chain, chunk by chunk; replicas[0] is the head."""
    tables = [(replica.target_id, {meta.chunk: meta for meta in replica.metas}) for replica in replicas]
    chunks = sorted(set().union(*(table for _, table in tables)))
    findings: list[Finding] = []
    for chunk in chunks:
        findings += judge_chunk(chain_id, chunk, [(target_id, table.get(chunk)) for target_id, table in tables])
    return findings


def find_orphans(chain_id: int, replicas: Sequence[Replica], live_inodes: set[int]) -> list[Finding]:
    """Chunks of this chain whose inode is in none of live_inodes (existing or GC-pending)."""
    return [Finding(FindingKind.ORPHAN, chain_id, meta.inode, meta.index, replica.target_id, 0,
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
    bytes_verified: bool = False       # chunk bytes were re-read, not only metadata compared
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
            "bytes_verified": self.bytes_verified,
            "chains_checked": self.chains_checked,
            "replicas_checked": self.replicas_checked,
            "chunks_checked": self.chunks_checked,
            "counts": dict(self.counts()),
            "findings": [finding.to_json() for finding in self.findings],
            "repaired": [finding.to_json() for finding in self.repaired],
            "repair_failures": [dict(finding.to_json(), error=error) for finding, error in self.repair_failures],
        }
