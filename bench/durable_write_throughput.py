"""Write throughput with the durable default against ``--no-fsync``, on two local clusters in one run.

    python bench/durable_write_throughput.py [--size 256MiB] [--writers 1,4] [--small-files 400]
                                             [--small-threads 1,8] [--repeats 3] [--json]

Two local clusters run side by side, each 3 storage nodes of 2 targets with 3
replicas (every chunk on every node): one with the defaults (every replica
fdatasyncs the chunk and commits its meta durably before it acks; meta
fdatasyncs every mutation before it replies, with group commit), one started
with ``--no-fsync`` (the old defaults: the page cache only). Per round, for
each cluster in turn:

- large writes: ``writers`` threads each write one file of size/writers bytes
  through fsspec in 4 MiB writes and close it (the close returns after the last
  durable ack and Meta.Close); MiB/s of all bytes over the wall time;
- small files: ``small_threads`` threads create small_files files of 1 KiB in
  total with ``fs.pipe`` (inline in the meta store: one Meta.Create commit
  each), files/s.

Before each measurement ``os.sync()`` flushes what the previous one left dirty,
so the unsynced cluster's writeback does not land on the next figure. Rounds
alternate the clusters; each figure is the median of ``--repeats`` rounds.
All clusters share one disk here: a power loss takes every replica at once
(docs/durability.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.units import parse_positive_size

write_bytes = 4 * MiB
small_file_bytes = 1 * KiB


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_threads(count: int, work) -> float:
    """Seconds for count threads to run work(n) from a common start."""
    start = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - began


def large_writes_mib_s(fs, base: str, size: int, writers: int) -> float:
    each = size // writers
    block = memoryview(os.urandom(write_bytes))

    def write(n: int) -> None:
        with fs.open(f"{base}/large-{n}", "wb") as handle:
            for offset in range(0, each, write_bytes):
                handle.write(block[:min(write_bytes, each - offset)])

    seconds = run_threads(writers, write)
    fs.rm(base, recursive=True)
    return each * writers / MiB / seconds


def small_files_per_s(fs, base: str, files: int, threads: int) -> float:
    each = files // threads
    payload = os.urandom(small_file_bytes)
    fs.makedirs(base, exist_ok=True)

    def create(n: int) -> None:
        for i in range(each):
            fs.pipe(f"{base}/s-{n}-{i}", payload)

    seconds = run_threads(threads, create)
    fs.rm(base, recursive=True)
    return each * threads / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_positive_size, default=256 * MiB,
                        help="bytes written per large-write measurement (default 256MiB)")
    parser.add_argument("--writers", default="1,4", help="comma-separated large-file writer counts")
    parser.add_argument("--small-files", type=int, default=400, help="1 KiB files per measurement")
    parser.add_argument("--small-threads", default="1,8", help="comma-separated small-file thread counts")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each figure is the median")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    writer_counts = [int(n) for n in args.writers.split(",")]
    thread_counts = [int(n) for n in args.small_threads.split(",")]

    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    tmp_dir = tempfile.mkdtemp(prefix="ffs-durable-bench-")
    clusters = {mode: LocalCluster(os.path.join(tmp_dir, mode), storage_nodes=3, targets_per_node=2,
                                   replicas=3, python=sys.executable, fsync=(mode == "fsync"))
                for mode in ("fsync", "no_fsync")}
    samples: dict[str, list[float]] = {}
    try:
        filesystems = {}
        for mode, local in clusters.items():
            progress(f"starting the {mode} cluster in {local.base_dir} ...")
            local.up()
            filesystems[mode] = fsspec.filesystem("ffs", host=local.host, port=local.port,
                                                  skip_instance_cache=True)
        for repeat in range(args.repeats):
            for mode, fs in filesystems.items():
                progress(f"round {repeat + 1}/{args.repeats}: {mode} ...")
                for writers in writer_counts:
                    os.sync()
                    samples.setdefault(f"{mode}_large_{writers}w_mib_s", []).append(
                        large_writes_mib_s(fs, f"/bench-{uuid.uuid4().hex[:8]}", args.size, writers))
                for threads in thread_counts:
                    os.sync()
                    samples.setdefault(f"{mode}_small_{threads}t_files_s", []).append(
                        small_files_per_s(fs, f"/bench-{uuid.uuid4().hex[:8]}", args.small_files, threads))
    finally:
        for local in clusters.values():
            local.down()
        shutil.rmtree(tmp_dir, ignore_errors=True)

    figures = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    result = {"size_bytes": args.size, "small_files": args.small_files, "repeats": args.repeats,
              "replicas": 3, "figures": figures}
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in figures.items():
            print(f"{name}: {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
