"""The asyncio face against the threaded path, in one run on one cluster: which engine to keep.

    python bench/fsspec_async.py [--small-files 2000] [--medium-files 500] [--large-files 16]
                                 [--large-mib 8] [--concurrency 64] [--repeats 3]
                                 [--engines threads,async,...] [--json]

Starts a local cluster (3 storage nodes of 2 targets, R=1, TLS and tokens as
deployed), writes ``--small-files`` files of 4 KiB (inline: their bytes live in
meta), ``--medium-files`` of 64 KiB and ``--large-files`` of ``--large-mib`` MiB, then runs each
workload on each engine with ``--concurrency`` calls in flight, best of
``--repeats``, engines interleaved in every round so that load on a shared
machine hits them alike:

  info        info of every small file (one Meta.Stat each, or shared RPCs)
  cat_small   cat_file of every small file (one Meta.Open each: the bytes come inline)
  cat_medium  cat_file of ``--medium-files`` files of 64 KiB (Meta.Open, then one chunk read each)
  cat_large   cat_file of every large file (Meta.Open, then chunk reads over the bulk protocol)
  cat_ranges  calls of cat_ranges, 256 random 4 KiB ranges of the large files each
  pipe_small  pipe_file of ``--small-files`` files of 4 KiB (one inline Meta.Create each; every
              round replaces the files of the last)

Engines:

  threads         the sync face (``FireflyFileSystem``) called from ``--concurrency`` threads:
                  the threaded path, what a program without an event loop runs
  async           the async face (``FireflyFileSystem(asynchronous=True)``) under asyncio's loop,
                  ``--concurrency`` coroutines at once through ``fsspec.asyn._run_coros_in_chunks``:
                  coroutines over the client's threads (client/fsspec_async.py, the kept engine)
  async-uvloop    the same under uvloop
  native-uvloop   the engine not kept, a prototype that lives here only: grpc.aio Meta calls and
                  the bulk READ frame over asyncio streams (TLS, CRC32C checked), with the sync
                  client's routing table; none of the client's retries, failover or coalescing
  native-asyncio  the same under asyncio's loop

Each row gives calls/s (MiB/s for cat_large) and the CPU this process spent
per call (process_time: every thread, the gRPC core's included), and the
ratio of each engine to ``threads``. CPU per call is steadier than wall time
on a shared 2-core VM, where client and servers compete for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from fireflyfs.common.limits import KiB, MiB

SMALL_BYTES = 4 * KiB
MEDIUM_BYTES = 64 * KiB
RANGES_PER_CALL = 256
RANGE_BYTES = 4 * KiB
WORKLOADS = ("info", "cat_small", "cat_medium", "cat_large", "cat_ranges", "pipe_small")
NATIVE_WORKLOADS = ("info", "cat_small", "cat_medium", "cat_large", "cat_ranges")   # the prototype reads only
ENGINES = ("threads", "async", "async-uvloop", "native-uvloop", "native-asyncio")
node_connections_max = 32   # the native engine's bulk connections per storage node (a node takes 256 per peer)


# ---- the native engine: a prototype kept here to be measured, not in the library ----------------

class NativeEngine:
    """Meta over grpc.aio and chunk reads over asyncio streams, on the running loop.

    Made inside the loop it runs on (grpc.aio channels and streams belong to one
    loop). It borrows the sync client's routing table and TLS settings, which
    the caller warmed up; it has no retries, no failover and no coalescing, so
    it measures the best case of a native engine, not a finished one.
    """

    def __init__(self, fs) -> None:
        import grpc

        from fireflyfs.common import auth, rpc
        from fireflyfs.common.tls import process_tls
        from fireflyfs.proto import meta_pb2_grpc

        address = fs.addresses.split(",")[0]
        credentials = rpc.process_security.channel_credentials
        options = list(rpc.CHANNEL_OPTIONS)
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        else:
            if rpc.process_security.target_name_override:
                options.append(("grpc.ssl_target_name_override", rpc.process_security.target_name_override))
            self.channel = grpc.aio.secure_channel(address, credentials, options=options)
        self.stub = meta_pb2_grpc.MetaStub(self.channel)
        token = fs.client.token
        self.metadata = ((auth.AUTH_METADATA_KEY, auth.BEARER + token),) if token else ()
        self.routing = fs.client.routing
        self.tls = process_tls.bulk_client
        self.idle: dict[str, list] = {}     # bulk address -> idle (reader, writer) pairs
        self.slots: dict[str, asyncio.Semaphore] = {}   # bulk address -> connections it may have

    async def close(self) -> None:
        for connections in self.idle.values():
            for _reader, writer in connections:
                writer.close()
        await self.channel.close()

    async def _meta(self, method: str, request):
        import grpc

        from fireflyfs.common.rpc import error_from_rpc
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def info(self, path: str):
        from fireflyfs.proto import meta_pb2
        return (await self._meta("Stat", meta_pb2.StatRequest(path=path, follow_symlinks=True))).inode

    async def cat_file(self, path: str) -> bytes:
        from fireflyfs.proto import meta_pb2
        reply = await self._meta("Open", meta_pb2.OpenRequest(path=path, inline_ok=True))
        if reply.inline_data:
            return reply.inline_data
        return await self._read(reply.inode, reply.capability, [(0, reply.inode.length)])[0]

    async def cat_ranges(self, paths: list[str], starts: list[int], ends: list[int]) -> list[bytes]:
        from fireflyfs.common.errors import error_from_name
        from fireflyfs.proto import meta_pb2
        unique = list(dict.fromkeys(paths))
        reply = await self._meta("BatchStat", meta_pb2.BatchStatRequest(paths=unique, follow_symlinks=True,
                                                                        inline_ok=True))
        opened = {}
        for path, result in zip(unique, reply.results):
            if result.error:
                raise error_from_name(result.error, result.message)
            opened[path] = result
        by_file: dict[str, list[int]] = {}
        for slot, path in enumerate(paths):
            by_file.setdefault(path, []).append(slot)
        out: list = [None] * len(paths)
        jobs, slots = [], []
        for path, file_slots in by_file.items():
            result = opened[path]
            jobs.append(self._gather_read(result.inode, result.capability,
                                          [(starts[s], ends[s] - starts[s]) for s in file_slots]))
            slots.append(file_slots)
        for file_slots, datas in zip(slots, await asyncio.gather(*jobs)):
            for slot, data in zip(file_slots, datas):
                out[slot] = data
        return out

    async def _gather_read(self, inode, capability: bytes, ranges) -> list[bytes]:
        return await asyncio.gather(*self._read(inode, capability, ranges))

    def _read(self, inode, capability: bytes, ranges: list[tuple[int, int]]) -> list:
        """One awaitable per (offset, length): chunk pieces grouped into one READ frame per node."""
        from fireflyfs.common.layout import Layout
        layout = Layout.from_proto(inode.layout)
        per_node: dict[str, list] = {}          # bulk address -> [(io, range number, place)]
        sizes = []
        for number, (offset, length) in enumerate(ranges):
            length = max(0, min(length, inode.length - offset))
            sizes.append(length)
            place = 0
            for index, within, piece in layout.chunk_ranges(offset, length):
                route = self.routing.chain_for(layout, index, for_write=False)
                io = (route.chain_id, route.chain_version, inode.id, index, within, piece)
                per_node.setdefault(route.bulk_address, []).append((io, number, place))
                place += piece
        outs = [bytearray(size) for size in sizes]
        frames = [self._read_frame(address, items, capability, outs) for address, items in per_node.items()]
        done = asyncio.ensure_future(asyncio.gather(*frames))

        async def one(number: int) -> bytes:
            await asyncio.shield(done)
            return bytes(outs[number])
        return [one(number) for number in range(len(ranges))]

    async def _connection(self, address: str):
        idle = self.idle.setdefault(address, [])
        if idle:
            return idle.pop()
        host, _, port = address.rpartition(":")
        return await asyncio.open_connection(host, int(port), ssl=self.tls,
                                             server_hostname=host if self.tls else None)

    async def _read_frame(self, address: str, items, capability: bytes, outs: list[bytearray]) -> None:
        slots = self.slots.get(address)
        if slots is None:
            slots = self.slots[address] = asyncio.Semaphore(node_connections_max)
        async with slots:
            await self._read_frame_on(address, items, capability, outs)

    async def _read_frame_on(self, address: str, items, capability: bytes, outs: list[bytearray]) -> None:
        from fireflyfs.client.bulk_client import _crcs_match
        from fireflyfs.proto import bulk_wire as wire
        ios = [io for io, _number, _place in items]
        reader, writer = await self._connection(address)
        writer.write(wire.header(wire.OP_READ, len(ios), len(ios) * wire.READ_IO.size + len(capability), 0)
                     + b"".join(wire.READ_IO.pack(*io) for io in ios) + capability)
        op, status, count, meta_len, data_len = wire.parse_header(await reader.readexactly(wire.HEADER.size))
        meta = await reader.readexactly(meta_len)
        if status == wire.STATUS_ERROR:
            raise wire.error_from_text(meta, f"bulk read on {address}")
        wire.check_reply(op, wire.OP_READ, count, len(ios), meta_len, data_len, sum(io[5] for io in ios))
        data = memoryview(await reader.readexactly(data_len))
        self.idle[address].append((reader, writer))
        heads_at, data_at = len(ios) * wire.READ_HEAD.size, 0
        for (io, number, place), head in zip(items, wire.READ_HEAD.iter_unpack(meta[:heads_at])):
            error_len, io_len, block_size, _chunk_length, _version = head
            if error_len:
                raise wire.error_from_text(meta[heads_at:heads_at + error_len], f"bulk read on {address}")
            piece = data[data_at:data_at + io_len]
            if io_len and not _crcs_match(piece, io[4], io_len, block_size, meta, heads_at):
                raise OSError(f"CRC32C mismatch in chunk {io[2]}:{io[3]} from {address}")
            heads_at += 4 * wire.segment_count(io[4], io_len, block_size) if io_len else 0
            outs[number][place:place + io_len] = piece
            data_at += io_len


# ---- running one workload on one engine ---------------------------------------------------------

def _calls(workload: str, small: list[str], medium: list[str], large: list[str], large_bytes: int,
           rng: random.Random):
    """The calls of one round: (kind, args) tuples every engine runs alike."""
    if workload == "info":
        return [("info", (path,)) for path in small]
    if workload == "cat_small":
        return [("cat_file", (path,)) for path in small]
    if workload == "pipe_small":
        payload = bytes(SMALL_BYTES)
        return [("pipe_file", (f"/bench-async/pipe/{n:06d}", payload)) for n in range(len(small))]
    if workload == "cat_medium":
        return [("cat_file", (path,)) for path in medium]
    if workload == "cat_large":
        return [("cat_file", (path,)) for path in large]
    calls = []
    for _ in range(max(8, len(small) // 50)):
        paths = [rng.choice(large) for _ in range(RANGES_PER_CALL)]
        starts = [rng.randrange(large_bytes // RANGE_BYTES) * RANGE_BYTES for _ in range(RANGES_PER_CALL)]
        calls.append(("cat_ranges", (paths, starts, [start + RANGE_BYTES for start in starts])))
    return calls


def run_threads(fs, calls, concurrency: int) -> list:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda call: getattr(fs, call[0])(*call[1]), calls))


async def run_async(fs, calls, concurrency: int) -> list:
    from fsspec.asyn import _run_coros_in_chunks
    return await _run_coros_in_chunks([getattr(fs, "_" + kind)(*args) for kind, args in calls],
                                      batch_size=concurrency)


async def run_native(fs, calls, concurrency: int) -> list:
    from fsspec.asyn import _run_coros_in_chunks
    engine = NativeEngine(fs)
    try:
        return await _run_coros_in_chunks([getattr(engine, kind)(*args) for kind, args in calls],
                                          batch_size=concurrency)
    finally:
        await engine.close()


def run_loop(main, loop_name: str):
    """Run main on a new loop of the kind named; its result comes back through a list, because
    Python 3.11's asyncio.run formats the repr of the main task (result included) when it restores
    the SIGINT handler: a 128 MiB result cost ~0.5 s of CPU per run."""
    holder: list = []

    async def keep() -> None:
        holder.append(await main)
    if loop_name == "uvloop":
        import uvloop
        uvloop.run(keep())
    else:
        asyncio.run(keep())
    return holder[0]


def run_engine(engine: str, sync_fs, async_fs, calls, concurrency: int) -> list:
    if engine == "threads":
        return run_threads(sync_fs, calls, concurrency)
    kind, _, loop_name = engine.partition("-")
    if kind == "async":
        return run_loop(run_async(async_fs, calls, concurrency), loop_name or "asyncio")
    return run_loop(run_native(sync_fs, calls, concurrency), loop_name)


def measure(engines: list[str], sync_fs, async_fs, small, medium, large, large_bytes: int, concurrency: int,
            repeats: int, expected: dict[str, bytes]) -> dict:
    """Per workload and engine: the best round's calls/s (and MiB/s) with its CPU per call."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    rng = random.Random(7)
    for workload in WORKLOADS:
        rows = results[workload] = {}
        for round_number in range(repeats):
            calls = _calls(workload, small, medium, large, large_bytes, rng)
            for engine in engines:
                if engine.startswith("native") and workload not in NATIVE_WORKLOADS:
                    continue
                # A warm-up call first (connections, routing), untimed.
                run_engine(engine, sync_fs, async_fs, calls[:concurrency], concurrency)
                cpu, start = time.process_time(), time.perf_counter()
                outcome = run_engine(engine, sync_fs, async_fs, calls, concurrency)
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu
                check(workload, calls, outcome, expected)
                moved = sum(len(part) for data in outcome for part in (data if isinstance(data, list) else
                                                                       [data] if isinstance(data, bytes) else []))
                row = {"calls_s": len(calls) / wall, "cpu_us_per_call": cpu / len(calls) * 1e6}
                if workload == "cat_large":
                    row["mib_s"] = moved / MiB / wall
                if row["calls_s"] > rows.get(engine, {}).get("calls_s", 0.0):
                    rows[engine] = row
            print(f"{workload} round {round_number + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {workload: {engine: {key: round(value, 1) for key, value in row.items()}
                       for engine, row in rows.items()} for workload, rows in results.items()}


def check(workload: str, calls, outcome: list, expected: dict[str, bytes]) -> None:
    """Every engine returned the right bytes (a fast wrong engine is not faster)."""
    if len(outcome) != len(calls):
        raise AssertionError(f"{workload}: {len(outcome)} results for {len(calls)} calls")
    for (kind, args), result in zip(calls, outcome):
        if kind == "pipe_file" and result is not None:
            raise AssertionError(f"{workload}: pipe_file returned {result!r}")
        if kind == "cat_file" and result != expected[args[0]]:
            raise AssertionError(f"{workload}: wrong bytes for {args[0]}")
        if kind == "cat_ranges":
            for path, start, end, data in zip(*args, result):
                if data != expected[path][start:end]:
                    raise AssertionError(f"{workload}: wrong range {start}:{end} of {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--medium-files", type=int, default=500)
    parser.add_argument("--large-files", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, of: " + " ".join(ENGINES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    engines = [engine for engine in args.engines.split(",") if engine]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or "threads" not in engines:
        parser.error(f"engines are {', '.join(ENGINES)}; threads is needed (the ratios' base): {unknown}")

    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    tmp_dir = tempfile.mkdtemp(prefix="ffs-bench-async-")
    local = LocalCluster(tmp_dir, storage_nodes=3, targets_per_node=2, replicas=1, python=sys.executable)
    report: dict[str, object] = {"small_files": args.small_files, "medium_files": args.medium_files,
                                 "large_files": args.large_files,
                                 "large_mib": args.large_mib, "concurrency": args.concurrency,
                                 "repeats": args.repeats}
    try:
        local.up()
        sync_fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
        async_fs = fsspec.filesystem("ffs", host=local.host, port=local.port, asynchronous=True,
                                     skip_instance_cache=True)
        print("writing files ...", file=sys.stderr, flush=True)
        expected: dict[str, bytes] = {}
        small = [f"/bench-async/small/{n:06d}" for n in range(args.small_files)]
        medium = [f"/bench-async/medium/{n:06d}" for n in range(args.medium_files)]
        large = [f"/bench-async/large/{n:03d}" for n in range(args.large_files)]
        for path in small:
            expected[path] = os.urandom(SMALL_BYTES)
        for path in medium:
            expected[path] = os.urandom(MEDIUM_BYTES)
        sync_fs.pipe(dict(expected))
        large_bytes = args.large_mib * MiB
        for path in large:
            expected[path] = os.urandom(large_bytes)
            sync_fs.pipe_file(path, expected[path])
        report["results"] = measure(engines, sync_fs, async_fs, small, medium, large, large_bytes,
                                    args.concurrency,
                                    args.repeats, expected)
    finally:
        local.down()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    results = report["results"]
    report["ratio_to_threads"] = {
        workload: {engine: round(row["calls_s"] / rows["threads"]["calls_s"], 2) for engine, row in rows.items()}
        for workload, rows in results.items()}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.small_files} files of 4 KiB, {args.medium_files} of 64 KiB, {args.large_files} of "
          f"{args.large_mib} MiB, R=1, "
          f"{args.concurrency} calls in flight, best of {args.repeats}")
    print(f"{'workload':<12}{'engine':<16}{'calls/s':>10}{'MiB/s':>9}{'cpu us/call':>13}{'x threads':>11}")
    for workload, rows in results.items():
        for engine, row in rows.items():
            mib = f"{row['mib_s']:.0f}" if "mib_s" in row else ""
            print(f"{workload:<12}{engine:<16}{row['calls_s']:>10.0f}{mib:>9}{row['cpu_us_per_call']:>13.0f}"
                  f"{report['ratio_to_threads'][workload][engine]:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
