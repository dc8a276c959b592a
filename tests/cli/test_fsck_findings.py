"""fsck's comparison logic: replicas' chunk metadata in, findings out.

Method: hand-built metadata lists for a chain of three replicas, one
difference at a time, and the finding (kind, chunk, target) each must yield;
then orphans, the two-pass filter and the JSON report.
"""

from __future__ import annotations

import dataclasses

from fireflyfs.cli.fsck_findings import (ChunkMeta, FindingKind, Replica, Report, compare_chain, find_orphans, inode_ids,
                                   persistent)

HEAD, MIDDLE, TAIL = 101, 202, 303


def meta(inode=5, index=0, length=100, version=3, update=None, chain_version=2, checksum=0xABC):
    return ChunkMeta(inode, index, length, version, version if update is None else update, chain_version,
                     checksum)


def chain(head, middle, tail):
    return [Replica(HEAD, head), Replica(MIDDLE, middle), Replica(TAIL, tail)]


def kinds(findings):
    return sorted((f.kind, f.inode, f.index, f.target_id) for f in findings)


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
    assert "checksum differ" in finding.detail and finding.head_target_id == HEAD


def test_a_newer_chain_version_alone_is_no_divergence():
    base = meta()
    assert compare_chain(1, chain([base], [dataclasses.replace(base, chain_version=3)], [base])) == []


def test_missing_extra_and_pending():
    a, b = meta(index=0), meta(index=1)
    assert kinds(compare_chain(1, chain([a, b], [a], [a, b]))) == [(FindingKind.MISSING, 5, 1, MIDDLE)]
    assert kinds(compare_chain(1, chain([a], [a, b], [a]))) == [(FindingKind.EXTRA, 5, 1, MIDDLE)]
    mid_write = meta(index=0, update=4)
    assert kinds(compare_chain(1, chain([mid_write], [a], [a]))) == [(FindingKind.PENDING, 5, 0, HEAD)], \
        "a pending head chunk is reported once and not compared"
    assert kinds(compare_chain(1, chain([a], [mid_write], [a]))) == [(FindingKind.PENDING, 5, 0, MIDDLE)]


def test_single_replica_chains_and_empty_chains():
    assert compare_chain(1, [Replica(HEAD, [meta()])]) == []
    assert compare_chain(1, []) == []


def test_orphans_are_chunks_of_inodes_meta_does_not_know():
    replicas = chain([meta(inode=5), meta(inode=9)], [meta(inode=5), meta(inode=9)], [meta(inode=5)])
    assert inode_ids(replicas) == {5, 9}
    assert kinds(find_orphans(1, replicas, live_inodes={5})) == [(FindingKind.ORPHAN, 9, 0, HEAD),
                                                                 (FindingKind.ORPHAN, 9, 0, MIDDLE)]
    assert find_orphans(1, replicas, live_inodes={5, 9}) == []


def test_only_findings_seen_in_both_passes_count():
    base = meta()
    first = compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)],
                                   [dataclasses.replace(base, update_version=4)]))
    second = compare_chain(1, chain([base], [dataclasses.replace(base, checksum=1)], [base]))
    assert kinds(persistent(first, second)) == [(FindingKind.DIVERGENT, 5, 0, MIDDLE)]
    assert persistent(second, []) == []


def test_report_json():
    report = Report(chains_checked=2, replicas_checked=6, chunks_checked=12,
                    findings=compare_chain(1, chain([meta()], [], [meta()])))
    out = report.to_json()
    assert out["clean"] is False and out["counts"]["missing"] == 1 and out["counts"]["divergent"] == 0
    assert out["findings"][0]["kind"] == "missing" and out["findings"][0]["target_id"] == MIDDLE
    assert Report().clean and Report().to_json()["findings"] == []
