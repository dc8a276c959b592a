"""Metadata operations per second on each engine: create, stat, list, rename, rm.

    python bench/meta_ops.py [--setups lmdb,etcd,etcd2] [--threads 1,16] [--files 2000] [--json]
    python bench/meta_ops.py --failover [--json]

A setup is a local cluster (one storage node, R=1: storage is not what this
measures): ``lmdb`` is the embedded default (one meta server), ``etcd`` one
meta server on a 3-member etcd cluster, ``etcd2`` two meta servers on it
(the client spreads its calls over both). For each thread count, every
thread works in a directory of its own (as mdtest -u does; creates in one
shared directory conflict on the parent's mtime under the etcd engine, and
``--shared-dir`` measures that too), and the phases run in order over the
same files: create (fsspec ``touch``: one Meta.Create), stat, list (one
listing of the thread's whole directory per call), rename, rm. Ratios are against the lmdb setup of the same run, so a busy
machine moves both. The issue's floors (16 threads): etcd creates >= 1,000/s
and etcd stats >= 0.5 x lmdb.

``--failover`` starts 3 etcd members and 2 meta servers, runs a writer
(one inline file create after another) and SIGKILLs first the standby meta
server, then the mgmtd primary, each restarted afterwards; it reports the
seconds from each kill to the writer's first acknowledged create after it,
and from the primary's kill to a new primary in the routing info (the lease
TTL: heartbeat timeout / 3, at least 2 s, plus a poll).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time

from fireflyfs.bench.durable_write_throughput import progress, run_threads

PHASES = ("create", "stat", "list", "rename", "rm")
SETUPS = {"lmdb": dict(meta_engine="lmdb"),
          "etcd": dict(meta_engine="etcd", etcd_members=3, meta_servers=1),
          "etcd2": dict(meta_engine="etcd", etcd_members=3, meta_servers=2)}


def measure_setup(setup: str, thread_counts: list[int], files: int, shared_dir: bool) -> dict:
    import fsspec

    from fireflyfs.client.client import FfsClient
    from fireflyfs.deploy.local_cluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix=f"ffs-meta-ops-{setup}-") as tmp:
        cluster = LocalCluster(tmp, storage_nodes=1, replicas=1, targets_per_node=1, python=sys.executable,
                               **SETUPS[setup])
        try:
            cluster.up()
            client = FfsClient(",".join(cluster.meta_addresses))
            fs = fsspec.filesystem("ffs", addresses=",".join(cluster.meta_addresses), skip_instance_cache=True,
                                   use_listings_cache=False)
            results = {}
            for threads in thread_counts:
                results[str(threads)] = measure_phases(fs, client, f"/bench-{threads}", threads, files,
                                                       shared_dir)
                progress(f"{setup} x{threads}: " + ", ".join(f"{phase} {rate:,.0f}/s"
                                                             for phase, rate in results[str(threads)].items()))
            return results
        finally:
            cluster.down()


def measure_phases(fs, client, base: str, threads: int, files: int, shared_dir: bool) -> dict[str, float]:
    share = max(1, files // threads)
    dirs = [base if shared_dir else f"{base}/t{n}" for n in range(threads)]
    for path in set(dirs):
        client.mkdir(path, parents=True, exist_ok=True)

    def name(n: int, i: int) -> str:
        return f"{dirs[n]}/f{n}-{i}"

    def create(n: int) -> None:
        for i in range(share):
            fs.touch(name(n, i))

    def stat(n: int) -> None:
        for i in range(share):
            client.stat(name(n, i))

    lists = max(1, share // 10)

    def listing(n: int) -> None:
        for _ in range(lists):
            client.listdir(dirs[n])

    def rename(n: int) -> None:
        for i in range(share):
            client.rename(name(n, i), name(n, i) + ".r")

    def remove(n: int) -> None:
        for i in range(share):
            client.remove(name(n, i) + ".r")

    rates = {}
    total = share * threads
    rates["create"] = total / run_threads(threads, create)
    rates["stat"] = total / run_threads(threads, stat)
    rates["list"] = lists * threads / run_threads(threads, listing)
    rates["rename"] = total / run_threads(threads, rename)
    rates["rm"] = total / run_threads(threads, remove)
    return rates


def measure_failover(heartbeat_timeout_ms: int = 3000) -> dict[str, float]:
    """Seconds from SIGKILL to the next acknowledged create: the standby meta server, then the primary."""
    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix="ffs-meta-failover-") as tmp:
        cluster = LocalCluster(tmp, storage_nodes=1, replicas=1, targets_per_node=1, python=sys.executable,
                               heartbeat_timeout_ms=heartbeat_timeout_ms, meta_engine="etcd", etcd_members=3,
                               meta_servers=2)
        try:
            cluster.up()
            fs = fsspec.filesystem("ffs", addresses=",".join(cluster.meta_addresses), skip_instance_cache=True)
            acknowledged = [time.monotonic()]
            stop = threading.Event()

            def write() -> None:
                number = 0
                while not stop.is_set():
                    fs.pipe_file(f"/failover/f{number}", b"x" * 100)
                    acknowledged[0] = time.monotonic()
                    number += 1

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            times = {}
            for kind in ("meta server", "mgmtd primary"):
                time.sleep(1.0)
                routing = cluster.routing()
                primary = next(n.address for n in routing.nodes if n.id == routing.mgmtd_primary_id)
                roles = cluster.meta_roles()
                victim = roles[cluster.meta_addresses.index(primary)]
                if kind == "meta server":
                    victim = next(role for role in roles if role != victim)
                killed = time.monotonic()
                cluster.kill(victim)
                while acknowledged[0] <= killed + 0.01 and writer.is_alive():
                    time.sleep(0.01)
                times[kind] = acknowledged[0] - killed
                progress(f"{kind} killed: next create acknowledged after {times[kind]:.2f} s")
                if kind == "mgmtd primary":
                    while cluster.routing().mgmtd_primary_id in (0, routing.mgmtd_primary_id):
                        time.sleep(0.05)
                    times["new mgmtd primary elected"] = time.monotonic() - killed
                    progress(f"new mgmtd primary elected after {times['new mgmtd primary elected']:.2f} s")
                cluster.up()
            stop.set()
            writer.join(30)
            return times
        finally:
            cluster.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", default="lmdb,etcd,etcd2")
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--files", type=int, default=2000, help="files per phase, split over the threads")
    parser.add_argument("--shared-dir", action="store_true", help="every thread in one directory")
    parser.add_argument("--failover", action="store_true",
                        help="measure the failover times of a meta server and of the mgmtd primary instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.failover:
        times = measure_failover()
        print(json.dumps({"seconds_to_next_create": times}, indent=2) if args.json
              else "\n".join(f"{kind}: {seconds:.2f} s" for kind, seconds in times.items()))
        return 0
    setups = [s for s in args.setups.split(",") if s]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        parser.error(f"unknown setups {unknown}; choose from {', '.join(SETUPS)}")
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    report = {"files": args.files, "shared_dir": args.shared_dir,
              "setups": {setup: measure_setup(setup, thread_counts, args.files, args.shared_dir) for setup in setups}}
    if "lmdb" in report["setups"]:
        base = report["setups"]["lmdb"]
        report["ratio_to_lmdb"] = {
            setup: {threads: {phase: rates[phase] / base[threads][phase] for phase in PHASES}
                    for threads, rates in by_threads.items() if threads in base}
            for setup, by_threads in report["setups"].items() if setup != "lmdb"}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for setup, by_threads in report["setups"].items():
            for threads, rates in by_threads.items():
                ratio = report.get("ratio_to_lmdb", {}).get(setup, {}).get(threads)
                cells = [f"{phase} {rates[phase]:>8,.0f}/s" + (f" ({ratio[phase]:.2f}x)" if ratio else "")
                         for phase in PHASES]
                print(f"{setup:6} {threads:>3} threads: " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
