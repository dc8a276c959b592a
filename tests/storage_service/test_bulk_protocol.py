"""The bulk data path (bulk_wire/bulk_server/bulk_client) over a real socket on 127.0.0.1.

Method: two local targets (101, 102) serve chains 1 and 2 behind the same
routing fence as the gRPC servicer (chain 3 lives elsewhere) and a real
BulkServer; the client side is BulkConnection, as StorageClient uses it.
Reads are compared with what the chunk engine holds; framing errors are sent
as raw bytes and must get a clear error (and a closed connection), never a
dead server; corrupted chunk files must be caught by the end-to-end CRC check.
"""

from __future__ import annotations

import os
import socket
import struct

import crc32c
import pytest

from fireflyfs.client.bulk_client import BulkConnection, BulkPool, BulkTransportError
from fireflyfs.common.errors import (ChecksumMismatch, InvalidArgument, NotHead, StaleChainVersion,
                                     TooLarge, Unavailable)
from fireflyfs.proto import types_pb2
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.storage_service.bulk_server import BulkHandler, BulkServer
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.target import Target

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # the frame layer, in-process (tests/conftest.py)

CHUNK = 256 * 1024
BLOCK = 4096


def routing_info(chain1_version: int = 1) -> types_pb2.RoutingInfo:
    return types_pb2.RoutingInfo(version=5, chains=[
        types_pb2.ChainInfo(id=1, version=chain1_version, targets=[101]),
        types_pb2.ChainInfo(id=2, version=1, targets=[102]),
        types_pb2.ChainInfo(id=3, version=1, targets=[201]),
    ], targets=[types_pb2.TargetInfo(id=t, node_id=t // 100, chain_id=c, public_state=types_pb2.SERVING)
                for t, c in ((101, 1), (102, 2), (201, 3))])


class Node:
    def __init__(self, tmp_path) -> None:
        self.targets = {tid: Target(tid, tmp_path / f"target-{tid}", block_size=BLOCK) for tid in (101, 102)}
        self.fence = Fence(1, heartbeat_timeout_ms=600_000)
        self.fence.contact_ok(0.0)
        self.routing = RoutingView(1, list(self.targets), self.fence, clock=lambda: 1.0)
        self.routing.update(routing_info())
        self.peers = Peers(self.routing)
        handler = BulkHandler(1, self.targets, self.routing, ChainDriver(self.routing, self.peers))
        self.server = BulkServer(handler, "127.0.0.1:0", peer_timeout_s=10.0)
        self.server.start()
        self.address = self.server.address

    def connect(self) -> BulkConnection:
        return BulkConnection(self.address, 10.0)

    def put(self, data: bytes, index: int = 0, inode: int = 9, target: int = 101) -> None:
        self.targets[target].engine.write(chunk_key(inode, index), 0, data, CHUNK, 1)

    def chunk_file(self, index: int = 0, inode: int = 9, target: int = 101) -> str:
        engine = self.targets[target].engine
        key = chunk_key(inode, index)
        return engine._path(key, engine.get_meta(key).file_version)

    def close(self) -> None:
        self.server.stop()
        self.peers.close()
        for target in self.targets.values():
            target.close()


@pytest.fixture
def node(tmp_path):
    running = Node(tmp_path)
    yield running
    running.close()


def read(connection: BulkConnection, *ios):
    outs = [memoryview(bytearray(io[5])) for io in ios]
    connection.send_read(list(ios))
    outcomes = connection.recv_read(list(ios), outs)
    return [(bytes(out[:o.data_len]), o) for out, o in zip(outs, outcomes)]


def test_reads_match_the_engine_across_blocks_holes_and_ends(node):
    data = os.urandom(3 * BLOCK * 10 + 123)
    node.put(data)
    connection = node.connect()
    cases = [(0, len(data)), (1, 10), (BLOCK - 3, 7), (BLOCK, BLOCK), (BLOCK * 2 + 5, BLOCK * 3),
             (len(data) - 50, 500), (len(data), 10), (len(data) + 100, 10), (0, 0)]
    results = read(connection, *[(1, 1, 9, 0, offset, length) for offset, length in cases])
    for (offset, length), (got, outcome) in zip(cases, results):
        assert outcome.error is None
        assert got == data[offset:offset + length], (offset, length)
        assert outcome.chunk_length == len(data) and outcome.commit_version == 1
    missing = read(connection, (1, 1, 9, 5, 0, 100))[0]
    assert missing[0] == b"" and missing[1].error is None and missing[1].chunk_length == 0
    # The connection stays usable for more frames, and a pooled one is reused.
    assert read(connection, (1, 1, 9, 0, 7, 3))[0][0] == data[7:10]
    connection.close()


def test_per_io_errors_and_whole_request_errors(node):
    node.put(b"abc" * 1000)
    connection = node.connect()
    results = read(connection, (1, 1, 9, 0, 0, 10), (1, 2, 9, 0, 0, 10), (3, 1, 9, 0, 0, 10),
                   (44, 1, 9, 0, 0, 10))
    assert results[0][0] == b"abcabcabca"
    assert isinstance(results[1][1].error, StaleChainVersion)
    assert isinstance(results[2][1].error, NotHead) and "chain 3" in str(results[2][1].error)
    assert isinstance(results[3][1].error, StaleChainVersion)
    # Errors between IOs with data: each IO's CRCs and error text stay in IO order in the reply.
    mixed = read(connection, (1, 2, 9, 0, 0, 10), (1, 1, 9, 0, 0, 5), (1, 1, 9, 0, 1000, 1500),
                 (3, 1, 9, 0, 0, 10), (1, 1, 9, 0, 2, 4))
    assert [got for got, _ in mixed] == [b"", b"abcab", (b"abc" * 1000)[1000:2500], b"", b"cabc"]
    assert [type(outcome.error) for _, outcome in mixed] == [StaleChainVersion, type(None), type(None), NotHead,
                                                             type(None)]
    too_much = [(1, 1, 9, 0, 0, wire.read_bytes_max // 2 + 1)] * 2
    connection.send_read(too_much)
    with pytest.raises(TooLarge):
        connection.recv_read(too_much, [memoryview(bytearray(0))] * 2)
    assert not connection.broken
    assert read(connection, (1, 1, 9, 0, 3, 3))[0][0] == b"abc"


def test_writes_go_through_the_chain_driver_with_exactly_once(node):
    connection = node.connect()
    data = memoryview(os.urandom(70_000))
    reply = connection.write(1, 1, 9, 2, 0, data, crc32c.crc32c(data), CHUNK, b"client-a", 1, 1)
    meta = node.targets[101].engine.get_meta(chunk_key(9, 2))
    assert reply == (1, 70_000, meta.chunk_checksum)
    again = connection.write(1, 1, 9, 2, 0, data, crc32c.crc32c(data), CHUNK, b"client-a", 1, 1)
    assert again == reply and node.targets[101].engine.get_meta(chunk_key(9, 2)).commit_version == 1
    with pytest.raises(ChecksumMismatch):
        connection.write(1, 1, 9, 2, 0, data, 12345, CHUNK, b"client-a", 1, 2)
    with pytest.raises(StaleChainVersion):
        connection.write(1, 7, 9, 2, 0, data, crc32c.crc32c(data), CHUNK, b"", 0, 0)
    with pytest.raises(NotHead):
        connection.write(3, 1, 9, 2, 0, data, crc32c.crc32c(data), CHUNK, b"", 0, 0)
    with pytest.raises(InvalidArgument):
        connection.write(1, 1, 9, 2, CHUNK - 10, data, crc32c.crc32c(data), CHUNK, b"", 0, 0)
    assert not connection.broken, "errors in a well-formed frame keep the connection"
    assert read(connection, (1, 1, 9, 2, 0, 70_000))[0][0] == bytes(data)


def raw_exchange(node: Node, frame: bytes) -> tuple[bytes, bool]:
    """Send raw bytes; (reply bytes, whether the server closed the connection afterwards)."""
    with socket.create_connection(("127.0.0.1", node.server.port), timeout=5) as sock:
        sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            part = sock.recv(65536)
            if not part:
                return b"".join(chunks), True
            chunks.append(part)


@pytest.mark.parametrize("frame, fragment", [
    (b"XXXX" + bytes(16), "magic"),
    (wire.HEADER.pack(wire.MAGIC, 9, 0, 0, 0, 0), "unknown bulk op"),
    (wire.HEADER.pack(wire.MAGIC, wire.OP_READ, 0, 2, 5, 0), "read frame of 2 IOs"),
    (wire.HEADER.pack(wire.MAGIC, wire.OP_READ, 0, wire.read_ios_max + 1, 0, 0), "exceeds"),
    (wire.HEADER.pack(wire.MAGIC, wire.OP_WRITE, 0, 1, 10, 0), "write frame"),
    (wire.HEADER.pack(wire.MAGIC, wire.OP_WRITE, 0, 1, wire.WRITE_REQUEST.size, 1 << 40), "exceeds"),
    (wire.HEADER.pack(wire.MAGIC, wire.OP_READ, 1, 0, 0, 0), "status"),
])
def test_malformed_frames_get_a_clear_error_and_the_server_lives_on(node, frame, fragment):
    reply, closed = raw_exchange(node, frame)
    op, status, count, meta_len, data_len = wire.parse_header(reply[:wire.HEADER.size])
    assert status == wire.STATUS_ERROR and closed
    error = wire.error_from_text(reply[wire.HEADER.size:wire.HEADER.size + meta_len])
    assert isinstance(error, InvalidArgument) and fragment in str(error)
    node.put(b"still here")
    assert read(node.connect(), (1, 1, 9, 0, 0, 10))[0][0] == b"still here"


def test_a_write_frame_with_a_wrong_client_id_length_is_refused(node):
    meta = wire.WRITE_REQUEST.pack(1, 1, 9, 0, 0, CHUNK, crc32c.crc32c(b"x"), 0, 0, 99) + b"ab"
    reply, closed = raw_exchange(node, wire.header(wire.OP_WRITE, 1, len(meta), 1) + meta + b"x")
    assert closed and b"client id" in reply
    assert node.targets[101].engine.get_meta(chunk_key(9, 0)) is None


def test_truncated_frames_and_silent_peers_do_not_hurt_others(node):
    node.put(b"data" * 100)
    half = socket.create_connection(("127.0.0.1", node.server.port))
    half.sendall(wire.header(wire.OP_READ, 3, 3 * wire.READ_IO.size, 0) + b"\x01" * 10)   # then stops
    idle = socket.create_connection(("127.0.0.1", node.server.port))
    assert read(node.connect(), (1, 1, 9, 0, 0, 8))[0][0] == b"datadata"
    half.close()
    idle.close()
    assert read(node.connect(), (1, 1, 9, 0, 4, 4))[0][0] == b"data"


def test_a_corrupt_whole_block_is_caught_by_the_client_and_an_edge_block_by_the_server(node):
    data = os.urandom(BLOCK * 8)
    node.put(data)
    with open(node.chunk_file(), "r+b") as handle:
        handle.seek(BLOCK * 3 + 100)
        handle.write(bytes([data[BLOCK * 3 + 100] ^ 0xFF]))
    connection = node.connect()
    whole = read(connection, (1, 1, 9, 0, 0, BLOCK * 8))[0][1]      # sendfile'd: checked by the client
    assert whole.checksum_failed and isinstance(whole.error, ChecksumMismatch)
    edge = read(connection, (1, 1, 9, 0, BLOCK * 3 + 50, 100))[0][1]   # part of a block: the server checks
    assert isinstance(edge.error, ChecksumMismatch) and not edge.checksum_failed
    assert "block 3" in str(edge.error)
    fine = read(connection, (1, 1, 9, 0, BLOCK * 4, BLOCK * 4))[0]
    assert fine[0] == data[BLOCK * 4:] and fine[1].error is None
    # A small read across one boundary, partial on both sides (both blocks read at once): the rot
    # in either block is caught, and a clean pair reads right with one CRC per segment.
    for offset in (BLOCK * 3 - 40, BLOCK * 4 - 40):
        across = read(connection, (1, 1, 9, 0, offset, 200))[0][1]
        assert isinstance(across.error, ChecksumMismatch) and "block 3" in str(across.error), offset
    clean = read(connection, (1, 1, 9, 0, BLOCK * 5 - 40, 200))[0]
    assert clean[0] == data[BLOCK * 5 - 40:BLOCK * 5 + 160] and clean[1].error is None


def test_streamed_reads_check_blocks_split_across_buffers(node):
    data = os.urandom(BLOCK * 6 + 77)
    node.put(data)
    connection = node.connect()
    io = (1, 1, 9, 0, 10, len(data))
    connection.send_read([io])
    stream = connection.begin_stream(io)
    assert stream.data_len == len(data) - 10
    got = bytearray()
    for size in (1, BLOCK, 3 * BLOCK + 5, 17):
        out = memoryview(bytearray(size))
        stream.recv_into(out)
        got += out
    rest = memoryview(bytearray(stream.remaining))
    stream.recv_into(rest)
    assert bytes(got + rest) == data[10:]
    # A flipped byte in a block split across two buffers is caught before any byte of
    # that block reaches the caller: by the call whose buffer holds it, and by the call
    # whose buffer ends just before it.
    with open(node.chunk_file(), "r+b") as handle:
        handle.seek(BLOCK * 2 + 1)
        handle.write(bytes([data[BLOCK * 2 + 1] ^ 1]))
    for first, failing in ((BLOCK + BLOCK // 2, 0), (BLOCK + 1, 0), (BLOCK, 1)):
        io = (1, 1, 9, 0, BLOCK, BLOCK * 3)
        connection = node.connect()
        connection.send_read([io])
        stream = connection.begin_stream(io)
        sizes = (first, BLOCK)
        for number, size in enumerate(sizes):
            out = memoryview(bytearray(size))
            if number == failing:
                with pytest.raises(ChecksumMismatch):
                    stream.recv_into(out)
                break
            stream.recv_into(out)
            assert bytes(out) == data[BLOCK:BLOCK + size]
        assert connection.broken


def test_cached_descriptors_never_serve_a_removed_and_recreated_chunk(node):
    engine = node.targets[101].engine
    key = chunk_key(9, 0)
    node.put(b"first version " * 100)
    connection = node.connect()
    assert read(connection, (1, 1, 9, 0, 0, 5))[0][0] == b"first"
    assert engine.remove(key)
    node.put(b"second! " * 100)          # same key, same file version 1 as before
    assert engine.get_meta(key).file_version == 1
    assert read(connection, (1, 1, 9, 0, 0, 7))[0][0] == b"second!"


def test_fenced_node_answers_unavailable_and_a_dead_node_is_a_transport_error(node):
    node.put(b"x" * 10)
    node.routing.fence.set_timeout(2)        # no mgmtd contact for far longer than that
    connection = node.connect()
    assert isinstance(read(connection, (1, 1, 9, 0, 0, 10))[0][1].error, Unavailable)
    port = node.server.port
    node.server.stop()
    with pytest.raises(BulkTransportError):
        BulkConnection(f"127.0.0.1:{port}", 2.0)


def test_pool_reuses_connections_and_forgets_them_after_fork(node):
    node.put(b"pooled")
    pool = BulkPool(5.0)
    first = pool.get(node.address)
    pool.put(first)
    assert pool.get(node.address) is first
    pool.put(first)
    pid = os.fork()
    if pid == 0:   # the child must not reuse the parent's socket
        try:
            child = pool.get(node.address)
            ok = child is not first and read(child, (1, 1, 9, 0, 0, 6))[0][0] == b"pooled"
        except BaseException:   # noqa: BLE001
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read(pool.get(node.address), (1, 1, 9, 0, 0, 6))[0][0] == b"pooled", "parent's socket intact"
    pool.close()


def test_segment_math():
    assert wire.segment_count(0, BLOCK, BLOCK) == 1
    assert wire.segment_count(1, BLOCK, BLOCK) == 2
    assert wire.segment_count(BLOCK - 1, 2, BLOCK) == 2
    assert wire.segment_count(5, 0, BLOCK) == 0
    assert list(wire.segments(BLOCK - 2, BLOCK + 4, BLOCK)) == [(0, 2), (2, BLOCK + 2), (BLOCK + 2, BLOCK + 4)]
    assert struct.calcsize(wire.HEADER.format) == 20


def test_idle_connections_are_kept_but_a_peer_stuck_mid_frame_is_dropped(node):
    import time

    node.put(b"idle")
    server = BulkServer(node.server.handler, "127.0.0.1:0", peer_timeout_s=0.2)
    server.start()
    try:
        connection = BulkConnection(server.address, 10.0)
        assert read(connection, (1, 1, 9, 0, 0, 4))[0][0] == b"idle"
        time.sleep(0.6)                     # idle between frames for three timeouts
        assert read(connection, (1, 1, 9, 0, 1, 3))[0][0] == b"dle"
        stuck = socket.create_connection(("127.0.0.1", server.port))
        stuck.sendall(wire.header(wire.OP_READ, 1, wire.READ_IO.size, 0) + b"\x00" * 5)
        stuck.settimeout(5)
        assert stuck.recv(100) == b"", "a frame left half-sent is cut after the timeout"
        stuck.close()
    finally:
        server.stop()
