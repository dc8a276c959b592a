"""What ``fsck --repair`` would do, decided before it does anything (pure: findings in, plan out).

Rewrites (rotten, divergent, content-divergent, missing) copy the good copy
the majority chose over the bad replica. Deletions (extra, orphan) are where
a wrong answer destroys data, so they pass two guards:

* A metadata store that looks younger than the chunks: orphaned inode ids at
  or above the store's next inode id (ids it never handed out: it was
  restored from an older copy, or is another cluster's), or more orphaned
  inodes than inodes the store holds. Orphans are then withheld unless the
  operator overrides (``force_orphan_delete``).
* A cap: when the deletions left exceed ``delete_max``, none is made.

Everything else (pending, no-majority, rewrites without a good copy or of an
inode the store does not know) is left alone with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from .fsck_findings import DELETE_KINDS, REWRITE_KINDS, Finding, FindingKind

delete_max_default = 100


@dataclasses.dataclass(frozen=True, slots=True)
class MetaCensus:
    """What the metadata store says of itself (Meta.StatFs): inodes it holds, the next id it hands out."""

    inodes: int
    next_inode_id: int


def meta_looks_younger(orphans: Iterable[Finding], census: MetaCensus) -> str | None:
    """Why orphans suggest the metadata store is older than the data (None: they do not)."""
    ids = sorted({finding.inode for finding in orphans})
    if not ids:
        return None
    if census.next_inode_id == 0:
        return "the metadata service does not report its next inode id, so orphans cannot be told safe"
    unissued = [inode for inode in ids if inode >= census.next_inode_id]
    if unissued:
        return (f"{len(unissued)} orphaned inode ids (e.g. {unissued[0]}) are at or above the metadata store's "
                f"next inode id {census.next_inode_id}: it never handed them out, so it is likely older than "
                f"the data (restored from an older copy?)")
    if len(ids) > census.inodes:
        return (f"{len(ids)} orphaned inodes outnumber the {census.inodes} inodes the metadata store holds: "
                f"it is likely missing files rather than the chunks being garbage")
    return None


@dataclasses.dataclass(slots=True)
class RepairPlan:
    rewrites: list[Finding] = dataclasses.field(default_factory=list)
    deletions: list[Finding] = dataclasses.field(default_factory=list)
    left_alone: list[tuple[Finding, str]] = dataclasses.field(default_factory=list)
    refusals: list[str] = dataclasses.field(default_factory=list)   # why deletions were withheld

    @property
    def empty(self) -> bool:
        return not self.rewrites and not self.deletions

    def per_target(self) -> dict[int, dict[str, int]]:
        """target id -> {"rewrites": n, "deletions": n}, for the dry-run summary."""
        out: dict[int, dict[str, int]] = {}
        for name, findings in (("rewrites", self.rewrites), ("deletions", self.deletions)):
            for finding in findings:
                out.setdefault(finding.target_id, {"rewrites": 0, "deletions": 0})[name] += 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict:
        return {
            "rewrites": [finding.to_json() for finding in self.rewrites],
            "deletions": [finding.to_json() for finding in self.deletions],
            "left_alone": [dict(finding.to_json(), reason=reason) for finding, reason in self.left_alone],
            "refusals": list(self.refusals),
            "per_target": {str(target): counts for target, counts in self.per_target().items()},
        }


def plan_repair(findings: Sequence[Finding], census: MetaCensus, *, delete_max: int = delete_max_default,
                force_orphan_delete: bool = False) -> RepairPlan:
    """The repair of findings, with the orphan guard and the deletion cap applied."""
    plan = RepairPlan()
    orphans = [finding for finding in findings if finding.kind is FindingKind.ORPHAN]
    orphaned_chunks = {(finding.chain_id, *finding.chunk) for finding in orphans}
    deletions: list[Finding] = []
    for finding in findings:
        if finding.kind in REWRITE_KINDS:
            if (finding.chain_id, *finding.chunk) in orphaned_chunks:
                plan.left_alone.append((finding, "its inode is unknown to the metadata store (see the orphan)"))
            elif not finding.source_target_id:
                plan.left_alone.append((finding, "no good copy to rewrite it from"))
            else:
                plan.rewrites.append(finding)
        elif finding.kind in DELETE_KINDS:
            deletions.append(finding)
        else:
            plan.left_alone.append((finding, _why_left(finding.kind)))
    younger = meta_looks_younger(orphans, census)
    if younger:
        if force_orphan_delete:
            plan.refusals.append(f"warning: {younger}; deleting orphans anyway (--force-orphan-delete)")
        else:
            plan.refusals.append(
                f"refusing to delete {len(orphans)} orphaned chunks: {younger}. If the metadata store is "
                f"right and they are garbage, run again with --force-orphan-delete (still capped by --max-delete)")
            withheld = [finding for finding in deletions if finding.kind is FindingKind.ORPHAN]
            plan.left_alone += [(finding, "orphan deletion refused: the metadata store looks younger "
                                          "than the chunks") for finding in withheld]
            deletions = [finding for finding in deletions if finding.kind is not FindingKind.ORPHAN]
    if len(deletions) > delete_max:
        plan.refusals.append(f"{len(deletions)} deletions exceed --max-delete {delete_max}: nothing will be "
                             f"deleted; check the findings, then raise --max-delete if they are right")
        plan.left_alone += [(finding, f"over --max-delete {delete_max}") for finding in deletions]
        deletions = []
    plan.deletions = deletions
    return plan


def _why_left(kind: FindingKind) -> str:
    if kind is FindingKind.PENDING:
        return "an update is pending; the next write or a resync completes it"
    if kind is FindingKind.NO_MAJORITY:
        return "replicas disagree and no side wins; decide by hand"
    return f"fsck does not repair {kind.value} findings"
