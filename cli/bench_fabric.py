"""``ffs bench fabric``: HFReduce latency under storage load on the shaped testbed (bench/fabric_bench.py).

Needs root (network namespaces, tc); elsewhere it says so and exits 0 with
``{"skipped": ...}`` under --json.
"""

from __future__ import annotations

import sys

import click

from ._output import emit_json, json_mode, json_option, print_table


@click.command("fabric")
@click.option("--trials", type=click.IntRange(1), default=5, show_default=True,
              help="Rounds over all configurations; ratios to idle get a 95% interval over them.")
@click.option("--rate-mbit", type=click.FloatRange(1), default=100.0, show_default=True,
              help="Bottleneck rate toward the client host.")
@click.option("--seconds", type=click.FloatRange(0.2), default=8.0, show_default=True,
              help="HFReduce window per configuration and trial.")
@click.option("--iterations-min", type=click.IntRange(1), default=20, show_default=True,
              help="Measured allreduces per configuration and trial at least, however long that takes.")
@click.option("--rts-permits", type=click.IntRange(1), default=1, show_default=True,
              help="K of request-to-send in the rts configurations.")
@click.option("--weights", default="",
              help="HTB guaranteed shares in the classes configurations, e.g. hfreduce=0.4,storage=0.4 "
                   "[default: hfreduce=0.94, the others 0.02 each; every class borrows up to the link]")
@click.option("--only", default=None, help="Comma-separated configurations (default: all six).")
@json_option
def fabric(trials, rate_mbit, seconds, iterations_min, rts_permits, weights, only) -> None:
    """HFReduce p50/p99 idle, under storage load with a shared queue, classes, RTS, both; CPU control."""
    from fireflyfs.bench.fabric_bench import FabricBenchConfig, Skipped, run

    config = FabricBenchConfig(trials=trials, rate_mbit=rate_mbit, hfreduce_seconds=seconds,
                               hfreduce_iterations_min=iterations_min,
                               rts_permits=rts_permits, weights=weights)
    if only:
        config.configs = tuple(part.strip() for part in only.split(",") if part.strip())
    try:
        config.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    quiet = json_mode() or not sys.stderr.isatty()
    try:
        report = run(config, None if quiet else lambda text: click.echo(text, err=True))
    except Skipped as exc:
        click.echo(f"skipped: {exc}", err=True)
        if json_mode():
            emit_json({"skipped": str(exc), "configs": {}})
        return
    if json_mode():
        emit_json(report)
        return
    ratios = report.get("vs_idle", {})

    def ratio(name: str, key: str) -> str:
        value = ratios.get(name, {}).get(key)
        if not value or value["median"] is None:
            return ""
        low, high = value["ci95"]
        return f"{value['median']:.2f} [{low:.2f}-{high:.2f}]"

    rows = [(name, entry["p50_ms"], entry["p99_ms"], f"{entry['spread']['p99_ms'][0]}-{entry['spread']['p99_ms'][1]}",
             ratio(name, "p50_ms"), ratio(name, "p99_ms"), entry["storage_MiBps"])
            for name, entry in report["configs"].items()]
    print_table(f"HFReduce on a {rate_mbit:g} Mbit/s bottleneck, median of {trials} trials",
                ["config", "p50 ms", "p99 ms", "p99 range", "p50/idle [95%]", "p99/idle [95%]", "MiB/s"], rows)
    spread = report.get("idle_p99_spread")
    if spread:
        click.echo(f"idle p99 over trials: {spread['min']}-{spread['max']} ms (median {spread['median']}, "
                   f"spread {spread['relative']:.0%} of it)")
    for target, met in report.get("targets", {}).items():
        click.echo(f"{'met' if met else 'NOT met'}: {target}")
