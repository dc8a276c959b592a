"""PyTorch loading from FireflyFS next to the same records on local disk, in one run.

    python bench/loader_throughput.py [--records 50000] [--workers 0,2,4] [--url ffs://host:port]
                                      [--checkpoint-size 256MiB] [--full] [--json]

Writes N records of 1-8 KiB (uniform sizes, random bytes) once as a FireflyFS
record file and once as a plain local file (records back to back, offsets in
memory), then reads each in shuffled batches (``ShuffledShardSampler``, batch
64, fork workers) through a ``torch.utils.data.DataLoader`` with 0, 2 and 4
workers. The local baseline is a plain Dataset whose ``__getitem__`` is one
``os.pread`` (page cache warm); the FireflyFS side is ``RecordDataset``, whose
``__getitems__`` is one batched read per batch with every record's CRC32C
checked. Both return ``bytes`` samples, so the hand-off from workers costs
the same. Reported: samples/s and MiB/s after the first batch, the ratio to
the baseline, time to the first batch, and resume latency (a fresh sampler
and loader from a saved state to the first batch, checked to be the exact
next samples) at several points of the epoch. Then checkpoint save/load MiB/s
next to torch.save/torch.load on local disk (bench/checkpoint_throughput.py).

Without --url it starts a local cluster (3 storage nodes of 2 targets, one
replica per chain) in a tmp dir and stops it at the end. ``--full`` is the
issue's size: 1 million records and a 1 GiB state dict. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import inspect
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid

from fireflyfs.common.limits import MiB

batch_size_default = 64
record_bytes_min, record_bytes_max = 1024, 8192


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1GiB, 256MiB, 4096)")
    factor = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 ** 4}[match.group(2).upper()]
    return int(match.group(1)) * factor


def tune_malloc() -> bool:
    """Keep big buffers on the heap (glibc), as the cluster processes do; see machine-limits.md."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * MiB)) and bool(libc.mallopt(-1, 256 * MiB))
    except (OSError, AttributeError):
        return False


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def running_cluster(url: str | None):
    """Yields (cluster URL, replicas or None); starts a tmp local cluster unless url is given."""
    if url:
        yield url.rstrip("/"), None
        return
    from fireflyfs.deploy.local_cluster import LocalCluster

    base = tempfile.mkdtemp(prefix="ffs-bench-")
    kwargs = {}
    if "replicas" in inspect.signature(LocalCluster).parameters:
        kwargs["replicas"] = 1     # the loader path, not replication, is measured here
    cluster = LocalCluster(base, storage_nodes=3, targets_per_node=2, python=sys.executable,
                           **kwargs)
    try:
        progress(f"starting a local cluster in {base} ...")
        yield cluster.up(), kwargs.get("replicas")
    finally:
        cluster.down()
        shutil.rmtree(base, ignore_errors=True)


class LocalPreadDataset:
    """The baseline: records back to back in one local file, one os.pread per sample."""

    def __init__(self, path: str, offsets: list[int]) -> None:
        self.path, self.offsets = path, offsets
        self._fd, self._pid = -1, 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> bytes:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        start = self.offsets[index]
        return os.pread(self._fd, self.offsets[index + 1] - start, start)


def write_datasets(url: str, local_dir: str, count: int, seed: int):
    """The same records to FireflyFS (record file) and local disk; returns both datasets."""
    from fireflyfs.loaders import RecordDataset, RecordWriter

    rng = random.Random(seed)
    pool = os.urandom(16 * MiB)
    local_path = os.path.join(local_dir, "records.bin")
    offsets = [0]
    started = time.perf_counter()
    with RecordWriter(f"{url}/records.rec", spool_dir=local_dir) as writer, \
            open(local_path, "wb") as local:
        for _ in range(count):
            length = rng.randint(record_bytes_min, record_bytes_max)
            start = rng.randrange(0, len(pool) - length)
            record = memoryview(pool)[start:start + length]
            writer.write(record)
            local.write(record)
            offsets.append(offsets[-1] + length)
    elapsed = time.perf_counter() - started
    progress(f"wrote {count} records ({offsets[-1] / MiB:.0f} MiB) in {elapsed:.1f}s")
    return RecordDataset(f"{url}/records.rec"), LocalPreadDataset(local_path, offsets), offsets[-1]


def measure_loader(dataset, workers: int, batch_size: int, seed: int, samples_max: int) -> dict:
    """Time to first batch, then samples/s and MiB/s over the following batches."""
    from torch.utils.data import DataLoader

    from fireflyfs.loaders import ShuffledShardSampler

    sampler = ShuffledShardSampler(dataset, seed=seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    started = time.perf_counter()
    iterator = iter(loader)
    first = next(iterator)
    first_batch_s = time.perf_counter() - started
    samples = bytes_read = 0
    steady = time.perf_counter()
    for batch in iterator:
        samples += len(batch)
        bytes_read += sum(map(len, batch))
        if samples + len(first) >= samples_max:
            break
    elapsed = time.perf_counter() - steady
    del iterator
    return {"workers": workers, "samples": samples, "first_batch_s": round(first_batch_s, 3),
            "samples_per_s": round(samples / elapsed), "mib_per_s": round(bytes_read / MiB / elapsed, 1)}


def measure_resume(dataset, baseline, workers: int, batch_size: int, fraction: float) -> dict:
    """Seconds from a saved sampler state to the first batch of a new loader, verified exact."""
    from torch.utils.data import DataLoader

    from fireflyfs.loaders import ShuffledShardSampler

    import numpy as np

    saved = ShuffledShardSampler(dataset, seed=7)
    saved.set_epoch(3)
    consumed = int(len(dataset) * fraction) // batch_size * batch_size
    state = {**saved.state_dict(), "samples_consumed": consumed}
    started = time.perf_counter()
    sampler = ShuffledShardSampler(dataset)
    sampler.load_state_dict(state)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    iterator = iter(loader)
    batch = next(iterator)
    elapsed = time.perf_counter() - started
    del iterator
    expected_indices = sampler.indices_at(consumed, np.arange(len(batch))).tolist()
    if batch != [baseline[i] for i in expected_indices]:
        raise RuntimeError(f"resume at {consumed} did not give the exact next samples")
    return {"workers": workers, "position": consumed, "resume_to_first_batch_s": round(elapsed, 3)}


def sampler_resume_huge_s() -> float:
    """A sampler resumed 10**12 samples into an epoch, to its first index."""
    from fireflyfs.loaders import ShuffledShardSampler

    size = 10 ** 12
    started = time.perf_counter()
    sampler = ShuffledShardSampler(size, rank=3, world_size=8)
    sampler.load_state_dict({**sampler.state_dict(), "samples_consumed": size - 1000})
    next(iter(sampler))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="ffs://host:port of a running cluster (default: start one)")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--workers", default="0,2,4", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=batch_size_default)
    parser.add_argument("--samples", type=int, default=0,
                        help="samples measured per run (default: one epoch)")
    parser.add_argument("--checkpoint-size", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--repeats", type=int, default=2, help="checkpoint runs (best is kept)")
    parser.add_argument("--skip-checkpoint", action="store_true")
    parser.add_argument("--full", action="store_true", help="1M records, 1 GiB state dict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.full:
        args.records, args.checkpoint_size = 1_000_000, 1024 * MiB
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    malloc_tuned = tune_malloc()
    result: dict = {"records": args.records, "batch_size": args.batch_size,
                    "record_bytes": [record_bytes_min, record_bytes_max],
                    "malloc_tuned": malloc_tuned}
    local_dir = tempfile.mkdtemp(prefix="ffs-bench-local-")
    try:
        with running_cluster(args.url) as (cluster_url, replicas):
            result["replicas"] = replicas
            url = f"{cluster_url}/bench-loader-{uuid.uuid4().hex[:8]}"
            dataset, baseline, total_bytes = write_datasets(url, local_dir, args.records, args.seed)
            result["dataset_mib"] = round(total_bytes / MiB, 1)
            samples_max = args.samples or args.records
            result["loader"] = []
            for count in workers:
                local = measure_loader(baseline, count, args.batch_size, args.seed, samples_max)
                ffs = measure_loader(dataset, count, args.batch_size, args.seed, samples_max)
                ratio = round(ffs["samples_per_s"] / local["samples_per_s"], 3)
                result["loader"].append({"workers": count, "ffs": ffs, "local": local,
                                         "ratio": ratio})
                progress(f"workers={count}: ffs {ffs['samples_per_s']}/s "
                         f"({ffs['mib_per_s']} MiB/s, first batch {ffs['first_batch_s']}s); "
                         f"local {local['samples_per_s']}/s; ratio {ratio}")
            result["resume"] = [measure_resume(dataset, baseline, count, args.batch_size, fraction)
                                for count in sorted({0, 2} & set(workers) or {0})
                                for fraction in (0.0, 0.5, 0.999)]
            result["sampler_resume_1e12_s"] = round(sampler_resume_huge_s(), 4)
            progress(f"resume: {result['resume']}")
            if not args.skip_checkpoint:
                from fireflyfs.bench.checkpoint_throughput import run_checkpoint

                result["checkpoint"] = run_checkpoint(url, local_dir, args.checkpoint_size,
                                                      args.repeats)
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def print_table(result: dict) -> None:
    print(f"{result['records']} records of 1-8 KiB ({result['dataset_mib']} MiB), "
          f"batch {result['batch_size']}, replicas {result['replicas']}")
    print(f"{'workers':>7} {'ffs samples/s':>14} {'ffs MiB/s':>10} {'local samples/s':>16} "
          f"{'ratio':>6} {'ffs 1st batch s':>16}")
    for row in result["loader"]:
        print(f"{row['workers']:>7} {row['ffs']['samples_per_s']:>14} {row['ffs']['mib_per_s']:>10} "
              f"{row['local']['samples_per_s']:>16} {row['ratio']:>6} "
              f"{row['ffs']['first_batch_s']:>16}")
    for row in result["resume"]:
        print(f"resume at {row['position']} with {row['workers']} workers: "
              f"{row['resume_to_first_batch_s']} s to the first batch")
    print(f"sampler resume 10^12 samples in: {result['sampler_resume_1e12_s']} s")
    if "checkpoint" in result:
        from fireflyfs.bench.checkpoint_throughput import print_checkpoint

        print_checkpoint(result["checkpoint"])


if __name__ == "__main__":
    sys.exit(main())
