"""Random 4 KiB reads through ``FfsClient.read_batch`` (and fsspec ``cat_ranges``), batches of 256.

    python bench/read_batch_random.py [--file-mib 256] [--seconds 3] [--repeats 3] [--json]

Starts a local cluster (3 storage nodes of 2 targets, replication 1), writes
one file, then reads random 4 KiB-aligned ranges of it in batches of 256 into
one reused buffer for ``--seconds`` per round; the best round counts. Next to
reads/s it prints the CPU each read cost in this process and in the storage
processes together (from process_time and /proc): on a shared 2-core VM the
wall-clock rate swings with other load, the CPU per read does not, and
2 cores / (client + servers CPU per read) is the rate an idle machine allows.
``cat_ranges`` runs only when the filesystem has a batched implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

from fireflyfs.bench.data_plane import child_cpu_s
from fireflyfs.common.limits import MiB

READ_BYTES = 4096
BATCH = 256


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes used so far."""
    return sum(child_cpu_s(pid) for pid in pids)


def rounds(run_batch, seconds: float, repeats: int, pids: list[int]) -> dict[str, float]:
    """Best reads/s over repeats, with the CPU per read of that round (us, here and in the servers)."""
    best: dict[str, float] = {"reads_s": 0.0}
    for _ in range(repeats):
        reads = 0
        servers_start, here_start, start = cpu_s(pids), time.process_time(), time.perf_counter()
        while time.perf_counter() - start < seconds:
            run_batch()
            reads += BATCH
        wall = time.perf_counter() - start
        here = (time.process_time() - here_start) / reads * 1e6
        servers = (cpu_s(pids) - servers_start) / reads * 1e6
        if reads / wall > best["reads_s"]:
            best = {"reads_s": reads / wall, "client_cpu_us": here, "servers_cpu_us": servers,
                    "idle_2core_bound_reads_s": 2e6 / (here + servers)}
    return {key: round(value, 1) for key, value in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import fsspec

    from fireflyfs.client.client import FfsClient
    from fireflyfs.deploy.local_cluster import LocalCluster

    tmp_dir = tempfile.mkdtemp(prefix="ffs-bench-rand-")
    local = LocalCluster(tmp_dir, storage_nodes=3, targets_per_node=2, replicas=1, python=sys.executable)
    result: dict[str, object] = {"file_mib": args.file_mib, "batch": BATCH, "read_bytes": READ_BYTES}
    try:
        local.up()
        pids = [local.pid(f"storage-{node}") for node in (1, 2, 3)]
        client = FfsClient(f"{local.host}:{local.port}")
        size = args.file_mib * MiB
        path = "/bench/random.bin"
        handle = client.create(path)
        chunk = os.urandom(4 * MiB)
        for offset in range(0, size, len(chunk)):
            client.pwrite(handle, offset, chunk)
        client.close(handle, size)
        handle = client.open(path)
        rng = random.Random(7)
        buffer = bytearray(BATCH * READ_BYTES)
        blocks = size // READ_BYTES

        def batch_by_handle() -> None:
            requests = [(handle, rng.randrange(blocks) * READ_BYTES, READ_BYTES) for _ in range(BATCH)]
            outcome = client.read_batch(requests, into=buffer)
            if not outcome.ok:
                outcome.raise_first()

        print("read_batch ...", file=sys.stderr, flush=True)
        result["read_batch"] = rounds(batch_by_handle, args.seconds, args.repeats, pids)
        fs = fsspec.filesystem("ffs", host=local.host, port=local.port)
        if type(fs).cat_ranges is not fsspec.AbstractFileSystem.cat_ranges:
            def batch_cat_ranges() -> None:
                starts = [rng.randrange(blocks) * READ_BYTES for _ in range(BATCH)]
                fs.cat_ranges([path] * BATCH, starts, [start + READ_BYTES for start in starts])

            print("cat_ranges ...", file=sys.stderr, flush=True)
            result["cat_ranges"] = rounds(batch_cat_ranges, args.seconds, args.repeats, pids)
    finally:
        local.down()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"random {READ_BYTES} B reads of a {args.file_mib} MiB file, {BATCH} per call, R=1, "
          f"best of {args.repeats} x {args.seconds:.0f}s")
    print(f"{'path':<12}{'reads/s':>10}{'client us':>11}{'servers us':>12}{'idle bound':>12}")
    for name in ("read_batch", "cat_ranges"):
        row = result.get(name)
        if isinstance(row, dict):
            print(f"{name:<12}{row['reads_s']:>10.0f}{row['client_cpu_us']:>11.1f}{row['servers_cpu_us']:>12.1f}"
                  f"{row['idle_2core_bound_reads_s']:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
