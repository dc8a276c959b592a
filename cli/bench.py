"""``ffs bench``: FireflyFS next to this machine's limits, measured in the same run.

The logic is bench/ffs_bench.py (``fireflyfs.bench.ffs_bench``); this module is
the command line: options, a progress display on a terminal (stderr, never
with ``--json`` or when piped), then a summary table or one JSON object.
"""

from __future__ import annotations

import sys

import click

from ._output import emit_json, json_mode, json_option, print_table, size_param


class _RichReporter:
    """Progress bars on stderr (only built when stderr is a terminal and --json is off)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, count: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, count)


@click.group(invoke_without_command=True)   # plus ``ffs bench fabric`` and ``ffs bench sort``
@click.option("--url", default=None, help="An existing cluster (ffs://HOST:PORT); default: start a local one "
                                          "(3 storage nodes, replication 1) in a tmp dir.")
@click.option("--full", is_flag=True, help="The issue's sizes: a 1 GiB file, more requests and files "
                                           "(several minutes).")
@click.option("--only", default=None, help="Comma-separated groups: sequential,random,small  [default: all]")
@click.option("--seq-size", callback=size_param, default=None, help="Sequential file size  [default: 256MiB; "
                                                                "--full 1GiB]")
@click.option("--block", callback=size_param, default=None, help="Bytes per sequential write/readinto  [default: 4MiB]")
@click.option("--small-files", type=click.IntRange(1), default=None, help="Small files per test  "
                                                                          "[default: 1000; --full 5000]")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Threads of the threaded "
                                                                            "small-file tests  [default: 16]")
@click.option("--seconds", type=click.FloatRange(0.1), default=None, help="Time budget of each "
                                                                          "measurement  [default: 4; --full 15]")
@click.option("--repeats", type=click.IntRange(1), default=None, help="Sequential rounds, best kept  "
                                                                      "[default: 1; --full 2]")
@click.option("--replicas", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Chain length of the local cluster.")
@click.option("--seed", type=int, default=0, show_default=True, help="Offsets and byte patterns.")
@json_option
def bench(url, full, only, seq_size, block, small_files, threads, seconds, repeats, replicas, seed) -> None:
    """Measure sequential, random and small-file IO with the machine's own limits alongside."""
    if click.get_current_context().invoked_subcommand:
        return
    from fireflyfs.bench.ffs_bench import BenchConfig, Reporter, run, summary_rows

    overrides = {key: value for key, value in dict(
        seq_bytes=seq_size, block_bytes=block, small_files=small_files, threads=threads,
        seconds_max=seconds, repeats=repeats).items() if value is not None}
    overrides.update(url=url, replicas=replicas, seed=seed)
    if only:
        overrides["groups"] = tuple(part.strip() for part in only.split(",") if part.strip())
    config = BenchConfig.full(**overrides) if full else BenchConfig(**overrides)
    try:
        config.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if sys.stderr.isatty() and not json_mode():
        with _RichReporter() as reporter:
            report = run(config, reporter)
    else:
        report = run(config, Reporter())
    if json_mode():
        emit_json(report.as_dict())
        return
    print_table(f"FireflyFS at {report.url}, each figure next to this machine's limit",
                ["group", "test", "FireflyFS", "p50 ms", "p99 ms", "limit", "limit value", "ratio", "target"],
                summary_rows(report))


from .bench_fabric import fabric as _fabric  # noqa: E402 - registered after the group exists
from .bench_sort import sort as _sort  # noqa: E402

bench.add_command(_fabric)
bench.add_command(_sort)
