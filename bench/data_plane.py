"""Where a chunk's bytes spend their time: each layer of the data path measured alone, same run.

    python bench/data_plane.py [--mib 512] [--json]

Every figure is printed with its ratio to the plain loopback socket measured
first in the same run (figures drift 10-30% between runs on the shared VM;
ratios within one run are what to compare):

  socket          one TCP stream, sender process -> recv_into a reused 4 MiB buffer
  socket fresh    the same into one fresh buffer of the whole size (first-touch page faults)
  grpc reply      gRPC unary call answering 4 MiB of raw bytes (no protobuf), one in flight
  grpc request    gRPC unary call carrying 4 MiB of raw bytes to the server
  loop threads    a minimal framed server, thread per connection, 4 MiB replies from memory
  loop uvloop     the same server on asyncio + uvloop (transport.write of a memoryview)
  echo threads / echo uvloop   64-byte request/reply round trips per second
  engine write new   ChunkEngine.write of new 4 MiB chunks into new files (no network)
  engine write pool  the same into pooled files (freed chunk files, pages still cached)
  engine read     ChunkEngine.read of 4 MiB chunks (pread + CRC32C verify, page cache warm)
  bulk read       bulk protocol, 4 MiB per request, one in flight (sendfile -> recv_into, CRC check)
  bulk read x4    the same with 4 requests in flight on 4 connections (what readahead does)
  bulk write      bulk protocol, 4 MiB new-chunk writes through the chain driver (R=1, pooled
                  files), one in flight
  bulk 4K x256    random 4 KiB reads in batches of 256 IOs (reads/s)

CPU columns: milliseconds of CPU per GiB moved (microseconds per read for the
4 KiB row) in this process and in the server (or sender) process, from
process_time and /proc: where the time goes, and robust to a busy machine.

The storage side of "bulk" is a real target (chunk engine, routing fence,
chain driver, BulkServer) in a child process; gRPC and the minimal servers
run in child processes too, so client and server use different cores as in
a cluster. Run with MALLOC_MMAP_THRESHOLD_ unset or set: the children tune
malloc as the storage processes do (deploy/local_cluster.py CHILD_ENV).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from fireflyfs.common.limits import MiB
from fireflyfs.common.process_tuning import keep_large_buffers_on_heap

BLOCK = 4 * MiB
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spawn(kind: str, *args: str) -> tuple[subprocess.Popen, int]:
    """Start `python data_plane.py --serve kind args`; it prints its port on the first line."""
    env = dict(os.environ)
    env.update(CHILD_ENV)
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind, *args], stdout=subprocess.PIPE,
                             env=env, text=True)
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"{kind} server did not start")
    return child, int(line)


def stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


_TICK = os.sysconf("SC_CLK_TCK")


def child_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Meter:
    """Wall seconds, this process's CPU seconds and a child's CPU seconds over a block."""

    def __init__(self, child: subprocess.Popen | None = None) -> None:
        self.child = child

    def __enter__(self) -> "Meter":
        self.child_start = child_cpu_s(self.child.pid) if self.child else 0.0
        self.cpu_start = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall_s = time.perf_counter() - self.start
        self.cpu_s = time.process_time() - self.cpu_start
        self.child_cpu_s = (child_cpu_s(self.child.pid) - self.child_start) if self.child else 0.0


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    position = 0
    while position < len(view):
        count = sock.recv_into(view[position:])
        if not count:
            raise ConnectionError("peer closed")
        position += count


# ---------------------------------------------------------------------------- servers (children)

def serve_sender(port_out, total: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port_out(server.getsockname()[1])
        connection, _ = server.accept()
        data = memoryview(bytes(BLOCK))
        with connection:
            sent = 0
            while sent < total:
                count = min(BLOCK, total - sent)
                connection.sendall(data[:count])
                sent += count


def serve_grpc(port_out) -> None:
    import grpc
    from concurrent import futures

    payload = os.urandom(BLOCK)

    def get(request, context):
        return payload

    def put(request, context):
        return b"ok"

    handler = grpc.method_handlers_generic_handler("bench", {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "Put": grpc.unary_unary_rpc_method_handler(put)})
    options = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
    server = grpc.server(futures.ThreadPoolExecutor(4), options=options)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_out(port)
    server.wait_for_termination()


_FRAME = struct.Struct("<I")


def serve_loop_threads(port_out) -> None:
    """Request: 4-byte size; reply: that many bytes from memory (size < 64: an echo of 64 bytes)."""
    payload = memoryview(os.urandom(BLOCK))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port_out(server.getsockname()[1])

        def handle(sock: socket.socket) -> None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = bytearray(4)
            with sock:
                while True:
                    try:
                        recv_exact(sock, memoryview(head))
                    except ConnectionError:
                        return
                    (size,) = _FRAME.unpack(head)
                    sock.sendall(payload[:max(size, 64)])

        while True:
            sock, _ = server.accept()
            threading.Thread(target=handle, args=(sock,), daemon=True).start()


def serve_loop_uvloop(port_out) -> None:
    import uvloop

    payload = memoryview(os.urandom(BLOCK))

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport
            self.pending = bytearray()
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            self.pending += data
            while len(self.pending) >= 4:
                (size,) = _FRAME.unpack_from(self.pending)
                del self.pending[:4]
                self.transport.write(payload[:max(size, 64)])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, "127.0.0.1", 0)
        port_out(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


def serve_storage(port_out, data_dir: str, chunks: int) -> None:
    """One real target behind the routing fence, chain driver and BulkServer (chain 1 = [101])."""
    from fireflyfs.proto import types_pb2
    from fireflyfs.storage_service.bulk_server import BulkHandler, BulkServer
    from fireflyfs.storage_service.chain_driver import ChainDriver
    from fireflyfs.storage_service.chunk_meta import chunk_key
    from fireflyfs.storage_service.fencing import Fence
    from fireflyfs.storage_service.peers import Peers
    from fireflyfs.storage_service.routing_view import RoutingView
    from fireflyfs.storage_service.target import Target

    target = Target(101, os.path.join(data_dir, "target-101"), pool_files_max=chunks)
    payload = os.urandom(BLOCK)
    for index in range(chunks):
        target.engine.write(chunk_key(1, index), 0, payload, BLOCK, 1)
    target.engine.prefill_pool(chunks, BLOCK)    # bulk write then measures the path, not fresh pages
    fence = Fence(1, heartbeat_timeout_ms=3_600_000)
    fence.contact_ok(time.monotonic())
    routing = RoutingView(1, [101], fence)
    routing.update(types_pb2.RoutingInfo(version=1, chains=[types_pb2.ChainInfo(id=1, version=1, targets=[101])],
                                         targets=[types_pb2.TargetInfo(id=101, node_id=1, chain_id=1,
                                                                       public_state=types_pb2.SERVING)]))
    driver = ChainDriver(routing, Peers(routing))
    server = BulkServer(BulkHandler(1, {101: target}, routing, driver), "127.0.0.1:0")
    server.start()
    port_out(server.port)
    threading.Event().wait()


# ---------------------------------------------------------------------------- measurements (parent)

def measure_socket(total: int, fresh: bool) -> Meter:
    """fresh: everything into one new buffer of total bytes (what ``f.read()`` must do)."""
    child, port = spawn("sender", str(total))
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            received = 0
            with Meter(child) as meter:
                buffer = memoryview(bytearray(total if fresh else BLOCK))
                while received < total:
                    count = min(BLOCK, total - received)
                    recv_exact(sock, buffer[received:received + count] if fresh else buffer[:count])
                    received += count
            return meter
    finally:
        child.wait(30)


def measure_grpc(total: int) -> tuple[Meter, Meter]:
    import grpc

    child, port = spawn("grpc")
    options = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    try:
        get = channel.unary_unary("/bench/Get")
        put = channel.unary_unary("/bench/Put")
        get(b"", timeout=30)
        calls = total // BLOCK
        with Meter(child) as reply:
            for _ in range(calls):
                get(b"", timeout=30)
        payload = os.urandom(BLOCK)
        with Meter(child) as request:
            for _ in range(calls):
                put(payload, timeout=30)
        return reply, request
    finally:
        channel.close()
        stop(child)


def measure_loop(kind: str, total: int, echoes: int) -> tuple[float, float]:
    """(seconds for total bytes in 4 MiB replies, seconds for `echoes` 64-byte round trips)."""
    child, port = spawn(kind)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = memoryview(bytearray(BLOCK))
            big, small = _FRAME.pack(BLOCK), _FRAME.pack(64)
            sock.sendall(big)
            recv_exact(sock, buffer)
            start = time.perf_counter()
            for _ in range(total // BLOCK):
                sock.sendall(big)
                recv_exact(sock, buffer)
            bulk_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(echoes):
                sock.sendall(small)
                recv_exact(sock, buffer[:64])
            echo_s = time.perf_counter() - start
            return bulk_s, echo_s
    finally:
        stop(child)


def measure_engine(total: int, work_dir: str) -> tuple[float, float, float]:
    """(new-file write s, pooled-file write s, read s) of ChunkEngine alone."""
    from fireflyfs.storage_service.chunk_engine import ChunkEngine
    from fireflyfs.storage_service.chunk_meta import chunk_key

    chunks = total // BLOCK
    engine = ChunkEngine(os.path.join(work_dir, "engine"), pool_files_max=chunks)
    payload = os.urandom(BLOCK)
    try:
        start = time.perf_counter()
        for index in range(chunks):
            engine.write(chunk_key(7, index), 0, payload, BLOCK, 1)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        for index in range(chunks):
            engine.read(chunk_key(7, index), 0, BLOCK)
        read_s = time.perf_counter() - start
        engine.remove_range(7, 0, None)       # every file into the pool, pages still cached
        start = time.perf_counter()
        for index in range(chunks):
            engine.write(chunk_key(8, index), 0, payload, BLOCK, 1)
        pooled_s = time.perf_counter() - start
        return write_s, pooled_s, read_s
    finally:
        engine.close()


def measure_bulk(total: int, work_dir: str, batch: int, batches: int) -> dict[str, Meter]:
    import crc32c

    from fireflyfs.client.bulk_client import BulkConnection

    chunks = max(total // BLOCK, 8)
    child, port = spawn("storage", os.path.join(work_dir, "storage"), str(chunks))
    address = f"127.0.0.1:{port}"
    out: dict[str, Meter] = {}
    connections = [BulkConnection(address, 30.0) for _ in range(4)]
    try:
        buffer = memoryview(bytearray(BLOCK))
        io = lambda index: (1, 1, 1, index, 0, BLOCK)   # noqa: E731
        connections[0].send_read([io(0)])
        connections[0].recv_read([io(0)], [buffer])
        with Meter(child) as out["bulk read"]:
            for index in range(chunks):
                connections[0].send_read([io(index)])
                outcome = connections[0].recv_read([io(index)], [buffer])[0]
                assert outcome.error is None and outcome.data_len == BLOCK, outcome
        window = len(connections)
        with Meter(child) as out["bulk read x4"]:
            for index in range(min(window, chunks)):
                connections[index % window].send_read([io(index)])
            for index in range(chunks):
                connection = connections[index % window]
                stream = connection.begin_stream(io(index))
                stream.recv_into(buffer)
                if index + window < chunks:
                    connection.send_read([io(index + window)])
        payload = memoryview(os.urandom(BLOCK))
        checksum = crc32c.crc32c(payload)
        with Meter(child) as out["bulk write"]:
            for index in range(chunks):
                connections[0].write(1, 1, 2, index, 0, payload, checksum, BLOCK, b"bench", 1, index + 1)
        rng = random.Random(1)
        small = memoryview(bytearray(batch * 4096))
        views = [small[i * 4096:(i + 1) * 4096] for i in range(batch)]
        with Meter(child) as out["bulk 4K x256"]:
            for _ in range(batches):
                ios = [(1, 1, 1, rng.randrange(chunks), rng.randrange(BLOCK // 4096) * 4096, 4096)
                       for _ in range(batch)]
                connections[1].send_read(ios)
                outcomes = connections[1].recv_read(ios, views)
                assert all(o.error is None for o in outcomes)
        return out
    finally:
        for connection in connections:
            connection.close()
        stop(child)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="bytes per throughput figure, in MiB")
    parser.add_argument("--echoes", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, rest = args.serve[0], args.serve[1:]
        keep_large_buffers_on_heap()

        def port_out(port: int) -> None:
            print(port, flush=True)

        servers = {"sender": lambda: serve_sender(port_out, int(rest[0])), "grpc": lambda: serve_grpc(port_out),
                   "threads": lambda: serve_loop_threads(port_out), "uvloop": lambda: serve_loop_uvloop(port_out),
                   "storage": lambda: serve_storage(port_out, rest[0], int(rest[1]))}
        servers[kind]()
        return 0

    keep_large_buffers_on_heap()
    total = args.mib * MiB
    mib = args.mib
    work_dir = tempfile.mkdtemp(prefix="ffs-data-plane-")
    rows: list[tuple[str, float, str, float | None, float | None]] = []  # name, value, unit, cpu x2

    def row(name: str, meter: Meter, size_mib: float = mib) -> None:
        per_gib = size_mib / 1024
        rows.append((name, size_mib / meter.wall_s, "MiB/s", 1000 * meter.cpu_s / per_gib,
                     1000 * meter.child_cpu_s / per_gib))

    try:
        progress("socket ...")
        row("socket", measure_socket(total, fresh=False))
        row("socket fresh", measure_socket(total, fresh=True))
        progress("grpc ...")
        reply, request = measure_grpc(total)
        row("grpc reply", reply)
        row("grpc request", request)
        for kind in ("threads", "uvloop"):
            progress(f"minimal server, {kind} ...")
            bulk_s, echo_s = measure_loop(kind, total, args.echoes)
            rows += [(f"loop {kind}", mib / bulk_s, "MiB/s", None, None),
                     (f"echo {kind}", args.echoes / echo_s, "calls/s", None, None)]
        progress("chunk engine ...")
        write_s, pooled_s, read_s = measure_engine(total, work_dir)
        rows += [("engine write new", mib / write_s, "MiB/s", None, None),
                 ("engine write pool", mib / pooled_s, "MiB/s", None, None),
                 ("engine read", mib / read_s, "MiB/s", None, None)]
        progress("bulk path ...")
        bulk = measure_bulk(total, work_dir, 256, 40)
        bulk_mib = max(total // BLOCK, 8) * BLOCK / MiB
        for name in ("bulk read", "bulk read x4", "bulk write"):
            row(name, bulk[name], bulk_mib)
        meter = bulk["bulk 4K x256"]
        reads = 256 * 40
        rows.append(("bulk 4K x256", reads / meter.wall_s, "reads/s", 1e6 * meter.cpu_s / reads,
                     1e6 * meter.child_cpu_s / reads))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    socket_mib_s = rows[0][1]
    result = {name.replace(" ", "_"): round(value, 1) for name, value, *_ in rows}
    result.update({f"{name.replace(' ', '_')}_vs_socket": round(value / socket_mib_s, 3)
                   for name, value, unit, *_ in rows if unit == "MiB/s"})
    result.update({f"{name.replace(' ', '_')}_cpu": [round(here, 1), round(there, 1)]
                   for name, _, _, here, there in rows if here is not None})
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.mib} MiB per figure, 4 MiB per call; cpu: ms per GiB (us per read for 4K) "
          "in this process / in the server or sender process")
    print(f"{'path':<18}{'value':>10} {'unit':<8}{'vs socket':>10}{'cpu here':>10}{'cpu peer':>10}")
    for name, value, unit, here, there in rows:
        ratio = f"{value / socket_mib_s:>10.2f}" if unit == "MiB/s" else f"{'':>10}"
        cpu = f"{here:>10.1f}{there:>10.1f}" if here is not None else ""
        print(f"{name:<18}{value:>10.1f} {unit:<8}{ratio}{cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
