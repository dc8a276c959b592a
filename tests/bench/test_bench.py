"""``ffs bench`` and its logic (bench/ffs_bench.py) with tiny sizes.

Method: run the command through click's CliRunner against the session cluster
with ``--json`` (every group, small files and sizes, short time budgets) and
check the JSON: every FireflyFS figure names a measured limit and a ratio, the
issue's targets are attached, and stderr stays empty (no progress when not on
a terminal). Then ``run()`` with no URL starts its own cluster, measures, and
leaves no process behind. Never asserts speed: the figures only must exist.
"""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from fireflyfs.bench import ffs_bench
from fireflyfs.cli.main import cli

TINY = ["--seq-size", "8MiB", "--block", "1MiB", "--small-files", "20", "--seconds", "0.3",
        "--threads", "4"]


def test_bench_json_against_a_cluster(cluster):
    result = CliRunner().invoke(cli, ["--json", "bench", "--url", cluster.url, *TINY],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""                     # no progress display off a terminal
    report = json.loads(result.stdout)
    limits = {f["name"]: f for f in report["limits"]}
    figures = {f["name"]: f for f in report["figures"]}
    for name in ("tcp_loopback_stream", "tcp_loopback_stream_fresh_buffer", "disk_write",
                 "disk_read_readinto", "disk_pread_4KiB_x256", "grpc_echo_64B", "local_stat"):
        assert limits[name]["value"] > 0, name
    for name in ("seq_write", "seq_read_readinto", "seq_read_whole", "read_batch_4KiB_x256",
                 "cat_ranges_4KiB_x256", "read_batch_1MiB_x16", "pipe_file", "touch", "info",
                 "cat_file", "info_4threads", "ls_entries", "rm_file"):
        figure = figures[name]
        assert figure["value"] > 0 and figure["limit"] in limits, name
        assert figure["ratio"] == figure["value"] / limits[figure["limit"]]["value"]
        assert figure["p50_ms"] is not None and figure["p99_ms"] >= figure["p50_ms"]
    assert figures["seq_read_readinto"]["limit"] == "tcp_loopback_stream"
    assert figures["seq_read_whole"]["limit"] == "tcp_loopback_stream_fresh_buffer"
    assert figures["read_batch_4KiB_x256"]["target"] == ">= 50,000 ops/s"
    assert figures["info"]["target"] == ">= 2,000 ops/s"
    assert figures["info_4threads"]["target"] == ">= 4,000 ops/s"
    assert figures["seq_write"]["bytes"] == 8 * 1024 * 1024
    assert report["config"]["url"] == cluster.url
    # The run cleaned its directory up on the shared cluster.
    import fsspec

    fs, _ = fsspec.url_to_fs(cluster.url)
    assert not [p for p in fs.ls("/", detail=False) if p.startswith("/ffs-bench-")]


def test_bench_table_and_usage_errors(cluster):
    result = CliRunner().invoke(cli, ["bench", "--url", cluster.url, "--only", "small", *TINY],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "info" in result.stdout and "grpc_echo_64B" in result.stdout and "ratio" in result.stdout
    assert CliRunner().invoke(cli, ["bench", "--only", "nonsense"]).exit_code == 2
    assert CliRunner().invoke(cli, ["bench", "--seq-size", "lots"]).exit_code == 2


def test_run_starts_and_stops_its_own_cluster(tmp_path):
    config = ffs_bench.BenchConfig(groups=("small",), small_files=10, seconds_max=0.2, threads=2,
                                   tmp_dir=str(tmp_path))
    phases: list[str] = []

    class Recorder(ffs_bench.Reporter):
        def phase(self, name, total=None):
            phases.append(name)

    report = ffs_bench.run(config, Recorder())
    assert report.url.startswith("ffs://127.0.0.1:") and report.environment["local_cluster"]
    assert report.get("pipe_file").value > 0 and report.get("local_create_write").value > 0
    assert "starting a local cluster" in phases and "ffs: info" in phases
    assert os.listdir(tmp_path) == []              # cluster stopped, its directory removed


def test_helpers():
    pattern = ffs_bench.pattern_bytes(16, seed=3)
    assert pattern == ffs_bench.pattern_bytes(16, seed=3) and len(pattern) == 16
    assert ffs_bench.expected_at(pattern, 14, 5) == pattern[14:] + pattern[:3]
    measurement = ffs_bench.Measurement(ops=4, seconds=2.0, bytes=4 << 20, latencies_s=[0.001, 0.002, 0.003])
    assert measurement.ops_per_s == 2 and measurement.mib_per_s == 2
    assert measurement.percentile_ms(0.5) == 2.0 and measurement.percentile_ms(0.99) == 3.0
    full = ffs_bench.BenchConfig.full()
    assert full.seq_bytes == 1 << 30 and full.repeats == 2
