"""What fsck --repair may do: the orphan guard and the deletion cap, over hand-built findings.

Method: findings as the judge would make them, a census of the metadata store
(inodes it holds, next inode id), and the plan each combination must give:
which rewrites and deletions it keeps, which it leaves alone, and the
messages that say why and how to override. Pure: no I/O.
"""

from __future__ import annotations

from fireflyfs.cli.fsck_findings import Finding, FindingKind
from fireflyfs.cli.fsck_plan import MetaCensus, meta_looks_younger, plan_repair

HEAD, MIDDLE, TAIL = 101, 202, 303


def finding(kind, inode=5, index=0, target=MIDDLE, source=HEAD, chain=1):
    return Finding(kind, chain, inode, index, target, source, "")


def orphans(inode, chunks=1):
    return [finding(FindingKind.ORPHAN, inode, index, target, 0)
            for index in range(chunks) for target in (HEAD, MIDDLE, TAIL)]


HEALTHY = MetaCensus(inodes=50, next_inode_id=60)


def test_rewrites_deletions_and_what_is_left_alone():
    found = [finding(FindingKind.ROTTEN, target=HEAD, source=MIDDLE), finding(FindingKind.MISSING, index=1),
             finding(FindingKind.ROTTEN, index=2, target=TAIL, source=0),
             finding(FindingKind.EXTRA, index=3, source=0), finding(FindingKind.PENDING, index=4, source=0),
             finding(FindingKind.NO_MAJORITY, index=5, target=0, source=0), *orphans(40)]
    plan = plan_repair(found, HEALTHY)
    assert [(f.kind, f.index) for f in plan.rewrites] == [(FindingKind.ROTTEN, 0), (FindingKind.MISSING, 1)]
    assert sorted((f.kind, f.target_id) for f in plan.deletions) == sorted(
        [(FindingKind.EXTRA, MIDDLE)] + [(FindingKind.ORPHAN, t) for t in (HEAD, MIDDLE, TAIL)])
    assert sorted(f.index for f, _ in plan.left_alone) == [2, 4, 5] and plan.refusals == []
    assert plan.per_target() == {HEAD: {"rewrites": 1, "deletions": 1}, MIDDLE: {"rewrites": 1, "deletions": 2},
                                 TAIL: {"rewrites": 0, "deletions": 1}}
    assert plan.to_json()["per_target"][str(MIDDLE)] == {"rewrites": 1, "deletions": 2}


def test_orphans_above_the_inode_counter_mean_a_younger_meta():
    found = orphans(70) + orphans(40)
    assert "never handed them out" in meta_looks_younger(found, HEALTHY)
    plan = plan_repair(found, HEALTHY)
    assert plan.deletions == [] and len(plan.left_alone) == 6
    assert "--force-orphan-delete" in plan.refusals[0] and "next inode id 60" in plan.refusals[0]
    forced = plan_repair(found, HEALTHY, force_orphan_delete=True)
    assert len(forced.deletions) == 6 and forced.refusals[0].startswith("warning:")


def test_more_orphans_than_inodes_mean_a_younger_meta():
    census = MetaCensus(inodes=3, next_inode_id=1000)
    few = [f for inode in (10, 11, 12) for f in orphans(inode)]
    assert meta_looks_younger(few, census) is None
    many = few + orphans(13)
    assert "outnumber the 3 inodes" in meta_looks_younger(many, census)
    assert plan_repair(many, census).deletions == []
    assert meta_looks_younger(orphans(5), MetaCensus(inodes=10, next_inode_id=0)) is not None, \
        "a metadata service that does not say its counter gets no benefit of the doubt"


def test_the_cap_deletes_nothing_rather_than_some():
    found = [f for inode in range(10, 20) for f in orphans(inode)]             # 30 deletions
    found.append(finding(FindingKind.MISSING))
    plan = plan_repair(found, HEALTHY, delete_max=29)
    assert plan.deletions == [] and len(plan.rewrites) == 1, "rewrites still go ahead"
    assert "30 deletions exceed --max-delete 29" in plan.refusals[0]
    assert len(plan_repair(found, HEALTHY, delete_max=30).deletions) == 30
    forced = plan_repair(orphans(999, chunks=4), HEALTHY, delete_max=5, force_orphan_delete=True)
    assert forced.deletions == [], "the override of the orphan guard still honours the cap"
    assert any("exceed --max-delete 5" in refusal for refusal in forced.refusals)


def test_a_rewrite_of_an_orphaned_chunk_is_left_alone():
    found = orphans(40) + [finding(FindingKind.ROTTEN, inode=40, target=TAIL, source=HEAD)]
    plan = plan_repair(found, HEALTHY)
    assert plan.rewrites == [] and len(plan.deletions) == 3
    assert "unknown to the metadata store" in plan.left_alone[0][1]
