"""bench/sort_job.py (``ffs bench sort``): the record helpers, the judge of the output, and the
whole job in small on local disk and a real local cluster."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from fireflyfs.bench import sort_job
from fireflyfs.cli.main import cli


def records_with_keys(keys: list[bytes]) -> np.ndarray:
    rows = np.zeros((len(keys), sort_job.RECORD_BYTES), np.uint8)
    for number, key in enumerate(keys):
        rows[number, :sort_job.KEY_BYTES] = np.frombuffer(key, np.uint8)
        rows[number, sort_job.KEY_BYTES:] = number % 251
    return rows


def test_sort_orders_all_ten_key_bytes_and_the_order_check_sees_the_last_one():
    # Equal first 8 bytes: only bytes 9 and 10 decide.
    keys = [b"\x01" * 8 + bytes([9, 1]), b"\x01" * 8 + bytes([0, 200]), b"\x00" * 10, b"\x01" * 8 + bytes([9, 0])]
    ordered = sort_job.sort_records(records_with_keys(keys))
    assert [row[:10].tobytes() for row in ordered] == sorted(keys)
    assert sort_job.keys_in_order(ordered)
    swapped = ordered[[0, 1, 3, 2]]
    assert not sort_job.keys_in_order(swapped)


def test_checksum_ignores_order_but_sees_a_changed_or_duplicated_record():
    rows = sort_job.records_view(np.random.default_rng(3).bytes(500 * sort_job.RECORD_BYTES))
    total = sort_job.checksum(rows)
    assert sort_job.checksum(rows[::-1]) == total
    changed = rows.copy()
    changed[17, 60] ^= 1
    assert sort_job.checksum(changed) != total
    duplicated = rows.copy()
    duplicated[5] = duplicated[6]
    assert sort_job.checksum(duplicated) != total


def test_the_judge_names_each_kind_of_bad_output():
    good = [(2, 5, True, b"a", b"b"), (1, 7, True, b"c", b"c")]
    assert sort_job.judge(["p0", "p1"], good, 3, 12) == (2, [])
    valid, problems = sort_job.judge(["p0", "p1"], [good[0], (1, 7, False, b"c", b"c")], 3, 12)
    assert valid == 1 and problems == ["p1: keys out of order"]
    valid, problems = sort_job.judge(["p0", "p1"], [good[0], (1, 7, True, b"a", b"a")], 3, 12)
    assert valid == 1 and "below the previous partition" in problems[0]
    assert sort_job.judge(["p0", "p1"], good, 4, 12)[1] == ["3 records out, 4 in"]
    assert "checksum" in sort_job.judge(["p0", "p1"], good, 3, 13)[1][0]


def test_ffs_bench_sort_runs_on_local_disk_and_a_local_cluster():
    result = CliRunner().invoke(cli, ["bench", "sort", "--size", "3MiB", "--workers", "2", "--partitions", "5",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["valid"] and set(report["stores"]) == {"local", "fireflyfs"}
    for entry in report["stores"].values():
        assert entry["records"] == (3 << 20) // 100 and entry["partitions_valid"] == entry["partitions"] == 5
        assert entry["sort_gib_per_min"] > 0 and not entry["problems"]
    assert report["fireflyfs_over_local"] > 0
