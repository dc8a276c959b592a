"""``ffs bench fabric``: the summary arithmetic, the skip without root, and a tiny real run (root only).

Method: percentiles, windowed goodput and the summary are pure functions fed
known numbers. Without the testbed (``netns.available`` says why) the command
must say it skipped, clearly, and still print one JSON object. With root, one
trial of every configuration on short windows must print the documented
shape with numbers for every configuration, and leave no namespace, link or
process of its testbed behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fireflyfs.bench import fabric_bench
from fireflyfs.bench.fabric_bench import CONFIGS, FabricBenchConfig, summarize
from fireflyfs.cli.main import cli
from fireflyfs.deploy import netns


def test_percentile_and_windowed_goodput():
    assert fabric_bench._percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert fabric_bench._percentile(list(range(101)), 99) == 99.0
    samples = [(0.0, 0), (1.0, 1024 * 1024), (2.0, 3 * 1024 * 1024), (3.0, 3 * 1024 * 1024)]
    assert fabric_bench._goodput_mibps(samples, 1.0, 2.0) == pytest.approx(2.0)
    assert fabric_bench._goodput_mibps(samples, 0.5, 1.5) == pytest.approx(1.5)
    assert fabric_bench._goodput_mibps(samples, 2.0, 3.0) == 0.0


def test_summary_takes_medians_spreads_and_judges_the_targets():
    def trial(p99, mibps=0.0, p50=None, **extra):
        return {"p50_ms": p50 or p99 / 2, "p99_ms": p99, "max_ms": p99 + 1, "storage_MiBps": mibps, **extra}

    trials = {
        "idle": [trial(10), trial(12), trial(11)],
        "shared_queue": [trial(80, 9), trial(70, 10), trial(90, 11)],
        "classes": [trial(11, 8, storage_share_MiBps=9.5, storage_share_fraction=0.95),
                    trial(13, 8, storage_share_MiBps=9.5, storage_share_fraction=0.95),
                    trial(12, 8, p50=6.2, storage_share_MiBps=9.5, storage_share_fraction=0.95)],
    }
    result = summarize(FabricBenchConfig(trials=3), trials)
    assert result["configs"]["idle"]["p99_ms"] == 11
    assert result["configs"]["shared_queue"]["spread"]["p99_ms"] == [70, 90]
    assert result["configs"]["shared_queue"]["storage_MiBps"] == 10
    assert len(result["configs"]["classes"]["trials"]) == 3
    # ratios pair each trial with the idle run of the same trial: 80/10, 70/12, 90/11
    shared = result["vs_idle"]["shared_queue"]["p99_ms"]
    assert shared["trials"] == [8.0, 5.833, 8.182] and shared["median"] == 8.0
    assert shared["ci95"][0] <= shared["median"] <= shared["ci95"][1]
    assert 5.8 <= shared["ci95"][0] and shared["ci95"][1] <= 8.2
    assert result["p99_vs_idle"]["shared_queue"] == 8.0
    assert result["vs_idle"]["classes"]["p99_ms"]["trials"] == [1.1, 1.083, 1.091]
    assert result["idle_p99_spread"] == {"min": 10, "max": 12, "median": 11, "relative": 0.182}
    assert result["targets"] == {"classes_p99_within_1.2x_idle": True,
                                 "classes_p50_within_1.1x_idle": True,
                                 "shared_queue_p99_several_times_idle": True,
                                 "classes_storage_at_least_90pct_of_share": True}
    trials["classes"][1] = trial(14, 8, p50=9, storage_share_MiBps=9.5, storage_share_fraction=0.8)
    trials["classes"][0] = trial(14, 8, p50=9, storage_share_MiBps=9.5, storage_share_fraction=0.8)
    judged = summarize(FabricBenchConfig(trials=3), trials)["targets"]
    assert judged["classes_p99_within_1.2x_idle"] and not judged["classes_p50_within_1.1x_idle"]
    assert not judged["classes_storage_at_least_90pct_of_share"]
    with pytest.raises(ValueError):
        FabricBenchConfig(configs=("idle", "nope")).check()


def test_without_a_testbed_the_command_says_it_skipped(monkeypatch):
    from fireflyfs.deploy import netns as netns_module

    monkeypatch.setattr(netns_module, "available", lambda: "needs root")
    result = CliRunner().invoke(cli, ["bench", "fabric", "--json", "--trials", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped: ffs bench fabric needs the namespace testbed: needs root" in result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert payload == {"skipped": "ffs bench fabric needs the namespace testbed: needs root", "configs": {}}


def _links_in_root() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in netns.run(["ip", "-o", "link", "show"]).stdout.splitlines()}


@pytest.mark.skipif(netns.available() is not None, reason=f"needs the namespace testbed: {netns.available()}")
def test_a_tiny_run_reports_every_configuration_and_cleans_up():
    namespaces_before = set(netns.list_namespaces("ffstb-fb"))   # other runs may hold other testbeds
    links_before = _links_in_root()
    result = subprocess.run([sys.executable, "-m", "fireflyfs.cli.main", "bench", "fabric", "--json",
                             "--trials", "1", "--seconds", "0.5", "--iterations-min", "3"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["configs"]) == set(CONFIGS)
    for name, entry in report["configs"].items():
        assert entry["p50_ms"] > 0 and entry["p99_ms"] >= entry["p50_ms"], name
        assert len(entry["trials"]) == 1 and entry["trials"][0]["iterations"] >= 3, name   # the floor asked for
        if name == "idle":
            assert entry["storage_MiBps"] == 0
        else:
            assert entry["storage_MiBps"] > 0, name
            assert entry["trials"][0]["storage_errors"] == 0, name
    assert report["configs"]["rts"]["trials"][0]["rts"]["peak"] <= report["settings"]["rts_permits"]
    assert report["configs"]["classes"]["trials"][0]["bottleneck"]["hfreduce"]["bytes"] > 0
    assert report["testbed_removed"]["namespaces"]
    assert set(netns.list_namespaces("ffstb-fb")) == namespaces_before      # ffs testbed down's guarantee
    assert _links_in_root() == links_before
