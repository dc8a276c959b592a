"""``ffs bench sort``: a GraySort-style job on FireflyFS next to local disk (bench/sort_job.py)."""

from __future__ import annotations

import sys

import click

from ._output import emit_json, json_mode, json_option, print_table, size_param


@click.command("sort")
@click.option("--url", default=None, help="An existing cluster (ffs://HOST:PORT[/DIR]); default: start a local "
                                          "one (3 storage nodes) in a tmp dir.")
@click.option("--size", callback=size_param, default="256MiB", show_default=True,
              help="Input bytes, as 100-byte records (e.g. 4GiB).")
@click.option("--workers", type=click.IntRange(0), default=0, help="Worker processes  [default: one per CPU]")
@click.option("--input-files", type=click.IntRange(0), default=0,
              help="Input files  [default: at most 256 MiB each, at least 2 per worker]")
@click.option("--partitions", type=click.IntRange(0), default=0,
              help="Key ranges, one output file each  [default: about 64 MiB each, at least 2 per worker]")
@click.option("--replicas", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Chain length of the local cluster.")
@click.option("--seed", type=int, default=0, show_default=True, help="Record bytes.")
@json_option
def sort(url, size, workers, input_files, partitions, replicas, seed) -> None:
    """Generate, sort (partition, then sort each range with pyarrow) and validate records; GiB/min vs local disk."""
    from fireflyfs.bench.sort_job import SortConfig, run

    config = SortConfig(size_bytes=size, workers=workers, input_files=input_files, partitions=partitions,
                        url=url, replicas=replicas, seed=seed)
    try:
        config.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    quiet = json_mode() or not sys.stderr.isatty()
    report = run(config, (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))).as_dict()
    if json_mode():
        emit_json(report)
    else:
        rows = [(name, f"{entry['records']:,}", entry["generate_s"], entry["partition_s"], entry["sort_s"],
                 entry["sort_gib_per_min"], entry["validate_s"],
                 f"{entry['partitions_valid']}/{entry['partitions']}" + ("" if entry["valid"] else " INVALID"))
                for name, entry in report["stores"].items()]
        print_table(f"Sort of {size / (1 << 30):.2f} GiB, FireflyFS / local disk: "
                    f"{report.get('fireflyfs_over_local', 0):.2f}",
                    ["store", "records", "generate s", "partition s", "sort s", "sort GiB/min", "validate s",
                     "partitions valid"], rows)
        for name, entry in report["stores"].items():
            for problem in entry["problems"]:
                click.echo(f"{name}: {problem}", err=True)
    if not report["valid"]:
        sys.exit(1)
