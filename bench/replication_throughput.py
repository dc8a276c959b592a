"""Write throughput with replication 3 against replication 1, and reads during resync, in one run.

    python bench/replication_throughput.py [--write-size 512MiB] [--read-size 256MiB]
                                           [--resync-size 768MiB] [--repeats 3]
                                           [--read-seconds 4] [--json]

One local cluster with two chain tables, so both replication factors run on the
same machine, processes and code in the same run:
- table 1, replication 3, over storage nodes 1..N (N chains of 3 when each node
  has N targets: every node heads one chain, and one node sits in every chain);
- table 2, replication 1, over storage nodes N+1..2N (a table takes every target
  not yet in a chain, so its nodes register after table 1 exists).
Directory /r3 has chain_table_id 1 in its layout, /r1 chain_table_id 2; the run
checks that each file's stripe lies in its table's chains.

Writes: FfsClient.pwrite of --block bytes (several chunks, written in parallel)
into --files files per table, R=1 and R=3 alternating --repeats times. The
ratio is R=3 MiB/s over R=1 MiB/s (1.0 would mean replication is free).
Before each measurement os.sync() flushes the dirty pages the previous one left,
so kernel writeback of one does not slow the next.

Reads during resync (table 1 only: an R=1 chain has nothing to resync from):
write --read-size bytes into /r3, read them in --block reads for
--read-seconds (all SERVING: the baseline, measured before the kill and again
after the resync; the machine may be shared, so both are shown). SIGKILL storage node 1 (one target of every chain of table 1),
wait until mgmtd marks it OFFLINE, write --resync-size bytes more (the node
misses them), restart it and read the first data set in a loop while a
sampler polls routing every 50 ms. Only reads that start and end while the
sampler sees a SYNCING target count; the output says how many polls saw one,
and the bench fails if none did. Every block read is compared (CRC32C) with
what was written. Progress goes to stderr; --json prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

import crc32c

from fireflyfs.bench.data_plane import child_cpu_s
from fireflyfs.common.limits import MiB
from fireflyfs.common.process_tuning import keep_large_buffers_on_heap
from fireflyfs.common.units import parse_positive_size

HEARTBEAT_TIMEOUT_MS = 2000
SAMPLE_S = 0.05
DETECT_S_MAX = 30.0
SYNC_START_S_MAX = 60.0
RESYNC_S_MAX = 300.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_table(local, table_id: int, replicas: int):
    from fireflyfs.common.rpc import rpc_errors_mapped
    from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

    with local.admin_channel(local.meta_address) as channel, rpc_errors_mapped():
        reply = mgmtd_pb2_grpc.MgmtdStub(channel).CreateChainTable(
            mgmtd_pb2.CreateChainTableRequest(table_id=table_id, replicas=replicas), timeout=30)
    return reply.table


def start_cluster(base_dir: str, nodes_per_table: int, targets_per_node: int, insecure: bool = False,
                  fsync: bool = True):
    """One meta, nodes 1..N in table 1 (R=3), nodes N+1..2N in table 2 (R=1)."""
    from fireflyfs.deploy.local_cluster import LocalCluster

    local = LocalCluster(base_dir, storage_nodes=nodes_per_table, targets_per_node=targets_per_node,
                         replicas=3, heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS, chain_table=False,
                         python=sys.executable, insecure=insecure, fsync=fsync)
    try:
        local.up()
        r3 = create_table(local, 1, 3)
        local.storage_nodes = 2 * nodes_per_table        # the second group registers with free targets
        local.up()
        r1 = create_table(local, 2, 1)
        local.wait_all_serving(timeout_s=60)
    except BaseException:
        local.down()          # no orphaned processes when the setup fails
        raise
    return local, r3, r1


def write_files(client, directory: str, files: int, total: int, block: int, source: bytes) -> tuple[float, list]:
    """Seconds to write total bytes as files of equal size with block-sized pwrites; the handles' paths."""
    per_file = total // files
    view = memoryview(source)
    paths = []
    start = time.perf_counter()
    for number in range(files):
        path = f"{directory}/f{number}-{os.urandom(4).hex()}"
        handle = client.create(path)
        offset = 0
        while offset < per_file:
            n = min(block, per_file - offset)
            client.pwrite(handle, offset, view[:n])
            offset += n
        client.close(handle, per_file)
        paths.append(path)
    return time.perf_counter() - start, paths


def check_tables(client, local, paths_by_table: dict[int, list[str]]) -> dict[int, list[int]]:
    """Each file's stripe lies in its own table's chains; {table id: chain ids used}."""
    from fireflyfs.common.layout import Layout

    client.routing.refresh()
    tables = {t.id: set(t.chains) for t in local.routing().chain_tables}
    used = {}
    for table_id, paths in paths_by_table.items():
        chains: set[int] = set()
        for path in paths:
            inode = client.stat(path)
            layout = Layout.from_proto(inode.layout)
            stripe = client.routing.stripe_chain_ids(layout)
            if layout.chain_table_id != table_id or not set(stripe) <= tables[table_id]:
                raise RuntimeError(f"{path}: layout table {layout.chain_table_id}, chains {stripe}; "
                                   f"expected table {table_id} {sorted(tables[table_id])}")
            chains.update(stripe)
        used[table_id] = sorted(chains)
    return used


class StateSampler(threading.Thread):
    """Polls routing; remembers (time, syncing target ids, all serving?) per poll."""

    def __init__(self, local, table_chains: set[int]) -> None:
        super().__init__(name="state-sampler", daemon=True)
        self.local, self.table_chains = local, table_chains
        self.samples: list[tuple[float, list[int], bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                chains = self.local.chain_states()
            except Exception:  # noqa: BLE001 - a missed poll is only a gap
                time.sleep(SAMPLE_S)
                continue
            mine = [members for cid, members in chains.items() if cid in self.table_chains]
            syncing = [t for members in mine for t, s in members if s == "SYNCING"]
            serving = all(s == "SERVING" for members in mine for _, s in members)
            self.samples.append((time.perf_counter(), syncing, serving))
            time.sleep(SAMPLE_S)

    def syncing_at(self, moment: float) -> bool:
        """Whether the polls around moment (the last before and the first after) both saw SYNCING."""
        before = [s for s in self.samples if s[0] <= moment]
        after = [s for s in self.samples if s[0] >= moment]
        return bool(before and after and before[-1][1] and after[0][1])


def read_blocks(client, handles, block: int, crcs: dict, stop_when, time_s_max: float,
                passes_max: int = 1 << 30) -> list[tuple[float, float, int]]:
    """Read every file in block reads, pass after pass, until stop_when(), time_s_max or passes_max;
    verify each block. Returns (start, end, bytes) per read."""
    reads = []
    deadline = time.perf_counter() + time_s_max
    for _ in range(passes_max):
        for handle in handles:
            for offset in range(0, handle.length, block):
                if stop_when() or time.perf_counter() > deadline:
                    return reads
                start = time.perf_counter()
                data = client.pread(handle, offset, block)
                end = time.perf_counter()
                if crc32c.crc32c(data) != crcs[(handle.path, offset)]:
                    raise RuntimeError(f"{handle.path} @{offset}: read different bytes than were written")
                reads.append((start, end, len(data)))
    return reads


def read_for(client, handles, block: int, crcs: dict, seconds: float) -> list[tuple[float, float, int]]:
    """Whole passes' worth of block reads, for at least one pass and about seconds."""
    end = time.perf_counter() + seconds
    reads = read_blocks(client, handles, block, crcs, lambda: False, 120.0, passes_max=1)
    return reads + read_blocks(client, handles, block, crcs, lambda: time.perf_counter() > end, 120.0)


def throughput(reads: list[tuple[float, float, int]]) -> tuple[float, int, float]:
    """(MiB/s, bytes, seconds) over back-to-back reads."""
    if not reads:
        return 0.0, 0, 0.0
    total = sum(n for _, _, n in reads)
    seconds = sum(end - start for start, end, _ in reads)
    return total / MiB / seconds, total, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-size", type=parse_positive_size, default=512 * MiB,
                        help="bytes per table per repeat (default 512MiB)")
    parser.add_argument("--read-size", type=parse_positive_size, default=256 * MiB,
                        help="data set read during resync (default 256MiB)")
    parser.add_argument("--resync-size", type=parse_positive_size, default=768 * MiB,
                        help="written while a node is down, so it has that much to resync (default 768MiB)")
    parser.add_argument("--block", type=parse_positive_size, default=16 * MiB,
                        help="bytes per pwrite/pread (default 16MiB: 4 chunks in parallel)")
    parser.add_argument("--files", type=int, default=4, help="files per measurement (default 4)")
    parser.add_argument("--read-seconds", type=float, default=4.0,
                        help="how long each all-SERVING read measurement runs (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="R=1/R=3 write rounds, alternating (default 3)")
    parser.add_argument("--nodes-per-table", type=int, default=3)
    parser.add_argument("--targets-per-node", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the cluster directory")
    parser.add_argument("--insecure", action="store_true",
                        help="a cluster without TLS or tokens: what replication costs apart from encryption")
    parser.add_argument("--no-fsync", action="store_true",
                        help="storage and meta with --no-fsync: on one machine every replica syncs "
                             "to the same disk, so R=3 writes three times the bytes through one "
                             "device; without fsync the ratio shows what the software costs, as "
                             "hosts with a disk each would see")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.nodes_per_table < 3 or args.files < 1 or args.repeats < 1:
        parser.error("--nodes-per-table must be >= 3 (replication 3); --files and --repeats >= 1")

    from fireflyfs.client.client import FfsClient
    from fireflyfs.client.config import ClientConfig

    malloc_tuned = keep_large_buffers_on_heap()
    tmp_dir = tempfile.mkdtemp(prefix="ffs-bench-repl-")
    local = None
    result: dict = {}
    started = time.perf_counter()
    try:
        progress(f"starting a cluster in {tmp_dir}: {args.nodes_per_table} nodes for R=3, "
                 f"{args.nodes_per_table} for R=1, {args.targets_per_node} targets each ...")
        local, r3_table, r1_table = start_cluster(tmp_dir, args.nodes_per_table, args.targets_per_node,
                                                  args.insecure, not args.no_fsync)
        client = FfsClient(local.meta_address, config=ClientConfig(retry_time_s=120.0))
        client.mkdir("/r3", chain_table_id=1)
        client.mkdir("/r1", chain_table_id=2)
        source = os.urandom(args.block)

        # ---- write throughput, R=1 and R=3 alternating --------------------------------------
        for directory in ("/r1", "/r3"):        # warm up: connections, first chunk files of every chain
            write_files(client, directory, 1, 4 * args.block, args.block, source)
        write_s = {1: [], 3: []}
        cpu_s = {1: [], 3: []}
        paths = {1: [], 3: []}
        n = args.nodes_per_table
        storage_pids = {3: [local.pid(f"storage-{i}") for i in range(1, n + 1)],
                        1: [local.pid(f"storage-{i}") for i in range(n + 1, 2 * n + 1)]}
        for repeat in range(args.repeats):
            for replicas, directory in ((1, "/r1"), (3, "/r3")):
                progress(f"write {args.write_size / MiB:.0f} MiB with R={replicas} (repeat {repeat + 1}) ...")
                os.sync()     # each measurement starts with no dirty pages left by the one before
                cpu_before = sum(child_cpu_s(pid) for pid in storage_pids[replicas])
                seconds, written = write_files(client, directory, args.files, args.write_size, args.block, source)
                cpu_s[replicas].append(sum(child_cpu_s(pid) for pid in storage_pids[replicas]) - cpu_before)
                write_s[replicas].append(seconds)
                paths[replicas] += written
        used = check_tables(client, local, {1: paths[3], 2: paths[1]})
        written_bytes = args.files * (args.write_size // args.files)
        mib_s = {r: [written_bytes / MiB / s for s in write_s[r]] for r in (1, 3)}
        # CPU seconds the table's storage processes spent per GiB the client wrote (all replicas).
        cpu_per_gib = {r: [c / (written_bytes / (1 << 30)) for c in cpu_s[r]] for r in (1, 3)}
        # The files stay: removing them would start GC, which would compete with the reads below.

        # ---- reads, all SERVING, then while node 1 resyncs -------------------------------------
        progress(f"write the {args.read_size / MiB:.0f} MiB read set into /r3 ...")
        _, read_paths = write_files(client, "/r3", args.files, args.read_size, args.block, source)
        handles = [client.open(path) for path in read_paths]
        crcs = {(h.path, offset): crc32c.crc32c(source[:min(args.block, h.length - offset)])
                for h in handles for offset in range(0, h.length, args.block)}
        os.sync()
        progress("read it, every target SERVING ...")
        read_blocks(client, handles[:1], args.block, crcs, lambda: False, 60.0, passes_max=1)   # warm up
        serving_mib_s, serving_bytes, serving_s = throughput(read_for(client, handles, args.block, crcs,
                                                                      args.read_seconds))

        victim = 1
        progress(f"SIGKILL storage node {victim}; wait until it is OFFLINE ...")
        local.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + DETECT_S_MAX
        while not all(s == "OFFLINE" for members in local.chain_states().values() for t, s in members
                      if t // 100 == victim):
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {victim} not OFFLINE after {DETECT_S_MAX:.0f}s: {local.chain_states()}")
            time.sleep(0.1)
        progress(f"write {args.resync_size / MiB:.0f} MiB while it is down ...")
        down_write_s, _ = write_files(client, "/r3", args.files, args.resync_size, args.block, source)
        sampler = StateSampler(local, set(r3_table.chains))
        sampler.start()
        progress(f"restart node {victim}; read while it resyncs ...")
        restart_at = time.perf_counter()
        local.up()
        deadline = time.monotonic() + SYNC_START_S_MAX
        while not any(s[1] for s in sampler.samples):
            if time.monotonic() > deadline or any(s[2] for s in sampler.samples if s[0] > restart_at):
                raise RuntimeError("no target of the R=3 table was seen SYNCING after the restart; "
                                   f"chains: {local.chain_states()} (try a larger --resync-size)")
            time.sleep(0.01)
        sync_reads = read_blocks(client, handles, args.block, crcs,
                                 lambda: bool(sampler.samples) and sampler.samples[-1][2], RESYNC_S_MAX)
        local.wait_all_serving(timeout_s=RESYNC_S_MAX)
        progress("read it again, every target SERVING ...")
        after_mib_s, after_bytes, after_s = throughput(read_for(client, handles, args.block, crcs, args.read_seconds))
        resync_done_at = next((s[0] for s in sampler.samples if s[2] and s[0] > restart_at), time.perf_counter())
        sampler.stop.set()
        sampler.join()
        during = [r for r in sync_reads if sampler.syncing_at(r[0]) and sampler.syncing_at(r[1])]
        window = [s for s in sampler.samples if sync_reads and sync_reads[0][0] <= s[0] <= sync_reads[-1][1]]
        polls_syncing = sum(1 for s in window if s[1])
        syncing_targets = sorted({t for s in window for t in s[1]})
        if not during or not polls_syncing:
            raise RuntimeError(f"no read ran while a target was SYNCING ({len(sync_reads)} reads, "
                               f"{polls_syncing} of {len(window)} polls saw SYNCING); try a larger --resync-size")
        sync_mib_s, sync_bytes, sync_s = throughput(during)

        result = {
            "write": {
                "bytes_per_measurement": written_bytes, "block_bytes": args.block, "files": args.files,
                "repeats": args.repeats,
                "r1_mib_s": [round(v, 1) for v in mib_s[1]], "r3_mib_s": [round(v, 1) for v in mib_s[3]],
                "r1_mib_s_median": round(statistics.median(mib_s[1]), 1),
                "r3_mib_s_median": round(statistics.median(mib_s[3]), 1),
                "r3_over_r1": round(statistics.median(mib_s[3]) / statistics.median(mib_s[1]), 3),
                # Each repeat's pair ran back to back: less exposed to load that drifts over the run.
                "r3_over_r1_per_repeat": [round(b / a, 3) for a, b in zip(mib_s[1], mib_s[3])],
                "storage_cpu_s_per_gib_r1": [round(v, 2) for v in cpu_per_gib[1]],
                "storage_cpu_s_per_gib_r3": [round(v, 2) for v in cpu_per_gib[3]],
                "storage_cpu_r3_over_r1": round(statistics.median(cpu_per_gib[3])
                                                / statistics.median(cpu_per_gib[1]), 2),
                "chains_used": {"r3_table_1": used[1], "r1_table_2": used[2]},
            },
            "read": {
                "read_set_bytes": args.files * (args.read_size // args.files),
                "all_serving_mib_s": round(serving_mib_s, 1), "all_serving_bytes": serving_bytes,
                "all_serving_s": round(serving_s, 3),
                "during_resync_mib_s": round(sync_mib_s, 1), "during_resync_bytes": sync_bytes,
                "during_resync_s": round(sync_s, 3),
                "all_serving_after_mib_s": round(after_mib_s, 1), "all_serving_after_bytes": after_bytes,
                "all_serving_after_s": round(after_s, 3),
                "during_over_serving": round(sync_mib_s / serving_mib_s, 3) if serving_mib_s else None,
                "during_over_serving_after": round(sync_mib_s / after_mib_s, 3) if after_mib_s else None,
                "written_while_down_bytes": args.files * (args.resync_size // args.files),
                "written_while_down_mib_s": round(args.resync_size / MiB / down_write_s, 1),
                "resync_s": round(resync_done_at - restart_at, 2),
                "reads_during_resync": len(during), "reads_after_restart": len(sync_reads),
                "syncing_verified": polls_syncing > 0 and bool(during),
                "polls_in_read_window": len(window), "polls_seeing_syncing": polls_syncing,
                "syncing_targets_seen": syncing_targets,
            },
            "nodes_per_table": args.nodes_per_table, "targets_per_node": args.targets_per_node,
            "r3_chains": list(r3_table.chains), "r1_chains": list(r1_table.chains),
            "malloc_tuned": malloc_tuned, "cpus": os.cpu_count(), "insecure": args.insecure,
            "fsync": not args.no_fsync,
            "chain_forward": os.environ.get("FFS_CHAIN_FORWARD", "bulk"),
            "duration_s": round(time.perf_counter() - started, 1),
        }
    finally:
        if local is not None:
            local.down()
        if not args.keep:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    if args.json:
        print(json.dumps(result))
    else:
        w, r = result["write"], result["read"]
        print(f"write, {w['bytes_per_measurement'] / MiB:.0f} MiB x {w['repeats']} per replication factor, "
              f"{args.block / MiB:.0f} MiB pwrites into {w['files']} files:")
        print(f"  replication 1 (table 2, chains {w['chains_used']['r1_table_2']}): "
              f"{w['r1_mib_s_median']:>8.1f} MiB/s  {w['r1_mib_s']}")
        print(f"  replication 3 (table 1, chains {w['chains_used']['r3_table_1']}): "
              f"{w['r3_mib_s_median']:>8.1f} MiB/s  {w['r3_mib_s']}")
        print(f"  ratio R=3 / R=1: {w['r3_over_r1']:.3f} of the medians; per repeat {w['r3_over_r1_per_repeat']}")
        print(f"  storage CPU s per GiB written: R=1 {w['storage_cpu_s_per_gib_r1']}, R=3 "
              f"{w['storage_cpu_s_per_gib_r3']}; R=3 / R=1 {w['storage_cpu_r3_over_r1']:.2f}")
        print(f"read, {r['read_set_bytes'] / MiB:.0f} MiB set on the R=3 table, {args.block / MiB:.0f} MiB preads:")
        print(f"  every target SERVING, before:  {r['all_serving_mib_s']:>8.1f} MiB/s")
        print(f"  node 1 resyncing (one target of every chain): {r['during_resync_mib_s']:>8.1f} MiB/s "
              f"({r['during_over_serving']:.3f} of the above; {r['reads_during_resync']} reads, "
              f"{r['during_resync_bytes'] / MiB:.0f} MiB)")
        print(f"  every target SERVING, after:   {r['all_serving_after_mib_s']:>8.1f} MiB/s "
              f"(resyncing/after {r['during_over_serving_after']:.3f})")
        print(f"  SYNCING verified: {r['polls_seeing_syncing']} of {r['polls_in_read_window']} routing polls in the "
              f"read window saw targets {r['syncing_targets_seen']} SYNCING; resync of "
              f"{r['written_while_down_bytes'] / MiB:.0f} MiB written while down took {r['resync_s']:.1f}s")
        print(f"total {result['duration_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
