"""The processes of ``ffs bench fabric`` that run on testbed hosts (bench/fabric_bench.py drives them).

    python -m fireflyfs.bench.fabric_procs rank --rank R --world-size W --master HOST:PORT ...
        One HFReduce rank: allreduce, record the iteration latency, sleep a gap
        (the step's compute), until rank 0's window is over and at least
        --iterations-min allreduces were measured. Rank 0 decides when
        to stop and tells everyone inside the allreduce itself (a flag element),
        so all ranks run the same number of iterations. Prints one JSON line:
        latencies and the monotonic start/end of the window.
    python -m fireflyfs.bench.fabric_procs prepare --url ffs://... --files N --file-mib M
    python -m fireflyfs.bench.fabric_procs load --url ffs://... --threads T --read-bytes B
        Storage reads: T threads, each reading random B-byte ranges of the
        prepared files one at a time, until stdin closes; prints "started" once
        reads flow, then one JSON line of (monotonic time, bytes so far) samples
        so the driver can take the goodput of exactly the HFReduce window.
        Request-to-send and pacing come from the environment (FFS_CLIENT_RTS_*,
        FFS_PACE_STORAGE_MBIT), as for any client.

CLOCK_MONOTONIC is one clock for the whole machine (network namespaces do not
change it), so the windows of processes on different hosts line up.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time

files_dir = "/fabric-bench"


def _filesystem(url: str):
    import fsspec

    host, _, port = url.removeprefix("ffs://").rpartition(":")
    return fsspec.filesystem("ffs", host=host, port=int(port), skip_instance_cache=True)


def rank_main(args) -> int:
    import numpy as np

    from fireflyfs.fabric.hfreduce.group import HFReduceGroup

    host, port = args.master.rsplit(":", 1)
    with HFReduceGroup(args.rank, args.world_size, host, int(port)) as group:
        base = np.ones(args.count, dtype=np.float32)
        data = np.empty_like(base)
        latencies_ms: list[float] = []
        started = ended = 0.0
        iteration = 0
        while True:
            data[:] = base
            measuring = iteration >= args.warmup
            if measuring and not started:
                started = time.monotonic()
            if args.rank == 0:    # the flag: "last one" once the window is over and enough were measured
                window_over = started and time.monotonic() - started >= args.seconds
                data[-1] = 1.0 if window_over and measuring and len(latencies_ms) + 1 >= args.iterations_min else 0.0
            else:
                data[-1] = 0.0
            begin = time.perf_counter()
            group.allreduce(data, "sum")
            elapsed_ms = (time.perf_counter() - begin) * 1000
            if measuring:
                latencies_ms.append(elapsed_ms)
            iteration += 1
            if data[-1] > 0 or iteration >= args.iterations_max:
                ended = time.monotonic()
                break
            time.sleep(args.gap_ms / 1000)
        if not np.all(data[:-1] == args.world_size):
            raise SystemExit("allreduce result wrong")
    print(json.dumps({"rank": args.rank, "latencies_ms": latencies_ms, "start": started, "end": ended}),
          flush=True)
    return 0


def prepare_main(args) -> int:
    fs = _filesystem(args.url)
    fs.mkdirs(files_dir, exist_ok=True)
    block = bytes(random.Random(0).randbytes(args.file_mib * 1024 * 1024))
    for number in range(args.files):
        fs.pipe(f"{files_dir}/f{number}", block)
    print(json.dumps({"files": args.files, "bytes": args.files * len(block)}), flush=True)
    return 0


def load_main(args) -> int:
    fs = _filesystem(args.url)
    paths = [f"{files_dir}/f{number}" for number in range(args.files)]
    size = args.file_mib * 1024 * 1024
    total = [0]
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            start = rng.randrange(0, size - args.read_bytes + 1, 4096)
            try:
                got = len(fs.cat_file(rng.choice(paths), start, start + args.read_bytes))
            except Exception:  # noqa: BLE001 - counted; the benchmark reports them
                with lock:
                    errors[0] += 1
                time.sleep(0.05)
                continue
            with lock:
                total[0] += got

    threads = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    while total[0] == 0 and not errors[0]:
        time.sleep(0.01)
    print("started", flush=True)
    samples: list[tuple[float, int]] = []

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), total[0]))
            time.sleep(0.05)

    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    sys.stdin.read()                  # the driver closes stdin to stop us
    stop.set()
    sampling.join()
    samples.append((time.monotonic(), total[0]))
    from fireflyfs.client.config import ClientConfig
    from fireflyfs.client.rts import limiter_for

    limiter = limiter_for(ClientConfig.from_env())
    rts = None
    if limiter is not None:
        stats = limiter.stats()
        rts = {"permits_max": stats.permits_max, "granted": stats.granted, "peak": stats.in_use_peak,
               "timed_out": stats.timed_out}
    print(json.dumps({"samples": samples, "errors": errors[0], "rts": rts}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.bench.fabric_procs")
    sub = parser.add_subparsers(dest="command", required=True)
    rank = sub.add_parser("rank")
    rank.add_argument("--rank", type=int, required=True)
    rank.add_argument("--world-size", type=int, required=True)
    rank.add_argument("--master", required=True)
    rank.add_argument("--count", type=int, default=16384)
    rank.add_argument("--seconds", type=float, default=4.0)
    rank.add_argument("--gap-ms", type=float, default=20.0)
    rank.add_argument("--warmup", type=int, default=5)
    rank.add_argument("--iterations-min", type=int, default=1,
                      help="measured allreduces at least, however long the window takes")
    rank.add_argument("--iterations-max", type=int, default=100_000)
    for name in ("prepare", "load"):
        command = sub.add_parser(name)
        command.add_argument("--url", required=True)
        command.add_argument("--files", type=int, default=8)
        command.add_argument("--file-mib", type=int, default=8)
        command.add_argument("--threads", type=int, default=16)
        command.add_argument("--read-bytes", type=int, default=256 * 1024)
    args = parser.parse_args(argv)
    return {"rank": rank_main, "prepare": prepare_main, "load": load_main}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
