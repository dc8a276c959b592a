"""fsck's judging logic: replicas' chunk metadata (and verdicts on their bytes) in, findings out.

Method: hand-built metadata for chains of up to three replicas. First the
majority decision as a table held as data (copies head first -> who wins),
then every combination of copy states for chains of 1-3 replicas, checked
against the rules the decision must keep (a rotten copy never wins, a strict
majority always does, the head wins only a tie it can justify, every bad
replica is told to take the winner's copy). Then one difference at a time
and the finding each must yield, orphans, the two-pass filter and the JSON
report. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from fireflyfs.cli.fsck_findings import (ABSENT, DELETE_KINDS, REWRITE_KINDS, ChunkMeta, FindingKind, Replica,
                                         Report, compare_chain, decide, find_orphans, inode_ids, judge_chunk,
                                         persistent)

HEAD, MIDDLE, TAIL = 101, 202, 303
TARGETS = (HEAD, MIDDLE, TAIL)


def meta(inode=5, index=0, length=100, version=3, update=None, chain_version=2, checksum=0xABC,
         content=None, bad=0):
    """A committed copy; content (the CRC of the bytes read) makes it a verified one."""
    return ChunkMeta(inode, index, length, version, version if update is None else update, chain_version,
                     checksum, content is not None, content or 0, bad)


# The states a copy can be in, verified (bytes re-read), for the tables below.
STATES = {
    "A": meta(content=0xA),                      # the content most tests call good
    "B": meta(checksum=0xBBB, content=0xB),      # same version, other bytes (each passes its own CRCs)
    "old": meta(version=2, checksum=0xCCC, content=0xC),   # an older committed version
    "rot": meta(content=0xDEAD, bad=1),          # fails its own block CRCs
    "pend": meta(update=4, content=0xA),         # an update in flight
    "-": None,                                   # no such chunk here
}


def copies(*names):
    return [(target, STATES[name]) for target, name in zip(TARGETS, names)]


def chain(head, middle, tail):
    return [Replica(HEAD, head), Replica(MIDDLE, middle), Replica(TAIL, tail)]


def kinds(findings):
    return sorted((f.kind, f.inode, f.index, f.target_id) for f in findings)


# ---- the majority decision, as a table -----------------------------------------------

# copies head first -> the target whose copy wins, ABSENT (the chunk should not exist), or None (no winner).
DECISIONS = [
    (("A", "A", "A"), HEAD),
    (("A", "A", "B"), HEAD),
    (("B", "A", "A"), MIDDLE),            # the head is outvoted
    (("rot", "A", "A"), MIDDLE),          # a rotten head: the majority's copy
    (("A", "rot", "A"), HEAD),
    (("rot", "A", "B"), None),            # 1 vs 1 among the good ones, the head cannot vote: no winner
    (("rot", "rot", "A"), TAIL),          # the one good copy wins, head or not
    (("rot", "rot", "rot"), None),
    (("A", "B", "old"), None),            # three sides, the head's version is not higher than B's
    (("A", "old", "old"), MIDDLE),        # the majority wins even with the older version
    (("A", "old", "rot"), HEAD),          # a tie the head justifies: its version is higher
    (("old", "A", "rot"), None),          # the same tie with the higher version off the head
    (("A", "B", "rot"), None),            # equal versions, other bytes: unjustifiable
    (("A", "-", "-"), ABSENT),            # the majority has no such chunk
    (("-", "A", "A"), MIDDLE),            # the head lost it
    (("A", "-", "rot"), HEAD),            # 1 vs 1: a head holding it beats absence
    (("-", "A", "rot"), None),            # 1 vs 1: a head without it does not
    (("A", "pend", "A"), HEAD),           # pending copies do not vote
    (("pend", "A", "B"), None),
    (("A",), HEAD),
    (("rot",), None),
    (("A", "rot"), HEAD),
    (("rot", "A"), MIDDLE),
    (("A", "B"), None),
    (("A", "old"), HEAD),
    (("old", "A"), None),
]


@pytest.mark.parametrize("names, winner", DECISIONS, ids=["/".join(names) for names, _ in DECISIONS])
def test_the_majority_decision(names, winner):
    decision = decide(copies(*names))
    if winner is None:
        assert not decision.decided and decision.source_target_id == 0, decision
    elif winner == ABSENT:
        assert decision.decided and decision.good == ABSENT and decision.source_target_id == 0, decision
    else:
        assert decision.decided and decision.source_target_id == winner, decision
        assert decision.good == STATES[names[TARGETS.index(winner)]].content(decision.with_bytes)


def _votes(named):
    voters = {name for _, name in named if name not in ("rot", "pend")}
    return {name: sum(1 for _, n in named if n == name) for name in voters}, \
        sum(1 for _, n in named if n not in ("rot", "pend"))


@pytest.mark.parametrize("size", [1, 2, 3])
def test_every_combination_keeps_the_rules(size):
    for names in itertools.product(STATES, repeat=size):
        named = list(zip(TARGETS, names))
        if all(name == "-" for name in names):
            continue           # a chunk no replica holds is not a chunk fsck sees
        decision = decide(copies(*names))
        findings = judge_chunk(1, (5, 0), copies(*names))
        votes, voters = _votes(named)
        where = f"{names}: {decision}, {findings}"
        if decision.source_target_id:
            assert dict(named)[decision.source_target_id] not in ("rot", "pend", "-"), where
        majority = [name for name, count in votes.items() if 2 * count > voters]
        if majority:
            winner = majority[0]
            assert decision.decided and (decision.good == ABSENT) == (winner == "-"), where
            if winner != "-":
                assert dict(named)[decision.source_target_id] == winner, where
        elif decision.decided:
            head = names[0]
            assert head in votes and votes[head] == max(votes.values()), f"only the head wins a tie: {where}"
            head_version = 0 if head == "-" else STATES[head].commit_version
            assert all(head_version > (0 if other == "-" else STATES[other].commit_version)
                       for other in votes if other != head), f"the head justifies its tie: {where}"
        # Every bad replica is told what to do, and told to take the winner's copy.
        for target, name in named:
            about = [f for f in findings if f.target_id == target]
            if name == "pend":
                assert [f.kind for f in about] == [FindingKind.PENDING], where
            elif name == "rot":
                assert [f.kind for f in about] in ([FindingKind.ROTTEN], [FindingKind.EXTRA]), where
            if decision.decided and decision.good != ABSENT and name not in ("pend",):
                agrees = name != "rot" and name != "-" and STATES[name].content(decision.with_bytes) == decision.good
                assert bool(about) != agrees, f"target {target} ({name}): {where}"
                assert all(f.kind in REWRITE_KINDS and f.source_target_id == decision.source_target_id
                           for f in about), where
            if decision.decided and decision.good == ABSENT and name not in ("pend", "-"):
                assert [f.kind for f in about] == [FindingKind.EXTRA], where
        if not decision.decided and voters:
            assert [f.kind for f in findings if f.target_id == 0] == [FindingKind.NO_MAJORITY], where
        assert not any(f.kind in REWRITE_KINDS and not decision.decided and f.source_target_id for f in findings)
        assert not any(f.kind in DELETE_KINDS and decision.good != ABSENT for f in findings), where


def test_unverified_copies_compare_by_metadata_only():
    verified, unverified = meta(content=0xA), meta()
    assert decide([(HEAD, verified), (MIDDLE, unverified), (TAIL, verified)]).source_target_id == HEAD
    assert judge_chunk(1, (5, 0), [(HEAD, verified), (MIDDLE, unverified), (TAIL, verified)]) == [], \
        "a copy rewritten while it was read is not a divergence by itself"


# ---- findings, one difference at a time -----------------------------------------------

def test_identical_replicas_are_clean():
    metas = [meta(index=i) for i in range(4)]
    assert compare_chain(1, chain(metas, list(metas), list(metas))) == []


def test_each_difference_is_named():
    base = meta()
    assert kinds(compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)], [base]))) == [
        (FindingKind.DIVERGENT, 5, 0, MIDDLE)]
    assert kinds(compare_chain(1, chain([base], [base], [dataclasses.replace(base, length=99)]))) == [
        (FindingKind.DIVERGENT, 5, 0, TAIL)]
    assert kinds(compare_chain(1, chain([base], [dataclasses.replace(base, commit_version=2,
                                                                     update_version=2)], [base]))) == [
        (FindingKind.DIVERGENT, 5, 0, MIDDLE)]
    finding = compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)], [base]))[0]
    assert "checksum differ" in finding.detail and finding.source_target_id == HEAD


def test_rot_and_content_divergence_need_the_bytes():
    good = meta(content=0xA)
    rotten = meta(content=0xB, bad=2)
    twin = meta(content=0xB)               # same metadata, other bytes, each passing its own CRCs
    findings = compare_chain(1, chain([rotten], [good], [good]))
    assert kinds(findings) == [(FindingKind.ROTTEN, 5, 0, HEAD)] and findings[0].source_target_id == MIDDLE
    assert kinds(compare_chain(1, chain([good], [good], [twin]))) == [(FindingKind.CONTENT_DIVERGENT, 5, 0, TAIL)]
    unverified = meta()
    assert compare_chain(1, chain([unverified], [unverified], [unverified])) == [], \
        "metadata alone cannot see what the bytes hide"


def test_a_newer_chain_version_alone_is_no_divergence():
    base = meta()
    assert compare_chain(1, chain([base], [dataclasses.replace(base, chain_version=3)], [base])) == []


def test_missing_extra_pending_and_no_majority():
    a, b = meta(index=0), meta(index=1)
    assert kinds(compare_chain(1, chain([a, b], [a], [a, b]))) == [(FindingKind.MISSING, 5, 1, MIDDLE)]
    assert kinds(compare_chain(1, chain([a], [a, b], [a]))) == [(FindingKind.EXTRA, 5, 1, MIDDLE)]
    assert kinds(compare_chain(1, chain([a], [a, b], [a, b]))) == [(FindingKind.MISSING, 5, 1, HEAD)], \
        "a chunk the head lost is copied back, not deleted from the majority"
    mid_write = meta(index=0, update=4)
    assert kinds(compare_chain(1, chain([mid_write], [a], [a]))) == [(FindingKind.PENDING, 5, 0, HEAD)]
    assert kinds(compare_chain(1, chain([a], [mid_write], [a]))) == [(FindingKind.PENDING, 5, 0, MIDDLE)]
    other = dataclasses.replace(a, checksum=1)
    assert kinds(compare_chain(1, [Replica(HEAD, [a]), Replica(MIDDLE, [other])])) == [
        (FindingKind.NO_MAJORITY, 5, 0, 0)]


def test_single_replica_chains_and_empty_chains():
    assert compare_chain(1, [Replica(HEAD, [meta()])]) == []
    assert kinds(compare_chain(1, [Replica(HEAD, [meta(content=1, bad=1)])])) == [(FindingKind.ROTTEN, 5, 0, HEAD)]
    assert compare_chain(1, []) == []


def test_orphans_are_chunks_of_inodes_meta_does_not_know():
    replicas = chain([meta(inode=5), meta(inode=9)], [meta(inode=5), meta(inode=9)], [meta(inode=5)])
    assert inode_ids(replicas) == {5, 9}
    assert kinds(find_orphans(1, replicas, live_inodes={5})) == [(FindingKind.ORPHAN, 9, 0, HEAD),
                                                                 (FindingKind.ORPHAN, 9, 0, MIDDLE)]
    assert find_orphans(1, replicas, live_inodes={5, 9}) == []


def test_only_findings_seen_in_both_passes_count():
    base = meta()
    first = compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)], [base]))
    first += compare_chain(1, chain([base], [base], [dataclasses.replace(base, index=1, update_version=4)]))
    second = compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)], [base]))
    assert kinds(persistent(first, second)) == [(FindingKind.DIVERGENT, 5, 0, MIDDLE)]
    assert persistent(second, []) == []


def test_report_json():
    report = Report(chains_checked=2, replicas_checked=6, chunks_checked=12, bytes_verified=True,
                    findings=compare_chain(1, chain([meta()], [], [meta()])))
    out = report.to_json()
    assert out["clean"] is False and out["counts"]["missing"] == 1 and out["counts"]["divergent"] == 0
    assert out["findings"][0]["kind"] == "missing" and out["findings"][0]["target_id"] == MIDDLE
    assert out["findings"][0]["source_target_id"] == HEAD and out["bytes_verified"] is True
    assert Report().clean and Report().to_json()["findings"] == []
