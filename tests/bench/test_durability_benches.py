"""The durability benches (bench/meta_commit_rate.py, bench/durable_write_throughput.py) with tiny sizes.

Method: run each main() with --json and check every mode's figure exists and is
positive. Never asserts
speed: which mode is faster depends on the disk and the machine's load.
"""

from __future__ import annotations

import json

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
