"""What background scrub costs foreground reads: the same reads with scrub off and on, in one run.

    python bench/scrub_cost.py [--file-mib 96] [--seconds 3] [--repeats 5] [--scrub-bytes-per-s N] [--json]

Starts two local clusters side by side (3 storage nodes of 1 target, chains
of 3 replicas), identical but for the storage nodes' scrub: off
(FFS_SCRUB_BYTES_PER_S=0) and on at the default rate (8 MiB/s per node, a
new pass as soon as the last ended, so it scrubs all through the
measurement: each node holds a whole copy of the file). Each cluster gets the
same file, then rounds alternate between them (off, on, on, off, ...: load
drift on a shared machine hits both alike): sequential reads of the whole
file through fsspec (bulk streams) and random 4 KiB reads in batches of 256
(``read_batch``). It prints the median of each and the on/off ratio, the
storage processes' CPU per MiB read, and how many bytes scrub verified during
the "on" rounds, which shows it was running.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
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


def scrubbed_bytes(local) -> int:
    """Bytes verified by the current and completed passes, summed over the cluster (a rising count)."""
    from fireflyfs.proto import storage_pb2_grpc, types_pb2

    total = 0
    for node in local.routing().nodes:
        if node.type != types_pb2.NODE_STORAGE:
            continue
        with local.admin_channel(node.address) as channel:
            reply = storage_pb2_grpc.StorageStub(channel).ScrubStatus(types_pb2.Empty(), timeout=10)
        total += sum(t.pass_bytes_checked + t.passes_completed * t.pass_bytes_total for t in reply.targets)
    return total


class Setup:
    """One cluster with the bench file, and its two read loads."""

    def __init__(self, name: str, scrub_bytes_per_s: int, file_mib: int) -> None:
        import fsspec

        from fireflyfs.client.client import FfsClient
        from fireflyfs.deploy.local_cluster import LocalCluster

        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"ffs-bench-scrub-{name}-")
        self.local = LocalCluster(self.dir, storage_nodes=3, targets_per_node=1, replicas=3, python=sys.executable,
                                  extra_env={"FFS_SCRUB_BYTES_PER_S": str(scrub_bytes_per_s),
                                             "FFS_SCRUB_INTERVAL_S": "0"})
        self.local.up()
        self.pids = [self.local.pid(f"storage-{node}") for node in (1, 2, 3)]
        # Two clusters in one process: each client carries its own cluster's admin token.
        token = self.local.admin_token()
        self.client = FfsClient(f"{self.local.host}:{self.local.port}", token=token)
        self.size = file_mib * MiB
        self.path = "/bench/scrub.bin"
        handle = self.client.create(self.path)
        piece = random.Random(1).randbytes(4 * MiB)
        for offset in range(0, self.size, len(piece)):
            self.client.pwrite(handle, offset, piece)
        self.client.close(handle, self.size)
        self.handle = self.client.open(self.path)
        self.fs = fsspec.filesystem("ffs", host=self.local.host, port=self.local.port, token=token,
                                    skip_instance_cache=True)
        self.buffer = bytearray(BATCH * READ_BYTES)
        self.rng = random.Random(7)

    def sequential(self) -> int:
        with self.fs.open(self.path, "rb") as handle:
            while handle.read(4 * MiB):
                pass
        return self.size

    def random_batch(self) -> int:
        blocks = self.size // READ_BYTES
        outcome = self.client.read_batch([(self.handle, self.rng.randrange(blocks) * READ_BYTES, READ_BYTES)
                                          for _ in range(BATCH)], into=self.buffer)
        if not outcome.ok:
            outcome.raise_first()
        return BATCH

    def measure(self, load, seconds: float) -> tuple[float, float]:
        """(units per second, storage CPU seconds per unit) of one round of load."""
        done = 0
        servers_start, start = cpu_s(self.pids), time.perf_counter()
        while time.perf_counter() - start < seconds:
            done += load()
        wall = time.perf_counter() - start
        return done / wall, (cpu_s(self.pids) - servers_start) / done

    def close(self) -> None:
        self.local.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from fireflyfs.storage_service.scrub import scrub_bytes_per_s_default

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file-mib", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scrub-bytes-per-s", type=int, default=scrub_bytes_per_s_default)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    setups: dict[str, Setup] = {}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    scrubbed = 0
    try:
        for name, rate in (("off", 0), ("on", args.scrub_bytes_per_s)):
            print(f"cluster with scrub {name} ...", file=sys.stderr, flush=True)
            setups[name] = Setup(name, rate, args.file_mib)
        loads = {"sequential_mib_s": lambda s: s.sequential, "random_4k_reads_s": lambda s: s.random_batch}
        for repeat in range(args.repeats):
            order = ("off", "on") if repeat % 2 == 0 else ("on", "off")
            for load_name, load in loads.items():
                for name in order:
                    setup = setups[name]
                    before = scrubbed_bytes(setup.local) if name == "on" else 0
                    rate, cpu = setup.measure(load(setup), args.seconds)
                    if name == "on":
                        scrubbed += scrubbed_bytes(setup.local) - before
                    samples.setdefault((load_name, name), []).append((rate, cpu))
    finally:
        for setup in setups.values():
            setup.close()

    result: dict[str, object] = {"file_mib": args.file_mib, "replicas": 3, "seconds": args.seconds,
                                 "repeats": args.repeats, "scrub_bytes_per_s": args.scrub_bytes_per_s,
                                 "scrubbed_mib_during_on_rounds": round(scrubbed / MiB, 1)}
    for load_name in ("sequential_mib_s", "random_4k_reads_s"):
        row = {}
        for name in ("off", "on"):
            rates = [rate for rate, _ in samples[(load_name, name)]]
            cpus = [cpu for _, cpu in samples[(load_name, name)]]
            scale = 1 / MiB if load_name == "sequential_mib_s" else 1.0
            row[name] = round(statistics.median(rates) * scale, 1)
            row[f"{name}_range"] = [round(min(rates) * scale, 1), round(max(rates) * scale, 1)]
            unit_cpu = statistics.median(cpus) / scale
            row[f"{name}_servers_cpu_{'ms_per_mib' if scale != 1.0 else 'us_per_read'}"] = round(
                unit_cpu * (1e3 if scale != 1.0 else 1e6), 2)
        row["on_off_ratio"] = round(row["on"] / row["off"], 3) if row["off"] else None
        result[load_name] = row
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"scrub cost: {args.file_mib} MiB file, R=3, scrub {args.scrub_bytes_per_s / MiB:.0f} MiB/s per node, "
          f"median of {args.repeats} x {args.seconds:.0f}s rounds, off/on alternating; "
          f"scrub verified {result['scrubbed_mib_during_on_rounds']} MiB during the 'on' rounds")
    print(f"{'load':<20}{'off':>10}{'on':>10}{'on/off':>8}{'servers CPU off':>17}{'on':>8}"
          f"   {'off range':>18}{'on range':>18}")
    for load_name in ("sequential_mib_s", "random_4k_reads_s"):
        row = result[load_name]
        cpu_keys = [key for key in row if "_servers_cpu_" in key]
        print(f"{load_name:<20}{row['off']:>10}{row['on']:>10}{row['on_off_ratio']:>8}"
              f"{row[cpu_keys[0]]:>17}{row[cpu_keys[1]]:>8}   {str(row['off_range']):>18}{str(row['on_range']):>18}"
              f"   (CPU {cpu_keys[0].split('_cpu_')[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
