"""``ffs bench``: FireflyFS next to this machine's own limits, measured in the same run.

    ffs bench [--url ffs://HOST:PORT] [--full] [--json] [--only sequential,random,small] ...

What runs (each measurement stops at its count or its time budget, whichever
comes first, so a default run takes about a minute or two):

sequential   a file of ``seq_bytes`` written through ``fsspec`` open("wb") in
             ``block_bytes`` writes from one reused buffer; read back with
             ``readinto`` calls into one reused buffer; and with one ``f.read()``.
             Limits: one loopback TCP stream of the same byte pattern (sender in a
             second process; the receiver ``recv_into`` a reused buffer, and a fresh
             buffer of the whole size next to ``f.read()``), and the local disk
             through the local filesystem (the same writes and reads on a tmp file,
             no fsync; FireflyFS fdatasyncs before each ack unless its services run
             with --no-fsync, docs/durability.md).
random       reads of 4 KiB and 1 MiB at random aligned offsets of that file,
             through ``FfsClient.read_batch`` (one call = one batch of B requests
             into one reused buffer, B = 1, 16, 256 / 1, 4, 16) and through fsspec
             ``cat_ranges`` with B ranges per call. Limit: ``os.pread`` of the same
             offsets on the local tmp file.
small files  ``small_files`` files of ``small_file_bytes``: create+write
             (``pipe_file``), ``touch``, stat (``info``), list (``ls``), read
             (``cat_file``), delete (``rm_file``) from one thread, then info, touch,
             pipe and read from ``threads`` threads. Limits: the same operations on
             the local filesystem, and for metadata calls a 64-byte gRPC echo round
             trip (server in a second process), the floor of any one-RPC operation.

Each FireflyFS figure is printed with its limit and the ratio to it, and the
issue's targets are checked (informational: a busy machine moves every figure;
compare within one run). Throughput is MiB/s (2**20 bytes), rates are
operations per second, latencies are per call (a batch call counts once).

The logic lives here (``run(BenchConfig) -> BenchReport``) so scripts can reuse
it; ``cli/bench.py`` is the command line and the progress display.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterable

from fireflyfs.common.limits import GiB, KiB, MiB
from fireflyfs.common.process_tuning import keep_large_buffers_on_heap


GROUPS = ("sequential", "random", "small")


# ---- configuration ------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class BenchConfig:
    """Sizes, counts and time budgets of one run; ``full()`` gives the issue's sizes."""

    url: str | None = None                     # None: start a LocalCluster in a tmp dir
    groups: tuple[str, ...] = GROUPS
    seq_bytes: int = 256 * MiB
    block_bytes: int = 4 * MiB
    repeats: int = 1                           # sequential rounds; each figure is the best
    random_small_bytes: int = 4 * KiB
    random_large_bytes: int = 1 * MiB
    random_small_batches: tuple[int, ...] = (1, 16, 256)
    random_large_batches: tuple[int, ...] = (1, 4, 16)
    random_small_requests: int = 50_000        # per batch size (time budget caps small batches)
    random_large_requests: int = 512
    small_files: int = 1_000
    small_file_bytes: int = 1 * KiB
    threads: int = 16
    seconds_max: float = 4.0                   # per measurement
    storage_nodes: int = 3
    targets_per_node: int = 2
    replicas: int = 1
    seed: int = 0
    tmp_dir: str | None = None                 # where the local cluster and the disk limits live

    @classmethod
    def full(cls, **overrides: Any) -> "BenchConfig":
        """The issue's sizes: a 1 GiB file, more requests and files, longer budgets."""
        values = dict(seq_bytes=1 * GiB, repeats=2, random_small_requests=200_000,
                      random_large_requests=2_048, small_files=5_000, seconds_max=15.0)
        values.update(overrides)
        return cls(**values)

    def check(self) -> None:
        if self.block_bytes <= 0 or self.seq_bytes < self.block_bytes:
            raise ValueError("seq_bytes must hold at least one block")
        if self.random_large_bytes > self.seq_bytes:
            raise ValueError("random reads need a file of at least random_large_bytes")
        unknown = set(self.groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown benchmark groups {sorted(unknown)}; choose from {GROUPS}")
        if self.threads < 1 or self.small_files < 1 or self.seconds_max <= 0 or self.repeats < 1:
            raise ValueError("threads, small_files, repeats and seconds_max must be positive")


# ---- results ------------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class Measurement:
    ops: int
    seconds: float
    bytes: int = 0
    latencies_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, fraction: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclasses.dataclass(slots=True)
class Figure:
    """One measured figure; FireflyFS figures name the limit they are compared with."""

    group: str
    name: str
    system: str                       # "ffs" or "limit"
    unit: str                         # "MiB/s" or "ops/s"
    value: float
    ops: int
    bytes: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    note: str = ""
    limit: str | None = None
    limit_value: float | None = None
    ratio: float | None = None
    target: str | None = None
    target_met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class BenchReport:
    config: dict[str, Any]
    url: str
    figures: list[Figure]
    environment: dict[str, Any]

    def ffs(self) -> list[Figure]:
        return [f for f in self.figures if f.system == "ffs"]

    def limits(self) -> list[Figure]:
        return [f for f in self.figures if f.system == "limit"]

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "config": self.config, "environment": self.environment,
                "limits": [f.as_dict() for f in self.limits()],
                "figures": [f.as_dict() for f in self.ffs()]}


class Reporter:
    """Progress callbacks (no-op); the CLI draws them on a terminal."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass


# ---- measurement helpers -----------------------------------------------------------------------

def timed_loop(operation: Callable[[int], int | None], count: int, seconds_max: float,
               reporter: Reporter, threads: int = 1, bytes_per_op: int = 0) -> Measurement:
    """Run operation(i) for i in range(count), or until seconds_max; threads share the indices.

    operation returns how many requests a call made (an int: a batch call's size); anything else
    counts as one.
    """
    latencies: list[list[float]] = [[] for _ in range(threads)]
    done = [0] * threads
    failures: list[BaseException] = []
    next_index = iter(range(count))
    index_lock = threading.Lock()
    began = time.perf_counter()
    deadline = began + seconds_max

    def worker(slot: int) -> None:
        mine = latencies[slot]
        try:
            while True:
                with index_lock:
                    i = next(next_index, None)
                if i is None or time.perf_counter() > deadline or failures:
                    return
                started = time.perf_counter()
                returned = operation(i)
                mine.append(time.perf_counter() - started)
                requests = returned if type(returned) is int else 1
                done[slot] += requests
                reporter.advance(requests)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            failures.append(exc)

    if threads == 1:
        worker(0)
    else:
        pool = [threading.Thread(target=worker, args=(slot,), daemon=True) for slot in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    ops = sum(done)
    return Measurement(ops, elapsed, ops * bytes_per_op, [x for part in latencies for x in part])


def pattern_bytes(size: int, seed: int) -> bytes:
    """The byte pattern every sequential writer and the TCP sender use (deterministic)."""
    return random.Random(seed).randbytes(size)


def expected_at(pattern: bytes, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of a file made of pattern repeated."""
    block = len(pattern)
    out = bytearray()
    while length > 0:
        within = offset % block
        piece = pattern[within:within + length]
        out += piece
        offset += len(piece)
        length -= len(piece)
    return bytes(out)


# ---- the machine's limits ------------------------------------------------------------------------

_TCP_SENDER = r"""
import random, socket, sys
port, total, block, seed = (int(a) for a in sys.argv[1:5])
view = memoryview(random.Random(seed).randbytes(block))
with socket.create_connection(("127.0.0.1", port)) as s:
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        s.sendall(view[:n])
        sent += n
"""

_ECHO_SERVER = r"""
import sys, grpc
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(16))
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
    "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"""


def tcp_stream(total: int, block: int, seed: int, fresh: bool) -> Measurement:
    """One loopback TCP stream: the receiver here recv_into a reused block buffer (or one fresh
    buffer of total bytes), the sender a second process sending the pattern."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _TCP_SENDER, str(port), str(total), str(block),
                                   str(seed)])
        try:
            server.settimeout(60)
            connection, _ = server.accept()
            with connection:
                received, latencies = 0, []
                began = time.perf_counter()
                view = memoryview(bytearray(total if fresh else block))
                while received < total:
                    started = time.perf_counter()
                    target = view[received:] if fresh else view
                    n = connection.recv_into(target, min(block, total - received))
                    if n == 0:
                        raise RuntimeError(f"TCP sender closed after {received} of {total} bytes")
                    received += n
                    latencies.append(time.perf_counter() - started)
                elapsed = time.perf_counter() - began
        finally:
            if sender.wait(timeout=120) != 0:
                raise RuntimeError(f"TCP sender exited {sender.returncode}")
    return Measurement(1, elapsed, total, latencies)


class EchoServer:
    """A 64-byte gRPC echo server in a second process: the round-trip floor of a metadata call."""

    def __enter__(self) -> "EchoServer":
        self.process = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.echo = self.channel.unary_unary("/bench.Echo/Echo")
        self.echo(b"x" * 64, timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.channel.close()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---- the run -------------------------------------------------------------------------------------

class _Run:
    def __init__(self, config: BenchConfig, reporter: Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.figures: list[Figure] = []
        self.pattern = pattern_bytes(config.block_bytes, config.seed)

    # -- figures ----------------------------------------------------------------
    def limit(self, group: str, name: str, measurement: Measurement, unit: str, note: str = "") -> Figure:
        figure = self._figure(group, name, "limit", measurement, unit, note)
        self.figures.append(figure)
        return figure

    def ffs(self, group: str, name: str, measurement: Measurement, unit: str, limit: Figure | None,
            note: str = "", target: tuple[str, float] | None = None) -> Figure:
        """target: ("ratio", r) = at least r of the limit; ("rate", v) = at least v in unit."""
        figure = self._figure(group, name, "ffs", measurement, unit, note)
        if limit is not None and limit.value > 0:
            figure.limit, figure.limit_value = limit.name, limit.value
            figure.ratio = figure.value / limit.value
        if target is not None:
            kind, wanted = target
            if kind == "ratio":
                figure.target = f">= {wanted:.0%} of {limit.name if limit else 'limit'}"
                figure.target_met = figure.ratio is not None and figure.ratio >= wanted
            else:
                figure.target = f">= {wanted:,.0f} {unit}"
                figure.target_met = figure.value >= wanted
        self.figures.append(figure)
        return figure

    @staticmethod
    def _figure(group, name, system, m: Measurement, unit, note) -> Figure:
        value = m.mib_per_s if unit == "MiB/s" else m.ops_per_s
        return Figure(group, name, system, unit, value, m.ops, m.bytes, m.seconds,
                      m.percentile_ms(0.5), m.percentile_ms(0.99), note)

    def best(self, measurements: list[Measurement]) -> Measurement:
        return min(measurements, key=lambda m: m.seconds / max(1, m.bytes or m.ops))

    # -- sequential ---------------------------------------------------------------
    def sequential(self, fs, base: str, local_dir: str) -> None:
        c = self.config
        path, local = f"{base}/seq.bin", os.path.join(local_dir, "seq.bin")
        rounds: dict[str, list[Measurement]] = {k: [] for k in (
            "tcp", "tcp_fresh", "disk_write", "disk_read", "disk_read_whole", "write", "read", "read_whole")}
        for _ in range(c.repeats):
            self.reporter.phase("limit: loopback TCP stream", None)
            rounds["tcp"].append(tcp_stream(c.seq_bytes, c.block_bytes, c.seed, fresh=False))
            rounds["tcp_fresh"].append(tcp_stream(c.seq_bytes, c.block_bytes, c.seed, fresh=True))
            self.reporter.phase("limit: local disk sequential", None)
            rounds["disk_write"].append(self._write(lambda: open(local, "wb"), c.seq_bytes))
            rounds["disk_read"].append(self._readinto(lambda: open(local, "rb", buffering=0), c.seq_bytes))
            rounds["disk_read_whole"].append(self._read_whole(lambda: open(local, "rb"), c.seq_bytes))
            self.reporter.phase("ffs: sequential write", c.seq_bytes // c.block_bytes)
            rounds["write"].append(self._write(lambda: fs.open(path, "wb"), c.seq_bytes))
            size = fs.info(path)["size"]
            if size != c.seq_bytes:
                raise RuntimeError(f"{path} holds {size} bytes after writing {c.seq_bytes}")
            self.reporter.phase("ffs: sequential read (readinto)", c.seq_bytes // c.block_bytes)
            rounds["read"].append(self._readinto(lambda: fs.open(path, "rb"), c.seq_bytes))
            self.reporter.phase("ffs: sequential read (f.read())", None)
            rounds["read_whole"].append(self._read_whole(lambda: fs.open(path, "rb"), c.seq_bytes))
        g = "sequential"
        size_note = f"{c.seq_bytes / MiB:.0f} MiB in {c.block_bytes / MiB:g} MiB calls"
        tcp = self.limit(g, "tcp_loopback_stream", self.best(rounds["tcp"]), "MiB/s",
                         "one stream, recv_into a reused buffer")
        tcp_fresh = self.limit(g, "tcp_loopback_stream_fresh_buffer", self.best(rounds["tcp_fresh"]), "MiB/s",
                               "one stream into one fresh buffer of the whole size")
        disk_write = self.limit(g, "disk_write", self.best(rounds["disk_write"]), "MiB/s",
                                "local file, same writes, no fsync")
        disk_read = self.limit(g, "disk_read_readinto", self.best(rounds["disk_read"]), "MiB/s",
                               "local file, page cache warm")
        self.limit(g, "disk_read_whole", self.best(rounds["disk_read_whole"]), "MiB/s", "local f.read()")
        self.ffs(g, "seq_write", self.best(rounds["write"]), "MiB/s", tcp, size_note + ", one reused buffer",
                 ("ratio", 0.35))
        self.ffs(g, "seq_read_readinto", self.best(rounds["read"]), "MiB/s", tcp,
                 size_note + ", one reused buffer", ("ratio", 0.50))
        self.ffs(g, "seq_read_whole", self.best(rounds["read_whole"]), "MiB/s", tcp_fresh,
                 "one f.read() of the whole file")
        self.ffs(g, "seq_write_vs_disk", self.best(rounds["write"]), "MiB/s", disk_write)
        self.ffs(g, "seq_read_readinto_vs_disk", self.best(rounds["read"]), "MiB/s", disk_read)

    def _write(self, opener, total: int) -> Measurement:
        view = memoryview(self.pattern)
        block = len(view)
        latencies = []
        began = time.perf_counter()
        with opener() as handle:
            written = 0
            while written < total:
                n = min(block, total - written)
                started = time.perf_counter()
                handle.write(view[:n])
                latencies.append(time.perf_counter() - started)
                written += n
                self.reporter.advance()
        return Measurement(1, time.perf_counter() - began, total, latencies)

    def _readinto(self, opener, total: int) -> Measurement:
        buffer = bytearray(len(self.pattern))
        latencies = []
        read = 0
        began = time.perf_counter()
        with opener() as handle:
            while True:
                started = time.perf_counter()
                n = handle.readinto(buffer)
                latencies.append(time.perf_counter() - started)
                if not n:
                    break
                if read == 0 and bytes(buffer[:n]) != self.pattern[:n]:
                    raise RuntimeError("sequential read returned other bytes than were written")
                read += n
                self.reporter.advance()
        elapsed = time.perf_counter() - began
        if read != total:
            raise RuntimeError(f"read {read} bytes of {total}")
        return Measurement(1, elapsed, total, latencies[:-1] or latencies)

    def _read_whole(self, opener, total: int) -> Measurement:
        began = time.perf_counter()
        with opener() as handle:
            data = handle.read()
        elapsed = time.perf_counter() - began
        if len(data) != total or data[:64] != self.pattern[:64]:
            raise RuntimeError("f.read() returned other bytes than were written")
        del data
        return Measurement(1, elapsed, total, [elapsed])

    # -- random --------------------------------------------------------------------
    def random_reads(self, fs, base: str, local_dir: str) -> None:
        c = self.config
        path, local = f"{base}/seq.bin", os.path.join(local_dir, "seq.bin")
        if not fs.exists(path) or fs.info(path)["size"] != c.seq_bytes:
            self.reporter.phase("ffs: writing the file for random reads", c.seq_bytes // c.block_bytes)
            self._write(lambda: fs.open(path, "wb"), c.seq_bytes)
        if not os.path.exists(local) or os.path.getsize(local) != c.seq_bytes:
            self._write(lambda: open(local, "wb"), c.seq_bytes)
        handle = fs.client.open(path)
        rng = random.Random(c.seed + 1)
        fd = os.open(local, os.O_RDONLY)
        try:
            for size, batches, requests_max in ((c.random_small_bytes, c.random_small_batches,
                                                 c.random_small_requests),
                                                (c.random_large_bytes, c.random_large_batches,
                                                 c.random_large_requests)):
                slots = c.seq_bytes // size
                for batch in batches:
                    calls = max(1, requests_max // batch)
                    offsets = [[rng.randrange(slots) * size for _ in range(batch)] for _ in range(calls)]
                    self._random_set(fs, path, handle, fd, size, batch, offsets)
        finally:
            os.close(fd)

    def _random_set(self, fs, path, handle, fd, size, batch, offsets) -> None:
        c = self.config
        label = f"{size // KiB} KiB" if size < MiB else f"{size // MiB} MiB"
        unit = "ops/s" if size < MiB else "MiB/s"
        g = "random"
        buffer = bytearray(size * batch)
        total = len(offsets) * batch

        def local_call(i: int) -> int:
            for offset in offsets[i]:
                os.pread(fd, size, offset)
            return batch

        self.reporter.phase(f"limit: local pread {label} x{batch}", total)
        disk = self.limit(g, f"disk_pread_{label.replace(' ', '')}_x{batch}",
                          timed_loop(local_call, len(offsets), c.seconds_max, self.reporter, bytes_per_op=size),
                          unit, "os.pread of the same offsets, page cache warm")
        first = offsets[0][0]
        expected = expected_at(self.pattern, first, size)

        def batch_call(i: int) -> int:
            result = fs.client.read_batch([(handle, offset, size) for offset in offsets[i]], into=buffer)
            if i == 0:
                result.raise_first()
                if bytes(result.view(0)) != expected:
                    raise RuntimeError("read_batch returned other bytes than were written")
            return batch

        self.reporter.phase(f"ffs: read_batch {label} x{batch}", total)
        target = ("rate", 50_000) if size == 4 * KiB and batch == 256 else None
        self.ffs(g, f"read_batch_{label.replace(' ', '')}_x{batch}",
                 timed_loop(batch_call, len(offsets), c.seconds_max, self.reporter, bytes_per_op=size),
                 unit, disk, f"{batch} requests per call into one reused buffer", target)

        def cat_call(i: int) -> int:
            starts = offsets[i]
            got = fs.cat_ranges([path] * batch, starts, [s + size for s in starts])
            if i == 0 and got[0] != expected:
                raise RuntimeError("cat_ranges returned other bytes than were written")
            return batch

        self.reporter.phase(f"ffs: cat_ranges {label} x{batch}", total)
        target = ("rate", 25_000) if size == 4 * KiB and batch == 256 else None
        self.ffs(g, f"cat_ranges_{label.replace(' ', '')}_x{batch}",
                 timed_loop(cat_call, len(offsets), c.seconds_max, self.reporter, bytes_per_op=size),
                 unit, disk, f"{batch} ranges per call (one BatchStat + one batched read)", target)

    # -- small files -----------------------------------------------------------------
    def small_files(self, fs, base: str, local_dir: str) -> None:
        c = self.config
        count, payload = c.small_files, pattern_bytes(c.small_file_bytes, c.seed + 2)
        d, ld = f"{base}/small", os.path.join(local_dir, "small")
        fs.makedirs(d, exist_ok=True)
        os.makedirs(ld, exist_ok=True)
        g = "small files"
        size_note = f"{c.small_file_bytes} B files"
        with EchoServer() as echo:
            self.reporter.phase("limit: 64-byte gRPC echo", count)
            message = b"x" * 64
            echo_one = self.limit(g, "grpc_echo_64B", timed_loop(lambda i: echo.echo(message, timeout=30), count,
                                                                 c.seconds_max, self.reporter), "ops/s",
                                  "one round trip, server in a second process")
            self.reporter.phase(f"limit: 64-byte gRPC echo, {c.threads} threads", count * 4)
            echo_many = self.limit(g, f"grpc_echo_64B_{c.threads}threads",
                                   timed_loop(lambda i: echo.echo(message, timeout=30), count * 4, c.seconds_max,
                                              self.reporter, threads=c.threads), "ops/s")

        def local_ops(prefix: str) -> dict[str, Callable[[int], Any]]:
            def touch(i):
                with open(os.path.join(ld, f"{prefix}t{i}"), "wb"):
                    pass

            def write(i):
                with open(os.path.join(ld, f"{prefix}f{i}"), "wb") as f:
                    f.write(payload)

            def read(i):
                with open(made["local"][i % len(made["local"])], "rb") as f:
                    return f.read()

            return {"create_write": write, "touch": touch,
                    "stat": lambda i: os.stat(made["local"][i % len(made["local"])]),
                    "read": read}

        def ffs_ops(prefix: str) -> dict[str, Callable[[int], Any]]:
            def read(i):
                got = fs.cat_file(made["ffs"][i % len(made["ffs"])])
                if i == 0 and got != payload:
                    raise RuntimeError("cat_file returned other bytes than were written")

            return {"create_write": lambda i: fs.pipe_file(f"{d}/{prefix}f{i}", payload),
                    "touch": lambda i: fs.touch(f"{d}/{prefix}t{i}"),
                    "stat": lambda i: fs.info(made["ffs"][i % len(made["ffs"])]),
                    "read": read}

        targets = {"create_write": 800, "touch": 1_500, "stat": 2_000}
        names = {"create_write": "pipe_file", "touch": "touch", "stat": "info", "read": "cat_file"}
        # The files create_write made (its time budget may stop it short of count, and with
        # threads not at a contiguous range): what stat and read then go over.
        made: dict[str, list[str]] = {}
        for threads, prefix in ((1, ""), (c.threads, "m")):
            local, ours = local_ops(prefix), ffs_ops(prefix)
            suffix = "" if threads == 1 else f"_{threads}threads"
            for op in ("create_write", "touch", "stat", "read"):
                self.reporter.phase(f"limit: local {op}{suffix}", count)
                limit = self.limit(g, f"local_{op}{suffix}",
                                   timed_loop(local[op], count, c.seconds_max, self.reporter, threads), "ops/s")
                self.reporter.phase(f"ffs: {names[op]}{suffix}", count)
                measured = timed_loop(ours[op], count, c.seconds_max, self.reporter, threads)
                if op == "create_write":
                    pattern = re.compile(rf"{prefix}f\d+")
                    made["local"] = [os.path.join(ld, n) for n in os.listdir(ld) if pattern.fullmatch(n)]
                    made["ffs"] = [p for p in fs.ls(d, detail=False) if pattern.fullmatch(p.rsplit("/", 1)[-1])]
                target = targets.get(op)
                wanted = None if target is None else ("rate", target * (1 if threads == 1 else 2))
                figure = self.ffs(g, f"{names[op]}{suffix}", measured, "ops/s", limit,
                                  size_note if op in ("create_write", "read") else "", wanted)
                echo_figure = echo_one if threads == 1 else echo_many
                if op in ("stat", "touch", "create_write"):
                    self.figures.append(dataclasses.replace(
                        figure, name=f"{names[op]}{suffix}_vs_grpc_echo", limit=echo_figure.name,
                        limit_value=echo_figure.value, ratio=figure.value / echo_figure.value if
                        echo_figure.value else None, target=None, target_met=None))
        # list and delete: one thread.
        entries = len(fs.ls(d, detail=False))
        local_entries = len(os.listdir(ld))
        self.reporter.phase("limit: local list", None)
        listed = timed_loop(lambda i: os.listdir(ld), 50, c.seconds_max, self.reporter)
        limit = self.limit(g, "local_list_entries", Measurement(listed.ops * local_entries, listed.seconds),
                           "ops/s", f"os.listdir of {local_entries} entries")
        self.reporter.phase("ffs: ls", None)
        listed = timed_loop(lambda i: fs.ls(d, detail=True), 50, c.seconds_max, self.reporter)
        self.ffs(g, "ls_entries", Measurement(listed.ops * entries, listed.seconds, 0,
                                              listed.latencies_s), "ops/s", limit,
                 f"entries/s listing {entries} entries with attributes (latency per ls)")
        local_names = sorted(os.listdir(ld))
        ffs_names = sorted(fs.ls(d, detail=False))
        self.reporter.phase("limit: local delete", len(local_names))
        limit = self.limit(g, "local_delete", timed_loop(
            lambda i: os.unlink(os.path.join(ld, local_names[i])), len(local_names), c.seconds_max * 4,
            self.reporter), "ops/s")
        self.reporter.phase("ffs: rm_file", len(ffs_names))
        self.ffs(g, "rm_file", timed_loop(lambda i: fs.rm_file(ffs_names[i]), len(ffs_names),
                                          c.seconds_max * 4, self.reporter), "ops/s", limit)


def run(config: BenchConfig, reporter: Reporter | None = None) -> BenchReport:
    """Run the benchmark (starting and stopping a local cluster unless config.url is given)."""
    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    config.check()
    reporter = reporter or Reporter()
    malloc_tuned = keep_large_buffers_on_heap()
    work = tempfile.mkdtemp(prefix="ffs-bench-", dir=config.tmp_dir)
    local_dir = os.path.join(work, "local")
    os.makedirs(local_dir)
    cluster = None
    base = f"/ffs-bench-{uuid.uuid4().hex[:8]}"
    fs = None
    try:
        url = config.url
        if url is None:
            reporter.phase("starting a local cluster", None)
            cluster = LocalCluster(os.path.join(work, "cluster"), storage_nodes=config.storage_nodes,
                                   targets_per_node=config.targets_per_node, replicas=config.replicas,
                                   python=sys.executable)
            url = cluster.up()
        fs, _ = fsspec.url_to_fs(url)
        fs.makedirs(base, exist_ok=True)
        bench = _Run(config, reporter)
        if "sequential" in config.groups:
            bench.sequential(fs, base, local_dir)
        if "random" in config.groups:
            bench.random_reads(fs, base, local_dir)
        if "small" in config.groups:
            bench.small_files(fs, base, local_dir)
        environment = {"cpus": os.cpu_count(), "load_average_1m_end": os.getloadavg()[0],
                       "python": sys.version.split()[0], "malloc_tuned": malloc_tuned,
                       "local_cluster": cluster is not None}
        return BenchReport(dataclasses.asdict(config), url, bench.figures, environment)
    finally:
        if fs is not None and config.url is not None:
            with contextlib.suppress(Exception):
                fs.rm(base, recursive=True)
        if cluster is not None:
            cluster.down()
        shutil.rmtree(work, ignore_errors=True)


def summary_rows(report: BenchReport) -> Iterable[list[Any]]:
    """Table rows: group, test, FireflyFS value, p50, p99, limit, limit value, ratio, target."""
    def number(value: float | None, unit: str = "") -> str:
        if value is None:
            return ""
        text = f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
        return f"{text} {unit}".strip()

    for f in report.ffs():
        met = "" if f.target_met is None else (" ok" if f.target_met else " MISSED")
        yield [f.group, f.name, number(f.value, f.unit), number(f.p50_ms), number(f.p99_ms),
               f.limit or "", number(f.limit_value, f.unit if f.limit else ""),
               "" if f.ratio is None else f"{f.ratio:.0%}", (f.target or "") + met]
