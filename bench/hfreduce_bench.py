"""HFReduce bandwidth against a naive ring and torch.distributed gloo, in one run.

    python bench/hfreduce_bench.py [--ranks 2] [--sizes 1MiB,16MiB,64MiB] [--iterations 5]
                                   [--chunk-bytes 512KiB] [--json]

Starts --ranks processes on this machine (loopback TCP). Each rank sets up, in
the same processes and on the same data:
- ``hfreduce_tree``: HFReduce with every rank its own "host", so all data goes
  through the double binary tree over TCP (the inter-node path);
- ``hfreduce_shm``: HFReduce with all ranks on one host, so the sum goes
  through shared memory at the leader (the intra-node path);
- ``hfreduce_2hosts``: the ranks split over two hosts (3 ranks: 2 + 1, 4: 2 + 2),
  Fire-Flyer's shape: a host sums its ranks in shared memory and only the two
  leaders run the trees over TCP (with 2 ranks it is ``hfreduce_tree``);
- ``ring``: the naive ring allreduce over the same marked TCP transport;
- ``gloo``: ``torch.distributed.all_reduce`` with the gloo backend.
Per size and algorithm, every rank times float32 sum allreduces (after one
warm-up, inputs restored before each, a gloo barrier between): --iterations,
or more for small sizes (enough calls to move ~256 MiB, at most 100: five
1 MiB calls gave medians that swung 2x with thread wake-ups), and rank 0
reports the median time, algorithm bandwidth
(bytes / time) and bus bandwidth (algbw * 2(n-1)/n, NCCL's convention, so
figures compare across rank counts). Results are checked against gloo's.
Machine-limits.md's gloo baseline: 186 MiB, busbw ~1.7 GB/s with 2 ranks,
1.4 with 3, 1.2 with 4 (2 cores: more ranks than cores share CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from fireflyfs.common.units import parse_positive_size, parse_size

ALGORITHMS = ("hfreduce_tree", "hfreduce_shm", "hfreduce_2hosts", "ring", "gloo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_rank(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from fireflyfs.fabric.hfreduce import HFReduceGroup

    rank, world = args.rank, args.ranks
    gloo_port, tree_port, shm_port, hosts_port = (int(p) for p in args.ports.split(","))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{gloo_port}", rank=rank, world_size=world)
    tree = HFReduceGroup(rank, world, "127.0.0.1", tree_port, host_key=f"h{rank}", ring=True,
                         chunk_bytes=args.chunk_bytes)
    shm = HFReduceGroup(rank, world, "127.0.0.1", shm_port, host_key="one-host", chunk_bytes=args.chunk_bytes)
    two_hosts = HFReduceGroup(rank, world, "127.0.0.1", hosts_port, host_key=f"h{rank * 2 // world}",
                              chunk_bytes=args.chunk_bytes)
    calls = {
        "hfreduce_tree": lambda t: tree.allreduce(t),
        "hfreduce_shm": lambda t: shm.allreduce(t),
        "hfreduce_2hosts": lambda t: two_hosts.allreduce(t),
        "ring": lambda t: tree.ring_allreduce(t),
        "gloo": lambda t: dist.all_reduce(t),
    }
    report = []
    for size in args.sizes:
        count = size // 4
        source = torch.from_numpy(np.random.default_rng([1, rank]).integers(-8, 9, count).astype(np.float32))
        data = source.clone()
        row = {"bytes": count * 4}
        outputs = {}
        iterations = max(args.iterations, min(100, (256 << 20) // max(size, 1)))
        row["iterations"] = iterations
        for name in ALGORITHMS:
            times = []
            for iteration in range(iterations + 1):
                data.copy_(source)
                dist.barrier()
                started = time.perf_counter()
                calls[name](data)
                elapsed = time.perf_counter() - started
                if iteration:          # the first is warm-up
                    times.append(elapsed)
            outputs[name] = data.clone()
            seconds = statistics.median(times)
            algbw = count * 4 / seconds / 1e9
            row[name] = {"ms_p50": round(seconds * 1000, 3), "ms_min": round(min(times) * 1000, 3),
                         "algbw_GBps": round(algbw, 3),
                         "busbw_GBps": round(algbw * 2 * (world - 1) / world, 3)}
        row["tree_vs_gloo"] = round(row["hfreduce_tree"]["busbw_GBps"] / row["gloo"]["busbw_GBps"], 3)
        row["2hosts_vs_gloo"] = round(row["hfreduce_2hosts"]["busbw_GBps"] / row["gloo"]["busbw_GBps"], 3)
        for name in ALGORITHMS[:-1]:
            if not torch.equal(outputs[name], outputs["gloo"]):
                raise SystemExit(f"rank {rank}: {name} differs from gloo at {size} bytes")
        report.append(row)
    tree.close()
    shm.close()
    two_hosts.close()
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(report))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--sizes", default="1MiB,16MiB,64MiB",
                        type=lambda s: [parse_size(x) for x in s.split(",")])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--chunk-bytes", type=parse_positive_size, default=512 * 1024)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ports", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank is not None:
        run_rank(args)
        return 0
    ports = ",".join(str(free_port()) for _ in range(4))
    sizes = ",".join(str(s) for s in args.sizes)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="67108864", MALLOC_TRIM_THRESHOLD_="268435456")
    processes = [subprocess.Popen(
        [sys.executable, __file__, "--ranks", str(args.ranks), "--sizes", sizes,
         "--iterations", str(args.iterations), "--chunk-bytes", str(args.chunk_bytes),
         "--rank", str(rank), "--ports", ports], stdout=subprocess.PIPE, env=env)
        for rank in range(args.ranks)]
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=1800)
            outputs.append(out.decode())
            if process.returncode:
                print(f"a rank failed (exit {process.returncode})", file=sys.stderr)
                return 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    report = {"ranks": args.ranks, "chunk_bytes": args.chunk_bytes, "iterations": args.iterations,
              "sizes": json.loads(outputs[0])}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.ranks} ranks, float32 sum, median of each size's calls; busbw GB/s (ms)")
    print(f"{'size':>10} " + " ".join(f"{name:>20}" for name in ALGORITHMS) + "  tree/gloo  2hosts/gloo")
    for row in report["sizes"]:
        cells = " ".join(f"{row[n]['busbw_GBps']:>11.2f} ({row[n]['ms_p50']:>6.2f})" for n in ALGORITHMS)
        print(f"{row['bytes'] / 2**20:>8.1f}Mi {cells}  {row['tree_vs_gloo']:>9.2f}  {row['2hosts_vs_gloo']:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
