"""The durability benches (bench/meta_commit_rate.py, bench/durable_write_throughput.py) with tiny sizes.

Method: run each main() with --json and check every mode's figure exists and is
positive. Never asserts
speed: which mode is faster depends on the disk and the machine's load.
"""

from __future__ import annotations

import json

import pytest

from fireflyfs.bench import durable_write_throughput, meta_commit_rate


def test_meta_commit_rate_measures_every_mode(capsys):
    meta_commit_rate.main(["--commits", "32", "--writers", "1,4", "--json"])
    rates = json.loads(capsys.readouterr().out)["commits_per_s"]
    assert set(rates) == {f"{mode}_{writers}w" for mode in meta_commit_rate.MODES for writers in (1, 4)}
    assert all(rate > 0 for rate in rates.values()), rates


def test_durable_write_throughput_measures_both_clusters(capsys):
    code = durable_write_throughput.main(["--size", "4MiB", "--writers", "2", "--small-files", "8",
                                          "--small-threads", "2", "--repeats", "1", "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)["figures"]
    assert set(figures) == {f"{mode}_{kind}" for mode in ("fsync", "no_fsync")
                            for kind in ("large_2w_mib_s", "small_2t_files_s")}
    assert all(value > 0 for value in figures.values()), figures


def test_seq_throughput_sets_the_write_next_to_a_durable_local_write(capsys, tmp_path, monkeypatch):
    """The first-write baseline is the same bytes written locally with an fdatasync per call, so the
    durable write's ratio compares like with like; the local file is gone afterwards."""
    from fireflyfs.bench import seq_throughput

    monkeypatch.setattr(seq_throughput.tempfile, "tempdir", str(tmp_path))
    code = seq_throughput.main(["--size", "8MiB", "--repeats", "1", "--storage-nodes", "1",
                                "--targets-per-node", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["local_write_mib_s"] > 0 and result["write_ratio_to_local_disk"] > 0, result
    assert result["write_ratio_to_local_disk"] == pytest.approx(result["local_write_s"] / result["write_s"],
                                                                rel=0.02, abs=0.002)
    assert not list(tmp_path.glob("**/local-write-*.bin")), "the baseline's file was removed"


def test_meta_ops_measures_every_phase_on_both_engines(capsys):
    from fireflyfs.bench import meta_ops

    meta_ops.main(["--setups", "lmdb,etcd", "--threads", "2", "--files", "40", "--json"])
    report = json.loads(capsys.readouterr().out)
    for setup in ("lmdb", "etcd"):
        rates = report["setups"][setup]["2"]
        assert set(rates) == set(meta_ops.PHASES) and all(rate > 0 for rate in rates.values())
    assert set(report["ratio_to_lmdb"]["etcd"]["2"]) == set(meta_ops.PHASES)
