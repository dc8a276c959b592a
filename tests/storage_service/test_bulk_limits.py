"""What the bulk listener holds against hostile or broken peers, one limit at a time.

Goal: each of BulkLimits' bounds holds on a real listener (bulk_server.py):
frames are checked before a buffer is taken; request buffers stay within the
budget and a peer's share; a request that cannot get a buffer waits a bounded
time and gets Unavailable on a connection that stays usable; idle connections
are closed; a peer that trickles a request, or stops reading a reply, is cut
at the whole-request deadline even though every single recv or send moves a
byte in time; connections are capped per peer address and in total; a failing
accept backs off instead of spinning (injected, and for real under a lowered
RLIMIT_NOFILE in a child process).
Method: the two-target node of test_bulk_protocol.py, with a second
BulkServer of small limits on its handler; raw sockets play the bad peers
(bound to other loopback addresses where the per-peer cap matters), a
BulkConnection the good client. Waits for the server to act are polled with a
generous safety timeout; no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import crc32c
import pytest

from fireflyfs.client.bulk_client import BulkConnection
from fireflyfs.common.errors import InvalidArgument, Unavailable
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.storage_service.bulk_buffers import BufferBudget
from fireflyfs.storage_service.bulk_connections import BulkLimits, Phase, overdue
from fireflyfs.storage_service.bulk_server import BulkServer
from fireflyfs.storage_service.chunk_meta import chunk_key

from .test_bulk_protocol import CHUNK, Node, read

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # the frame layer, in-process (tests/conftest.py)

SAFETY_S = 20.0        # how long a test waits for the server to act before it fails


@pytest.fixture
def node(tmp_path):
    running = Node(tmp_path)
    yield running
    running.close()


@contextlib.contextmanager
def listener(node: Node, peer_timeout_s: float = 10.0, **limits):
    server = BulkServer(node.server.handler, "127.0.0.1:0", peer_timeout_s=peer_timeout_s,
                        limits=BulkLimits(**limits))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition, what: str, describe=lambda: "") -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {SAFETY_S} s: {what} {describe()}")
        time.sleep(0.01)


def connect(server: BulkServer, source_host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source_host, 0))
    sock.settimeout(SAFETY_S)
    sock.connect(("127.0.0.1", server.port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (EOF or reset); False if it stays open for SAFETY_S."""
    sock.settimeout(SAFETY_S)
    try:
        while sock.recv(64 * KiB):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def write_frame(offset: int, data_len: int, chunk_size: int = CHUNK, index: int = 0, checksum: int = 0,
                client_id: bytes = b"") -> bytes:
    """Header and meta of a write to chain 1, inode 9 (the data follows)."""
    meta = wire.WRITE_REQUEST.pack(1, 1, 9, index, offset, chunk_size, checksum, 0, 0, len(client_id)) + client_id
    return wire.header(wire.OP_WRITE, 1, len(meta), data_len) + meta


def error_reply(sock: socket.socket):
    header = bytearray(wire.HEADER.size)
    sock.recv_into(header, wire.HEADER.size, socket.MSG_WAITALL)
    op, status, count, meta_len, data_len = wire.parse_header(header)
    assert status == wire.STATUS_ERROR and not data_len
    return wire.error_from_text(sock.recv(meta_len, socket.MSG_WAITALL))


# ---------------------------------------------------------------------- validate before allocating

@pytest.mark.parametrize("frame", [
    wire.HEADER.pack(wire.MAGIC, wire.OP_WRITE, 0, 1, wire.WRITE_REQUEST.size, (1 << 64) - 1),
    wire.HEADER.pack(wire.MAGIC, wire.OP_WRITE, 0, 1, (1 << 32) - 1, 100),
    wire.HEADER.pack(wire.MAGIC, wire.OP_READ, 0, 65535, 65535 * wire.READ_IO.size, 0),
    wire.HEADER.pack(wire.MAGIC, wire.OP_READ, 0, 1, (1 << 32) - 1, 0),
    wire.HEADER.pack(wire.MAGIC, wire.OP_GRANT, 0, 0, 0, 1 << 40),
    wire.header(wire.OP_WRITE, 1, wire.WRITE_REQUEST.size + 2, 1 << 20)      # a 99-byte client id in 2 bytes
    + wire.WRITE_REQUEST.pack(1, 1, 9, 0, 0, CHUNK, 0, 0, 0, 99) + b"ab",
], ids=["write-2^64", "write-meta-2^32", "read-65535-ios", "read-meta-2^32", "grant-with-data",
        "write-client-id"])
def test_oversized_headers_are_refused_before_any_buffer_is_taken(node, monkeypatch, frame):
    made: list[int] = []
    monkeypatch.setattr(BufferBudget, "_allocate", staticmethod(lambda size: made.append(size) or bytearray(size)))
    with listener(node) as server:
        sock = connect(server)
        sock.sendall(frame)
        assert isinstance(error_reply(sock), InvalidArgument)
        assert closed_by_server(sock)
        assert made == [] and server.budget.in_use_bytes_peak == 0
        node.put(b"still serving")
        assert read(BulkConnection(server.address, 10.0), (1, 1, 9, 0, 0, 13))[0][0] == b"still serving"


def test_a_write_that_cannot_fit_its_chunk_is_answered_without_a_buffer_and_the_connection_lives(node,
                                                                                             monkeypatch):
    made: list[int] = []
    monkeypatch.setattr(BufferBudget, "_allocate", staticmethod(lambda size: made.append(size) or bytearray(size)))
    with listener(node) as server:
        sock = connect(server)
        data = os.urandom(MiB)
        sock.sendall(write_frame(0, len(data), chunk_size=CHUNK) + data)      # 1 MiB into a 256 KiB chunk
        error = error_reply(sock)
        assert isinstance(error, InvalidArgument) and "exceeds chunk size" in str(error)
        sock.sendall(write_frame(0, 10, chunk_size=3 * CHUNK) + bytes(10))    # not a power of two
        assert isinstance(error_reply(sock), InvalidArgument)
        assert made == [], "no data buffer for a write that cannot be applied"
        node.put(b"same socket")
        sock.sendall(wire.header(wire.OP_READ, 1, wire.READ_IO.size, 0) + wire.READ_IO.pack(1, 1, 9, 0, 0, 11))
        header = sock.recv(wire.HEADER.size, socket.MSG_WAITALL)
        _, status, _, meta_len, data_len = wire.parse_header(header)
        assert status == wire.STATUS_OK and data_len == 11
        assert sock.recv(meta_len + data_len, socket.MSG_WAITALL)[-11:] == b"same socket"
    assert node.targets[101].engine.get_meta(chunk_key(9, 0)).length == 11


# ---------------------------------------------------------------------- the byte budget

def stalled_writers(server: BulkServer, count: int, data_len: int, source_host: str = "127.0.0.1"):
    """Connections that sent a write's header and meta and one byte of its data, then stopped."""
    socks = []
    for _ in range(count):
        sock = connect(server, source_host)
        sock.sendall(write_frame(0, data_len, chunk_size=4 * MiB) + b"\x00")
        socks.append(sock)
    return socks


def test_requests_wait_for_the_budget_and_get_unavailable_when_it_stays_full(node):
    budget_bytes = 64 * MiB
    with listener(node, inflight_bytes_max=budget_bytes, inflight_bytes_per_peer_max=budget_bytes,
                  budget_wait_s_max=0.3) as server:
        stalled = stalled_writers(server, 16, 4 * MiB)     # 16 x 4 MiB buffers: the whole budget
        wait_for(lambda: server.budget.in_use_bytes == budget_bytes, "stalled writers hold the budget")
        good = BulkConnection(server.address, 10.0)
        data = memoryview(os.urandom(4 * MiB))
        with pytest.raises(Unavailable, match="busy"):
            good.write(1, 1, 9, 1, 0, data, crc32c.crc32c(data), 4 * MiB, b"good", 1, 1)
        assert not good.broken, "a request refused for budget leaves its connection usable"
        assert server.budget.in_use_bytes_peak <= budget_bytes
        assert server.budget.held_bytes <= budget_bytes
        for sock in stalled:
            sock.close()
        wait_for(lambda: server.budget.in_use_bytes == 0, "closed writers give their buffers back")
        assert good.write(1, 1, 9, 1, 0, data, crc32c.crc32c(data), 4 * MiB, b"good", 1, 2)[1] == 4 * MiB
        assert read(good, (1, 1, 9, 1, 0, 4 * MiB))[0][0] == bytes(data)
        assert server.budget.in_use_bytes_peak <= budget_bytes


def test_a_request_gets_its_buffer_once_the_budget_frees_within_its_wait(node):
    budget_bytes = 64 * MiB
    with listener(node, inflight_bytes_max=budget_bytes, inflight_bytes_per_peer_max=budget_bytes,
                  budget_wait_s_max=SAFETY_S) as server:
        stalled = stalled_writers(server, 16, 4 * MiB)
        wait_for(lambda: server.budget.in_use_bytes == budget_bytes, "stalled writers hold the budget")
        good = BulkConnection(server.address, 30.0)
        data = memoryview(os.urandom(MiB))
        results: list = []
        writer = threading.Thread(target=lambda: results.append(
            good.write(1, 1, 9, 2, 0, data, crc32c.crc32c(data), 4 * MiB, b"good", 2, 1)))
        writer.start()
        time.sleep(0.2)
        assert not results, "no buffer yet: the write waits"
        for sock in stalled:
            sock.close()
        writer.join(SAFETY_S)
        assert results and results[0][1] == MiB
        assert server.budget.in_use_bytes_peak <= budget_bytes


def test_one_peer_cannot_take_the_budget_from_another(node):
    with listener(node, inflight_bytes_max=128 * MiB, inflight_bytes_per_peer_max=64 * MiB,
                  budget_wait_s_max=0.3) as server:
        stalled = stalled_writers(server, 20, 4 * MiB, source_host="127.0.0.2")   # 16 fit its share
        wait_for(lambda: server.budget.peer_bytes("127.0.0.2") == 64 * MiB, "the hog holds its share")
        time.sleep(0.5)      # the other four waited for the hog's share and were refused
        assert server.budget.peer_bytes("127.0.0.2") == 64 * MiB
        good = BulkConnection(server.address, 10.0)      # from 127.0.0.1
        data = memoryview(os.urandom(4 * MiB))
        assert good.write(1, 1, 9, 3, 0, data, crc32c.crc32c(data), 4 * MiB, b"good", 3, 1)[1] == 4 * MiB
        for sock in stalled:
            sock.close()
        assert server.budget.in_use_bytes_peak <= 128 * MiB


# ---------------------------------------------------------------------- idle and deadlines

def test_overdue_names_what_each_phase_may_last():
    limits = BulkLimits(idle_s_max=30.0, request_s_max=5.0)
    assert overdue(Phase.IDLE, 100.0, 129.0, limits) is None
    assert "idle" in overdue(Phase.IDLE, 100.0, 131.0, limits)
    for phase in (Phase.RECEIVING, Phase.SENDING):
        assert overdue(phase, 100.0, 104.0, limits) is None
        assert phase.value in overdue(phase, 100.0, 106.0, limits)
    assert overdue(Phase.WORKING, 100.0, 10_000.0, limits) is None    # bounded by the chain driver


def test_an_idle_connection_is_closed_but_a_busy_one_is_not(node):
    node.put(b"busy")
    with listener(node, idle_s_max=0.5) as server:
        busy = BulkConnection(server.address, 10.0)
        idle = connect(server)
        started = time.monotonic()
        closed_at: list[float] = []
        watcher = threading.Thread(target=lambda: closed_by_server(idle) and closed_at.append(time.monotonic()))
        watcher.start()
        while time.monotonic() - started < 1.5:          # three idle timeouts of requests 50 ms apart
            assert read(busy, (1, 1, 9, 0, 0, 4))[0][0] == b"busy"
            time.sleep(0.05)
        watcher.join(SAFETY_S)
        assert closed_at and closed_at[0] - started >= 0.5, "closed, and not before the idle timeout"
        wait_for(lambda: server.cut_count == 1, "the watchdog counts its cut")
        assert read(busy, (1, 1, 9, 0, 1, 3))[0][0] == b"usy"


def test_the_client_pool_drops_a_connection_the_server_closed_for_idleness(node):
    """A pooled connection the server cut while idle is replaced on get(), not handed out to fail
    its next request (which the client would take for an unreachable node)."""
    from fireflyfs.client.bulk_client import BulkPool

    node.put(b"kept")
    with listener(node, idle_s_max=0.3) as server:
        pool = BulkPool(timeout_s=10.0)
        first = pool.get(server.address)
        assert read(first, (1, 1, 9, 0, 0, 4))[0][0] == b"kept"
        pool.put(first)
        wait_for(lambda: server.cut_count == 1, "the server cuts the idle pooled connection")
        second = pool.get(server.address)
        assert second is not first and first.sock.fileno() == -1, "the cut one was closed, a new one made"
        assert read(second, (1, 1, 9, 0, 0, 4))[0][0] == b"kept"
        pool.put(second)
        assert pool.get(server.address) is second, "a live idle connection is reused"
        pool.close()


@pytest.mark.parametrize("from_byte", [0, wire.HEADER.size + wire.WRITE_REQUEST.size])
def test_a_trickled_request_is_cut_at_the_request_deadline(node, from_byte):
    """A byte every 50 ms satisfies a 0.5 s per-recv timeout forever; the 1 s deadline still cuts it."""
    frame = write_frame(0, 4 * MiB, chunk_size=4 * MiB)
    with listener(node, peer_timeout_s=0.5, request_s_max=1.0) as server:
        sock = connect(server)
        started = time.monotonic()      # before the first byte: the server's clock cannot start earlier
        sock.sendall(frame[:from_byte])
        sent = from_byte
        cut = False
        while time.monotonic() - started < SAFETY_S:
            try:
                sock.send(frame[sent:sent + 1] if sent < len(frame) else b"\x00")
            except OSError:
                cut = True
                break
            sent += 1
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
        elapsed = time.monotonic() - started
        assert cut
        wait_for(lambda: server.cut_count == 1, "the watchdog counts its cut")
        assert elapsed >= 1.0, "cut before the deadline"
        assert sent < len(frame) + 4 * MiB
        wait_for(lambda: server.budget.in_use_bytes == 0, "the cut request's buffer is back")
        node.put(b"fine")
        assert read(BulkConnection(server.address, 10.0), (1, 1, 9, 0, 0, 4))[0][0] == b"fine"


def test_a_reader_that_stops_reading_is_cut_at_the_request_deadline(node):
    data = os.urandom(4 * MiB)
    node.targets[101].engine.write(chunk_key(9, 5), 0, data, 4 * MiB, 1)
    with listener(node, peer_timeout_s=30.0, request_s_max=1.0) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(wire.header(wire.OP_READ, 1, wire.READ_IO.size, 0)
                     + wire.READ_IO.pack(1, 1, 9, 5, 0, len(data)))
        wait_for(lambda: server.cut_count == 1, "the stalled reply is cut")
        received = 0
        with contextlib.suppress(ConnectionResetError):
            sock.settimeout(SAFETY_S)
            while part := sock.recv(MiB):
                received += len(part)
        assert received < len(data), "the reply was cut, not completed"


# ---------------------------------------------------------------------- connection caps

def test_connections_are_capped_per_peer_and_in_total(node):
    node.put(b"capped")
    with listener(node, connections_max=8, connections_per_peer_max=5) as server:
        hog = [connect(server, "127.0.0.2") for _ in range(8)]
        wait_for(lambda: server.refused_count == 3, "three over the per-peer cap refused")
        assert server.connections_from("127.0.0.2") == 5
        assert sum(closed_by_server(sock) for sock in hog[5:]) == 3
        others = [connect(server, "127.0.0.3") for _ in range(3)]
        wait_for(lambda: server.connection_count == 8, "the total cap reached")
        late = connect(server, "127.0.0.4")
        assert closed_by_server(late) and server.refused_count == 4
        hog[0].close()
        wait_for(lambda: server.connection_count == 7, "a slot frees")
        assert read(BulkConnection(server.address, 10.0), (1, 1, 9, 0, 0, 6))[0][0] == b"capped"
        for sock in hog + others:
            sock.close()


# ---------------------------------------------------------------------- accept errors

def test_accept_backs_off_on_emfile_and_logs_once_per_burst(node, caplog):
    node.put(b"back")
    server = BulkServer(node.server.handler, "127.0.0.1:0")
    real_accept = server._accept
    failing = threading.Event()
    failing.set()
    calls: list[float] = []

    def accept():
        if failing.is_set():
            calls.append(time.monotonic())
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept()

    server._accept = accept
    caplog.set_level(logging.WARNING, logger="fireflyfs.storage_service.bulk_server")
    server.start()
    try:
        time.sleep(1.0)
        failing.clear()
        # Backing off 10 ms, doubling to 1 s, is at most ~8 tries in a second; a spinning loop tries ~10^5.
        assert 1 <= len(calls) <= 12, len(calls)
        assert all(later - earlier >= 0.009 for earlier, later in zip(calls, calls[1:])), "no pause between tries"
        assert read(BulkConnection(server.address, 10.0), (1, 1, 9, 0, 0, 4))[0][0] == b"back"
        messages = [record.getMessage() for record in caplog.records]
        assert sum("fails" in message for message in messages) == 1
        assert sum("works again after" in message for message in messages) == 1
    finally:
        server.stop()


EMFILE_CHILD = Path(__file__).with_name("emfile_listener.py")


def test_a_real_descriptor_shortage_backs_off_and_recovers(tmp_path):
    """A child serves with RLIMIT_NOFILE a few descriptors above what it has open; we connect past it."""
    child = subprocess.Popen([sys.executable, str(EMFILE_CHILD), str(tmp_path), "24"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        socks = [socket.create_connection(("127.0.0.1", port), timeout=SAFETY_S) for _ in range(40)]
        time.sleep(1.5)                                    # the child's accept fails meanwhile
        child.stdin.write("report\n")
        child.stdin.flush()
        during = json.loads(child.stdout.readline())
        assert during["accept_failures"] >= 1, during      # the limit was reached for real
        assert during["accept_failures"] <= 20, during     # ... and accept backed off, no spin
        for sock in socks:
            sock.close()
        connection = BulkConnection(f"127.0.0.1:{port}", SAFETY_S)      # served again, once descriptors free
        assert read(connection, (1, 1, 9, 0, 0, 6))[0][0] == b"emfile"
        child.stdin.write("report\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline())["accept_failures"] == during["accept_failures"]
    finally:
        child.kill()
        child.wait()
