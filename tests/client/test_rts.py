"""Request-to-send: the client's permit limiter, the storage side's gate, the bulk protocol with both.

Method: the limiter (client/rts.py) is driven by threads directly: its bound,
first-come-first-served order and timeout. The protocol runs against a real
BulkServer on 127.0.0.1 (two local targets, as tests/storage_service's bulk tests):
granted reads return the stored bytes; a peer that never grants gets a clear
retryable error after the server's timeout while other clients read on, and
its connection still works afterwards; a client out of permits fails its read
clearly instead of hanging; and across several servers and threads the number
of replies being sent at once, counted on the server side, never exceeds K.
Pacing (common/pacing.py) is checked as a pure token bucket.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fireflyfs.client.bulk_client import BulkConnection, BulkTransportError
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.rts import GrantLimiter, RtsPermitTimeout, limiter_for
from fireflyfs.common.errors import Unavailable
from fireflyfs.common.pacing import TokenBucket
from fireflyfs.proto import types_pb2
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.proto.bulk_io import recv_exact
from fireflyfs.storage_service.bulk_server import BulkHandler, BulkServer
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.rts import GrantGate, GrantTimeout
from fireflyfs.storage_service.target import Target

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # the frame layer, in-process (tests/conftest.py)

CHUNK = 256 * 1024
BLOCK = 4096


# ---------------------------------------------------------------------------- the limiter


def _wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def test_limiter_never_grants_more_than_k():
    limiter = GrantLimiter(3, wait_s=5.0)
    holding = []
    lock = threading.Lock()
    peak = [0]

    def worker():
        for _ in range(30):
            limiter.acquire()
            with lock:
                holding.append(1)
                peak[0] = max(peak[0], len(holding))
            time.sleep(0.0005)
            with lock:
                holding.pop()
            limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = limiter.stats()
    assert peak[0] <= 3 and stats.in_use_peak <= 3
    assert stats.granted == 240 and stats.in_use == 0 and stats.waiting == 0


def test_limiter_serves_waiters_in_arrival_order_and_try_acquire_does_not_jump():
    limiter = GrantLimiter(1, wait_s=5.0)
    limiter.acquire()
    order = []

    def waiter(name):
        limiter.acquire()
        order.append(name)
        limiter.release()

    threads = []
    for number, name in enumerate("abcd", start=1):
        thread = threading.Thread(target=waiter, args=(name,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda n=number: limiter.stats().waiting == n)
    assert not limiter.try_acquire()          # others wait: no queue jumping
    limiter.release()
    for thread in threads:
        thread.join()
    assert order == list("abcd")
    assert limiter.try_acquire()
    limiter.release()


def test_limiter_times_out_with_a_clear_retryable_error_and_recovers():
    # The limiter's own clock: it gives up only once that clock has passed the deadline.
    readings = itertools.chain([0.0, 10.0, 10.05, 10.09, 10.1], itertools.repeat(20.0))
    seen = []

    def clock() -> float:
        seen.append(next(readings))
        return seen[-1]

    limiter = GrantLimiter(1, wait_s=0.1, clock=clock)
    limiter.acquire()
    seen.clear()
    with pytest.raises(RtsPermitTimeout) as caught:
        limiter.acquire(what="4096 bytes from n1")
    assert seen == [10.0, 10.05, 10.09, 10.1], "waited, asking the clock, until the deadline 10.1 was reached"
    assert isinstance(caught.value, Unavailable)
    assert "no permit for 4096 bytes from n1 within 0.1 s (1 of 1 transfers granted" in str(caught.value)
    stats = limiter.stats()
    assert stats.timed_out == 1 and stats.waiting == 0 and stats.in_use == 1
    limiter.release()
    limiter.acquire()                         # the timed-out waiter left no trace in the queue
    limiter.release()
    with pytest.raises(RuntimeError):
        limiter.release()


def test_limiter_config_and_per_process_sharing():
    assert limiter_for(ClientConfig()) is None                 # off by default
    config = ClientConfig.from_env({"FFS_CLIENT_RTS_ENABLED": "1", "FFS_CLIENT_RTS_MAX_CONCURRENT": "5"})
    limiter = limiter_for(config)
    assert limiter is not None and limiter.permits_max == 5
    assert limiter_for(config) is limiter
    with pytest.raises(ValueError):
        GrantLimiter(0)
    assert GrantGate.from_env({"FFS_STORAGE_RTS_GRANT_TIMEOUT_S": "2.5"}).grant_timeout_s == 2.5
    with pytest.raises(ValueError):
        GrantGate.from_env({"FFS_STORAGE_RTS_GRANT_TIMEOUT_S": "-1"})


# ---------------------------------------------------------------------------- pacing


def test_token_bucket_lets_the_burst_through_then_holds_the_rate():
    bucket = TokenBucket(rate_bytes_per_s=1000, burst_bytes=500, now=0.0)
    assert bucket.reserve(500, now=0.0) == 0.0
    assert bucket.reserve(250, now=0.0) == pytest.approx(0.25)     # in debt: wait for the refill
    assert bucket.reserve(0, now=0.25) == 0.0
    # A long run: 100 requests of 100 bytes ask to go at 1000 B/s, whatever the burst.
    bucket = TokenBucket(rate_bytes_per_s=1000, burst_bytes=100, now=0.0)
    now = 0.0
    for _ in range(100):
        now += bucket.reserve(100, now)
    assert now == pytest.approx(9.9)
    slept = []
    paced = TokenBucket(1000, 100, clock=lambda: 0.0, sleep=slept.append)
    paced.pace(100)
    paced.pace(300)
    assert slept == [pytest.approx(0.3)]
    with pytest.raises(ValueError):
        TokenBucket(0, 100)


# ---------------------------------------------------------------------------- the protocol


def routing_info() -> types_pb2.RoutingInfo:
    return types_pb2.RoutingInfo(version=5, chains=[
        types_pb2.ChainInfo(id=1, version=1, targets=[101]),
        types_pb2.ChainInfo(id=2, version=1, targets=[102]),
    ], targets=[types_pb2.TargetInfo(id=t, node_id=1, chain_id=c, public_state=types_pb2.SERVING)
                for t, c in ((101, 1), (102, 2))])


class Node:
    """A storage node's bulk listener over two local targets (no mgmtd, no gRPC)."""

    def __init__(self, path, gate: GrantGate) -> None:
        self.targets = {tid: Target(tid, path / f"target-{tid}", block_size=BLOCK) for tid in (101, 102)}
        fence = Fence(1, heartbeat_timeout_ms=600_000)
        fence.contact_ok(0.0)
        self.routing = RoutingView(1, list(self.targets), fence, clock=lambda: 1.0)
        self.routing.update(routing_info())
        self.peers = Peers(self.routing)
        handler = BulkHandler(1, self.targets, self.routing, ChainDriver(self.routing, self.peers))
        handler.rts = gate
        self.server = BulkServer(handler, "127.0.0.1:0", peer_timeout_s=10.0)
        self.server.start()
        self.address = self.server.address
        self.data = os.urandom(CHUNK)
        self.targets[101].engine.write(chunk_key(9, 0), 0, self.data, CHUNK, 1)

    def close(self) -> None:
        self.server.stop()
        self.peers.close()
        for target in self.targets.values():
            target.close()


@pytest.fixture
def gate():
    return GrantGate(grant_timeout_s=0.5)


@pytest.fixture
def nodes(tmp_path, gate):
    running = [Node(tmp_path / f"n{i}", gate) for i in range(2)]
    yield running
    for node in running:
        node.close()


def _read(connection: BulkConnection, limiter=None, offset: int = 0, length: int = CHUNK) -> bytes:
    io = (1, 1, 9, 0, offset, length)
    out = memoryview(bytearray(length))
    connection.send_read([io], limiter)
    outcome = connection.recv_read([io], [out])[0]
    assert outcome.error is None, outcome.error
    return bytes(out[:outcome.data_len])


def test_granted_reads_return_the_stored_bytes(nodes, gate):
    node = nodes[0]
    limiter = GrantLimiter(2, wait_s=5.0)
    connection = BulkConnection(node.address, 10.0)
    assert _read(connection, limiter) == node.data
    assert _read(connection, limiter, 1000, 5000) == node.data[1000:6000]
    assert _read(connection) == node.data                  # plain reads on the same connection
    assert limiter.stats().granted == 2 and limiter.stats().in_use == 0
    assert gate.stats.asked == 2 and gate.stats.granted == 2 and gate.stats.timed_out == 0
    # A read with no data (a missing chunk) needs no grant.
    io = (1, 1, 9, 7, 0, 100)
    connection.send_read([io], limiter)
    assert connection.recv_read([io], [memoryview(bytearray(100))])[0].data_len == 0
    assert gate.stats.asked == 2


def _raw_rts_read(sock: socket.socket, length: int = CHUNK) -> None:
    sock.sendall(wire.header(wire.OP_READ_RTS, 1, wire.READ_IO.size, 0) + wire.READ_IO.pack(1, 1, 9, 0, 0, length))


def _raw_frame(sock: socket.socket) -> tuple[int, int, int, bytes, int]:
    header = bytearray(wire.HEADER.size)
    recv_exact(sock, memoryview(header))
    op, status, count, meta_len, data_len = wire.parse_header(header)
    meta = bytearray(meta_len)
    recv_exact(sock, memoryview(meta))
    return op, status, count, bytes(meta), data_len


def test_a_peer_that_never_grants_gets_a_clear_error_and_others_are_unaffected(nodes, gate):
    node = nodes[0]
    stubborn = socket.create_connection(("127.0.0.1", node.server.port))
    stubborn.settimeout(10)
    _raw_rts_read(stubborn)
    op, status, count, meta, data_len = _raw_frame(stubborn)
    assert (op, status, count, data_len) == (wire.OP_RTS, wire.STATUS_OK, 1, 0)
    assert wire.RTS_META.unpack(meta) == (CHUNK,)
    assert gate.stats.timed_out == 0          # asked, and waiting for the grant
    # While the server waits for that grant, other clients read, with and without request-to-send.
    limiter = GrantLimiter(4, wait_s=5.0)
    other = BulkConnection(node.address, 10.0)
    for _ in range(5):
        assert _read(other, limiter) == node.data
        assert _read(other) == node.data
    op, status, count, meta, data_len = _raw_frame(stubborn)          # the timeout's error reply
    assert (op, status, data_len) == (wire.OP_READ, wire.STATUS_ERROR, 0)
    error = wire.error_from_text(meta)
    assert isinstance(error, Unavailable)
    assert "granted no transfer within 0.5 s (read of 1 IOs, 262144 bytes); retry" in str(error)
    assert gate.stats.timed_out == 1 and gate.stats.granted == 5     # the other client's 5 request-to-send reads
    # A late grant is ignored and the same connection still serves reads.
    stubborn.sendall(wire.header(wire.OP_GRANT, 0, 0, 0))
    stubborn.sendall(wire.header(wire.OP_READ, 1, wire.READ_IO.size, 0) + wire.READ_IO.pack(1, 1, 9, 0, 0, 64))
    op, status, count, meta, data_len = _raw_frame(stubborn)
    assert (op, status, count, data_len) == (wire.OP_READ, wire.STATUS_OK, 1, 64)
    data = bytearray(64)
    recv_exact(stubborn, memoryview(data))
    assert bytes(data) == node.data[:64]
    stubborn.close()
    assert GrantTimeout.__mro__[1] is Unavailable


def test_a_client_out_of_permits_fails_its_read_clearly_instead_of_hanging(nodes, gate):
    node = nodes[0]
    limiter = GrantLimiter(1, wait_s=0.3)
    limiter.acquire()                      # the only permit is taken by a transfer that never ends
    connection = BulkConnection(node.address, 10.0)
    with pytest.raises(BulkTransportError) as caught:       # pytest-timeout would catch a hang
        _read(connection, limiter)
    assert limiter.stats().timed_out == 1
    assert isinstance(caught.value, Unavailable)
    assert "no permit for 262144 bytes from" in str(caught.value) and "1 of 1 transfers" in str(caught.value)
    assert connection.broken               # never reused with a half-done exchange on it
    _wait_until(lambda: node.server.connection_count == 0)   # the server saw the close, freed its thread
    assert gate.stats.asked == 1 and gate.stats.granted == 0
    limiter.release()
    assert _read(BulkConnection(node.address, 10.0), limiter) == node.data


def test_replies_in_flight_never_exceed_k_across_servers_and_threads(nodes, gate):
    permits = 2
    limiter = GrantLimiter(permits, wait_s=10.0)
    errors = []

    def reader(number: int) -> None:
        try:
            connection = BulkConnection(nodes[number % 2].address, 10.0)
            for _ in range(15):
                assert _read(connection, limiter) == nodes[number % 2].data
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Every reply waited for a grant, and the client never had more than K granted at once.
    # The servers' own sending counter is not bounded by K: a server thread decrements it
    # only after its last byte left, and the client may receive that byte, free the permit
    # and grant the next server before the first thread runs again (seen as a peak of K+1).
    assert gate.stats.granted == 90 and gate.stats.timed_out == 0
    _wait_until(lambda: gate.stats.sending_now == 0)   # the last server thread finishes after its last byte
    assert gate.stats.sending_peak >= 1
    assert limiter.stats().in_use_peak <= permits and limiter.stats().in_use == 0


def test_storage_client_reads_with_request_to_send_on_a_real_cluster(cluster):
    """Through fsspec in a fresh process with FFS_CLIENT_RTS_ENABLED=1 against the storage processes."""
    code = ("import fsspec, os\n"
            f"fs = fsspec.filesystem('ffs', host='{cluster.host}', port={cluster.port})\n"
            "data = os.urandom(3 * 1024 * 1024 + 5)\n"
            "fs.pipe('/rts-file-%d' % os.getpid(), data)\n"
            "assert fs.cat('/rts-file-%d' % os.getpid()) == data\n"
            "from fireflyfs.client.config import ClientConfig\n"
            "from fireflyfs.client.rts import limiter_for\n"
            "stats = limiter_for(ClientConfig.from_env()).stats()\n"
            "assert stats.granted >= 1 and stats.in_use == 0 and stats.in_use_peak <= 3, stats\n"
            "print('ok', stats.granted)\n")
    env = dict(os.environ, FFS_CLIENT_RTS_ENABLED="1", FFS_CLIENT_RTS_MAX_CONCURRENT="3")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")
