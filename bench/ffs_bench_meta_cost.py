"""Where a metadata call's time goes: CPU per call in the client, the meta process and its handler.

    python bench/ffs_bench_meta_cost.py [--ops info,touch,pipe_file] [--threads 1,16] [--count 3000] [--json]

For each operation it starts a local cluster (3 storage nodes, R=1), runs the
call ``count`` times from ``threads`` threads of this process, and reports
calls/s with the CPU each call cost: in this process (time.process_time), in
the meta process (per thread from /proc: "python" threads run gRPC's Python
server and the handler, "event_engine" threads are gRPC's C core), and in the
storage processes. It then runs the same handler in-process without gRPC
(``MetaServicer`` over a Namespace on a tmp LMDB), which isolates our own work
from the RPC stack, and a 64-byte gRPC echo (server in a second process) for
the floor of any one-RPC call. CPU per call is steadier than calls/s on a busy
machine, which is why this script reports it.

Findings on the 2-core VM (busy; figures drift 10-30%): info costs ~0.2 ms
of client CPU and ~0.3 ms in the meta process, of which the handler is
~0.012 ms; a create (touch) ~0.4 ms in meta, the handler ~0.05 ms of which
the idempotency record is ~0.025 ms. A 64-byte echo costs ~0.2 + ~0.35 ms.
So one metadata call is bound by gRPC's Python stack; concurrent calls are
coalesced by the client (client/meta_client.py) to spend that cost once per
batch.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import tempfile
import threading
import time

ECHO_CALLS = 3000


def thread_cpu_s(pid: int) -> dict[str, tuple[str, float]]:
    """tid -> (thread name, user+system CPU seconds) of every thread of pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def process_cpu_s(pid: int) -> float:
    return sum(cpu for _name, cpu in thread_cpu_s(pid).values())


def by_thread_name(before: dict, after: dict) -> dict[str, float]:
    totals: collections.Counter = collections.Counter()
    for tid, (name, cpu) in after.items():
        totals[name] += cpu - before.get(tid, (name, 0.0))[1]
    return dict(totals)


def operations(fs, root: str) -> dict:
    payload = b"y" * 1024
    return {"info": lambda i: fs.info(f"{root}/x"),
            "touch": lambda i: fs.touch(f"{root}/t{i}"),
            "pipe_file": lambda i: fs.pipe_file(f"{root}/p{i}", payload),
            "cat_file": lambda i: fs.cat_file(f"{root}/x")}


def measure_cluster(op: str, threads: int, count: int) -> dict:
    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix="ffs-meta-cost-") as tmp:
        cluster = LocalCluster(tmp, storage_nodes=3, replicas=1, python=sys.executable)
        try:
            cluster.up()
            fs = fsspec.filesystem("ffs", host=cluster.host, port=cluster.port, skip_instance_cache=True)
            root = "/cost"
            fs.mkdir(root)
            fs.pipe_file(f"{root}/x", b"x" * 1024)
            call = operations(fs, root)[op]
            for i in range(200):
                call(10_000_000 + i)
            meta = cluster.pid("meta")
            storage = [cluster.pid(f"storage-{n}") for n in (1, 2, 3)]
            meta_before, storage_before = thread_cpu_s(meta), sum(process_cpu_s(p) for p in storage)
            client_before, began = time.process_time(), time.perf_counter()
            share = count // threads

            def run(slot: int) -> None:
                for i in range(slot * share, (slot + 1) * share):
                    call(i)

            pool = [threading.Thread(target=run, args=(slot,)) for slot in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            elapsed, calls = time.perf_counter() - began, share * threads
            meta_by_thread = by_thread_name(meta_before, thread_cpu_s(meta))
            return {"op": op, "threads": threads, "calls_per_s": calls / elapsed,
                    "client_cpu_ms": 1000 * (time.process_time() - client_before) / calls,
                    "meta_cpu_ms": 1000 * sum(meta_by_thread.values()) / calls,
                    "meta_cpu_ms_by_thread": {k: 1000 * v / calls for k, v in meta_by_thread.items() if v},
                    "storage_cpu_ms": 1000 * (sum(process_cpu_s(p) for p in storage) - storage_before) / calls,
                    "load_average_1m": os.getloadavg()[0]}
        finally:
            cluster.down()


def measure_handlers(count: int) -> dict[str, float]:
    """CPU microseconds per call of the Meta handlers run in-process, without gRPC."""
    from fireflyfs.meta_service.namespace import Namespace
    from fireflyfs.meta_service.servicer import MetaServicer
    from fireflyfs.meta_service.store import Store, u32_key
    from fireflyfs.proto import meta_pb2, types_pb2

    class NoStorage:
        def __getattr__(self, name):
            raise AssertionError(f"storage called ({name}) by a metadata-only handler")

    with tempfile.TemporaryDirectory(prefix="ffs-meta-cost-") as tmp:
        store = Store(os.path.join(tmp, "meta.lmdb"))
        with store.write() as txn:
            txn.put_msg("chain_tables", u32_key(1), types_pb2.ChainTable(id=1, version=1, chains=list(range(1, 7)),
                                                                          replicas=1))
        servicer = MetaServicer(Namespace(store, NoStorage(), rng=random.Random(1)), None)
        servicer.Create(meta_pb2.CreateRequest(path="/c/x", inline=True, inline_data=b"x" * 1024, parents=True),
                        None)
        cases = {
            "info (Stat)": lambda i: servicer.Stat(meta_pb2.StatRequest(path="/c/x", follow_symlinks=True), None),
            "touch (Create)": lambda i: servicer.Create(meta_pb2.CreateRequest(
                path=f"/c/t{i}", truncate=True, parents=True, request_id=f"t{i}"), None),
            "touch (Create) without request_id": lambda i: servicer.Create(meta_pb2.CreateRequest(
                path=f"/c/u{i}", truncate=True, parents=True), None),
            "pipe_file (Create inline 1 KiB)": lambda i: servicer.Create(meta_pb2.CreateRequest(
                path=f"/c/p{i}", truncate=True, parents=True, inline=True, inline_data=b"y" * 1024,
                request_id=f"p{i}"), None),
        }
        out = {}
        for name, call in cases.items():
            began = time.process_time()
            for i in range(count):
                call(i)
            out[name] = 1e6 * (time.process_time() - began) / count
        store.close()
        return out


def measure_echo() -> dict[str, float]:
    from fireflyfs.bench.ffs_bench import EchoServer

    with EchoServer() as echo:
        message = b"x" * 64
        for _ in range(200):
            echo.echo(message, timeout=30)
        server_before = process_cpu_s(echo.process.pid)
        client_before, began = time.process_time(), time.perf_counter()
        for _ in range(ECHO_CALLS):
            echo.echo(message, timeout=30)
        elapsed = time.perf_counter() - began
        return {"calls_per_s": ECHO_CALLS / elapsed,
                "client_cpu_ms": 1000 * (time.process_time() - client_before) / ECHO_CALLS,
                "server_cpu_ms": 1000 * (process_cpu_s(echo.process.pid) - server_before) / ECHO_CALLS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default="info,touch,pipe_file")
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = {"echo_64B": measure_echo(), "handlers_us": measure_handlers(args.count), "calls": []}
    for op in args.ops.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            report["calls"].append(measure_cluster(op, threads, args.count))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    echo = report["echo_64B"]
    print(f"64-byte gRPC echo: {echo['calls_per_s']:,.0f}/s, client {echo['client_cpu_ms']:.3f} ms, "
          f"server {echo['server_cpu_ms']:.3f} ms CPU per call")
    for name, micros in report["handlers_us"].items():
        print(f"handler in-process, no gRPC: {name}: {micros:.1f} us CPU per call")
    for row in report["calls"]:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in row["meta_cpu_ms_by_thread"].items())
        print(f"{row['op']} x{row['threads']} threads: {row['calls_per_s']:,.0f}/s; CPU per call: client "
              f"{row['client_cpu_ms']:.3f} ms, meta {row['meta_cpu_ms']:.3f} ms ({parts}), storage "
              f"{row['storage_cpu_ms']:.3f} ms; load {row['load_average_1m']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
