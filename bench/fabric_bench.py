"""``ffs bench fabric``: does the shared network keep HFReduce fast under storage load?

Fire-Flyer 2 claims ([FF] §VI-A, §VI-B3) that traffic classes and 3FS's
request-to-send keep one fabric congestion-free for training and storage, but
gives no before/after numbers. This measures it on the namespace testbed
(deploy/testbed.py): HFReduce ranks on the client host ``c`` and a peer ``p1``,
storage nodes on ``s1``/``s2``, and the router's link toward ``c`` shaped to
``rate_mbit`` (the leaf port where storage incast meets allreduce traffic).

Configurations, each measured in every trial, in one run:

    idle          HFReduce alone (shared queue, no storage load)
    shared_queue  + storage reads on c; one FIFO for everything (no classes)
    classes       + storage reads on c; HTB class per traffic class (DSCP)
    rts           shared FIFO, reads with request-to-send (K permits)
    classes_rts   both
    cpu_control   the same storage load read on p1 (a path that does not cross
                  the bottleneck), paced to the bottleneck rate so it costs the
                  same CPU; HFReduce still crosses the bottleneck. Anything it
                  adds over idle is CPU contention on this 2-core machine, not
                  the network.

Per configuration: HFReduce iteration latency p50/p99/max (each trial), and the
storage goodput over exactly the HFReduce window (the reader samples its byte
count on the machine-wide monotonic clock). Reported values are medians over
trials with the per-trial values and the spread. In ``classes`` the storage
share is the bottleneck minus what HFReduce used in the same window (from the
HTB class counters), so "goodput >= 80% of its share" can be judged.

Why these sizes: 100 Mbit/s is slow enough that 16 Python reader threads
saturate it on 2 shared cores; 64 KiB allreduces (about 5 ms on the wire) with
a 20 ms gap use ~20 Mbit/s, less than HFReduce's class guarantee (40%), like
gradients in a step that also computes; the 1 MB FIFO holds 80 ms of traffic,
so a full shared queue shows plainly; 256 KiB reads with K=1 bound the queue
request-to-send leaves at ~21 ms. TCP congestion control is the machine's
default (bbr here: a namespace may not pick cubic, which is not in
tcp_allowed_congestion_control); the shared FIFO still fills and drops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

log = logging.getLogger(__name__)

CONFIGS = ("idle", "shared_queue", "classes", "rts", "classes_rts", "cpu_control")
PROCS = [sys.executable, "-m", "fireflyfs.bench.fabric_procs"]


class Skipped(Exception):
    """The benchmark cannot run here (no root, no ip/tc); the message says why."""


@dataclasses.dataclass
class FabricBenchConfig:
    trials: int = 5
    rate_mbit: float = 100.0
    buffer_bytes: int = 1_000_000
    weights: str = ""                      # HTB shares in "classes"; "" = deploy/testbed_shaping's defaults
    hfreduce_count: int = 16384           # float32 elements per allreduce (64 KiB)
    hfreduce_seconds: float = 8.0          # the measured window per configuration and trial (~300 allreduces)
    hfreduce_iterations_min: int = 20      # measured allreduces per trial at least, however slow they are
    hfreduce_gap_ms: float = 20.0          # "compute" between allreduces
    reader_threads: int = 16
    read_bytes: int = 256 * 1024
    rts_permits: int = 1
    files: int = 8
    file_mib: int = 8
    warmup_s: float = 1.0
    name: str = ""
    configs: tuple[str, ...] = CONFIGS

    def check(self) -> None:
        if (self.trials < 1 or self.hfreduce_seconds <= 0 or self.rate_mbit <= 0
                or self.hfreduce_iterations_min < 1):
            raise ValueError("trials, window, rate and minimum iterations must be positive")
        unknown = set(self.configs) - set(CONFIGS)
        if unknown:
            raise ValueError(f"unknown configurations {sorted(unknown)}; known: {', '.join(CONFIGS)}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _goodput_mibps(samples: list, start: float, end: float) -> float:
    """Bytes read between start and end (interpolated from the reader's samples), in MiB/s."""
    def at(moment: float) -> float:
        previous = samples[0]
        for sample in samples:
            if sample[0] >= moment:
                span = sample[0] - previous[0]
                if span <= 0:
                    return sample[1]
                return previous[1] + (sample[1] - previous[1]) * (moment - previous[0]) / span
            previous = sample
        return samples[-1][1]
    if end <= start:
        return 0.0
    return (at(end) - at(start)) / (end - start) / (1024 * 1024)


class FabricBench:
    def __init__(self, config: FabricBenchConfig, reporter=None) -> None:
        self.config = config
        self.reporter = reporter
        self.bed = None
        self._port = 29650

    def _phase(self, text: str) -> None:
        log.info("%s", text)
        if self.reporter is not None:
            self.reporter(text)

    # ------------------------------------------------------------------ setup

    def up(self, base_dir: str) -> None:
        from fireflyfs.deploy import netns
        from fireflyfs.deploy.testbed import Testbed, TestbedSpec

        reason = netns.available()
        if reason:
            raise Skipped(f"ffs bench fabric needs the namespace testbed: {reason}")
        name = self.config.name or f"fb{os.getpid() % 10000}"
        self.bed = Testbed(TestbedSpec(name=name, storage_hosts=2, peer_hosts=1), base_dir)
        self._phase("testbed up")
        self.bed.up(services=True)
        self._phase("writing the files storage load reads")
        self.bed.run("c", [*PROCS, "prepare", "--url", self.bed.url, "--files", str(self.config.files),
                           "--file-mib", str(self.config.file_mib)], timeout_s=180)

    def down(self) -> dict:
        return self.bed.down() if self.bed is not None else {}

    def _shape(self, mode: str) -> None:
        from fireflyfs.deploy.testbed_shaping import ShapingSpec, parse_weights

        self.bed.apply_shaping(ShapingSpec(rate_mbit=self.config.rate_mbit, mode=mode,
                                           buffer_bytes=self.config.buffer_bytes,
                                           weights=parse_weights(self.config.weights)))

    # ------------------------------------------------------------------ one measurement

    def _start_load(self, host: str, env: dict) -> subprocess.Popen:
        config = self.config
        proc = self.bed.spawn(host, ["env", *[f"{k}={v}" for k, v in env.items()], *PROCS, "load",
                                     "--url", self.bed.url, "--files", str(config.files),
                                     "--file-mib", str(config.file_mib), "--threads", str(config.reader_threads),
                                     "--read-bytes", str(config.read_bytes)],
                              label=f"load-{host}", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "started":
            proc.kill()
            raise RuntimeError(f"storage load on {host} did not start: {line!r}")
        return proc

    def _hfreduce(self) -> dict:
        config = self.config
        self._port += 1
        master = f"{self.bed.address('c')}:{self._port}"
        ranks = [self.bed.spawn(host, [*PROCS, "rank", "--rank", str(rank), "--world-size", "2",
                                       "--master", master, "--count", str(config.hfreduce_count),
                                       "--seconds", str(config.hfreduce_seconds),
                                       "--iterations-min", str(config.hfreduce_iterations_min),
                                       "--gap-ms", str(config.hfreduce_gap_ms)],
                                label=f"rank-{rank}", stdout=subprocess.PIPE, text=True)
                 for rank, host in enumerate(["c", "p1"])]
        outputs = []
        for rank in ranks:
            out, _ = rank.communicate(timeout=config.hfreduce_seconds * 10 + 60)
            if rank.returncode != 0:
                raise RuntimeError(f"HFReduce rank exited {rank.returncode}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        return outputs[0]

    def measure(self, name: str) -> dict:
        """One trial of one configuration."""
        config = self.config
        mode = "classes" if name in ("classes", "classes_rts") else "shared"
        self._shape(mode)
        env = {}
        if name in ("rts", "classes_rts"):
            env.update(FFS_CLIENT_RTS_ENABLED="1", FFS_CLIENT_RTS_MAX_CONCURRENT=str(config.rts_permits))
        if name == "cpu_control":
            env["FFS_PACE_STORAGE_MBIT"] = str(config.rate_mbit)
        load = None
        if name != "idle":
            load = self._start_load("p1" if name == "cpu_control" else "c", env)
            time.sleep(config.warmup_s)
        before = self.bed.class_counters()
        try:
            result = self._hfreduce()
        finally:
            after = self.bed.class_counters()
            report = {}
            if load is not None:
                out, _ = load.communicate(input="", timeout=60)
                report = json.loads(out.strip().splitlines()[-1])
        latencies = result["latencies_ms"]
        window = result["end"] - result["start"]
        counters = {cls: {key: after[cls][key] - before.get(cls, {}).get(key, 0) for key in after[cls]}
                    for cls in after}
        trial = {
            "p50_ms": round(_percentile(latencies, 50), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "max_ms": round(max(latencies), 2),
            "iterations": len(latencies),
            "window_s": round(window, 2),
            "storage_MiBps": round(_goodput_mibps(report["samples"], result["start"], result["end"]), 2)
            if report else 0.0,
            "storage_errors": report.get("errors", 0),
            "bottleneck": counters,
        }
        if report.get("rts"):
            trial["rts"] = report["rts"]
        if mode == "classes" and "hfreduce" in counters and window > 0:
            hfreduce_mbit = counters["hfreduce"]["bytes"] * 8 / window / 1e6
            share = max(config.rate_mbit - hfreduce_mbit, 1e-6) * 1e6 / 8 / (1024 * 1024)
            trial["storage_share_MiBps"] = round(share, 2)
            trial["storage_share_fraction"] = round(trial["storage_MiBps"] / share, 3) if load else None
        return trial

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        config = self.config
        trials: dict[str, list[dict]] = {name: [] for name in config.configs}
        for number in range(config.trials):
            for name in config.configs:
                self._phase(f"trial {number + 1}/{config.trials}: {name}")
                trials[name].append(self.measure(name))
        return summarize(config, trials)


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def ratio_interval(ratios: list[float], resamples: int = 2000, seed: int = 0x5EED) -> dict:
    """Median of per-trial ratios and a percentile-bootstrap 95% interval of that median.

    Each trial's loaded figure is divided by the idle figure of the same trial (measured
    minutes apart, under the same background load), so a noisy idle trial does not move
    every ratio at once. Seeded: the same trials give the same interval.
    """
    import random

    ratios = [r for r in ratios if r is not None]
    if not ratios:
        return {"median": None, "ci95": [None, None], "trials": []}
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return {"median": round(statistics.median(ratios), 3),
            "ci95": [round(medians[int(0.025 * resamples)], 3), round(medians[int(0.975 * resamples) - 1], 3)],
            "trials": [round(r, 3) for r in ratios]}


def summarize(config: FabricBenchConfig, trials: dict[str, list[dict]]) -> dict:
    configs = {}
    for name, runs in trials.items():
        entry = {key: _median([run[key] for run in runs]) for key in ("p50_ms", "p99_ms", "max_ms", "storage_MiBps")}
        entry["spread"] = {key: [min(run[key] for run in runs), max(run[key] for run in runs)]
                           for key in ("p50_ms", "p99_ms", "storage_MiBps")}
        if any("storage_share_fraction" in run for run in runs):
            entry["storage_share_MiBps"] = _median([run.get("storage_share_MiBps") for run in runs])
            entry["storage_share_fraction"] = _median([run.get("storage_share_fraction") for run in runs])
        entry["trials"] = runs
        configs[name] = entry
    result = {"configs": configs, "settings": dataclasses.asdict(config)}
    idle_runs = trials.get("idle")
    if not idle_runs:
        return result
    idle_p99 = [run["p99_ms"] for run in idle_runs]
    result["idle_p99_spread"] = {"min": min(idle_p99), "max": max(idle_p99), "median": _median(idle_p99),
                                 "relative": round((max(idle_p99) - min(idle_p99)) / statistics.median(idle_p99), 3)
                                 if statistics.median(idle_p99) else None}
    ratios = {}
    for name, runs in trials.items():
        ratios[name] = {key: ratio_interval([run[key] / idle[key] if idle[key] else None
                                             for run, idle in zip(runs, idle_runs)])
                        for key in ("p50_ms", "p99_ms")}
    result["vs_idle"] = ratios
    result["p99_vs_idle"] = {name: ratios[name]["p99_ms"]["median"] for name in ratios}
    targets = {}
    if "classes" in ratios:
        targets["classes_p99_within_1.2x_idle"] = ratios["classes"]["p99_ms"]["median"] <= 1.2
        targets["classes_p50_within_1.1x_idle"] = ratios["classes"]["p50_ms"]["median"] <= 1.1
    if "shared_queue" in ratios:
        targets["shared_queue_p99_several_times_idle"] = ratios["shared_queue"]["p99_ms"]["median"] >= 3
    fraction = configs.get("classes", {}).get("storage_share_fraction")
    if fraction is not None:
        targets["classes_storage_at_least_90pct_of_share"] = fraction >= 0.9
    result["targets"] = targets
    return result


def run(config: FabricBenchConfig, reporter=None, base_dir: str | None = None) -> dict:
    """Build the testbed, measure every configuration, and always take the testbed down."""
    config.check()
    if not config.weights:
        from fireflyfs.deploy.testbed_shaping import WEIGHTS_DEFAULT, format_weights

        config.weights = format_weights(WEIGHTS_DEFAULT)      # the report names the shares it used
    bench = FabricBench(config, reporter)
    with tempfile.TemporaryDirectory(prefix="ffs-bench-fabric-") as tmp:
        try:
            bench.up(base_dir or tmp)
            result = bench.run()
        finally:
            removed = bench.down()
    result["testbed_removed"] = removed
    return result
