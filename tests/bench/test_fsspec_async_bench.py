"""bench/fsspec_async.py with tiny sizes: every engine runs every workload it has, on one cluster.

Method: run main() with --json and check each row exists, is positive and that
the ratios are against the threaded path. Never asserts speed: which engine is
faster depends on the machine and its load (the measured figures are in the
README's asyncio section).
"""

from __future__ import annotations

import json

from fireflyfs.bench import fsspec_async


def test_every_engine_runs_every_workload_it_has_and_returns_the_right_bytes(capsys):
    code = fsspec_async.main(["--small-files", "40", "--medium-files", "8", "--large-files", "2",
                              "--large-mib", "5", "--concurrency", "8", "--repeats", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    assert set(results) == set(fsspec_async.WORKLOADS)
    for workload, rows in results.items():
        engines = set(fsspec_async.ENGINES) if workload in fsspec_async.NATIVE_WORKLOADS else {
            engine for engine in fsspec_async.ENGINES if not engine.startswith("native")}
        assert set(rows) == engines, workload
        assert all(row["calls_s"] > 0 and row["cpu_us_per_call"] > 0 for row in rows.values()), rows
        assert report["ratio_to_threads"][workload]["threads"] == 1.0
    assert results["cat_large"]["threads"]["mib_s"] > 0
