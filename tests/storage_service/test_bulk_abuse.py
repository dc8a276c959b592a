"""Abuse: one attacker's idle connections, trickles, stalled reads and garbage leave another client working.

Goal (issue 10, "Must hold"): while an attacker opens thousands of idle
connections, trickles write requests a byte at a time, stops reading the
replies of large reads and sends garbage frames, a second client's bulk reads
and writes all succeed with the right bytes; afterwards every chunk holds what
was last acknowledged, no request buffer is held and the listener still
serves.
Method: the two-target node of test_bulk_protocol.py behind a BulkServer
with a 1 s request deadline (and a long idle timeout, so the flood fills its
cap however slowly it connects). The attacker has two loopback addresses: from 127.0.0.2
it keeps topping up a flood of idle connections (far more than the per-peer
cap); from 127.0.0.4 it runs trickling writers, stalled readers and garbage
senders, reconnecting whenever it is cut. The good client is a BulkConnection
bound to 127.0.0.3 writing and reading back random data in a loop. Every
size, count and payload derives from one seed, printed first with the
parameters (FFS_SEED replays). The default run lasts a few seconds; the slow
one is larger and longer.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time

import crc32c
import pytest

from fireflyfs.client.bulk_client import BulkConnection
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.proto import bulk_io
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.storage_service.bulk_connections import BulkLimits
from fireflyfs.storage_service.bulk_server import BulkServer
from fireflyfs.storage_service.chunk_meta import chunk_key
from tests.conftest import announce_seed, seed_from_env

from .test_bulk_fuzz import exchange, replies_are_well_formed
from .test_bulk_limits import SAFETY_S, wait_for, write_frame
from .test_bulk_protocol import Node, read

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # the frame layer, in-process (tests/conftest.py)

FLOOD_HOST, GOOD_HOST, ATTACK_HOST = "127.0.0.2", "127.0.0.3", "127.0.0.4"
GOOD_CHUNK_BYTES = 1 * MiB
IDLE_S = 60.0        # the flood must fill its per-peer cap however slowly it connects (idle cuts: test_bulk_limits)
GOOD_INODE = 77
SENTINEL_INODE = 78
SENTINEL_BYTES = 32 * MiB    # more than any socket buffer holds (wmem_max is 4 MiB here): a stalled read stalls


class _SocketFrom:
    """The socket module as proto/bulk_io.connect sees it, with every connection made from one source
    address."""

    def __init__(self, host: str) -> None:
        self._host = host

    def __getattr__(self, name: str):
        return getattr(socket, name)

    def create_connection(self, address, timeout=None, source_address=None):
        return socket.create_connection(address, timeout, (self._host, 0))


def connect_from(host: str, port: int, timeout_s: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.settimeout(timeout_s)
    sock.connect(("127.0.0.1", port))
    return sock


class Attack:
    """The attacker's threads; each records what it saw."""

    def __init__(self, server: BulkServer, rng: random.Random, flood: int, tricklers: int, stalled_readers: int,
                 garbage_senders: int) -> None:
        self.server = server
        self.port = server.port
        self.seeds = [rng.getrandbits(32) for _ in range(tricklers + garbage_senders + 1)]
        self.flood = flood
        self.stop = threading.Event()
        self.flooded = threading.Event()        # the first `flood` connections are open
        self.idle: list[socket.socket] = []
        self.flood_connects = 0
        self.trickle_cuts = [0] * tricklers
        self.trickle_completed = 0
        self.stalled_cuts = [0] * stalled_readers
        self.stalled_refused = 0
        self.garbage_exchanges = 0
        self.garbage_errors = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._flood, name="flood")]
        self.threads += [threading.Thread(target=self._trickle, args=(n,), name=f"trickle-{n}")
                         for n in range(tricklers)]
        self.threads += [threading.Thread(target=self._stalled_reader, args=(n,), name=f"stalled-{n}")
                         for n in range(stalled_readers)]
        self.threads += [threading.Thread(target=self._garbage, args=(n,), name=f"garbage-{n}")
                         for n in range(garbage_senders)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(SAFETY_S)
        for sock in self.idle:
            sock.close()

    def _guard(self, what: str, step) -> None:
        try:
            step()
        except Exception as exc:       # noqa: BLE001 - recorded, the test fails on it
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def _flood(self) -> None:
        """Open `flood` idle connections from FLOOD_HOST, then keep replacing those the server closed."""
        while not self.stop.is_set():
            while len(self.idle) < self.flood and not self.stop.is_set():
                with contextlib.suppress(OSError):       # a full backlog: connect times out
                    self.idle.append(connect_from(FLOOD_HOST, self.port))
                    self.flood_connects += 1
            self.flooded.set()
            self.stop.wait(0.5)
            open_now = []
            for sock in self.idle:
                if _closed(sock):
                    sock.close()
                else:
                    open_now.append(sock)
            self.idle = open_now

    def _trickle(self, number: int) -> None:
        """Write requests of 16 MiB sent a byte every 20-100 ms; reconnect when cut."""
        rng = random.Random(self.seeds[number])
        while not self.stop.is_set():
            frame = write_frame(0, 16 * MiB, chunk_size=16 * MiB, index=number)
            try:
                sock = connect_from(ATTACK_HOST, self.port)
            except OSError:
                self.stop.wait(0.05)
                continue
            with sock:
                sent = rng.choice([rng.randrange(len(frame)), len(frame)])   # trickle the header, or the data
                try:
                    sock.sendall(frame[:sent])
                    while not self.stop.is_set():
                        sock.send(b"\x01")
                        sent += 1
                        if sent >= len(frame) + 16 * MiB:
                            self.trickle_completed += 1
                            break
                        if _closed(sock, rng.uniform(0.02, 0.1)):
                            self.trickle_cuts[number] += 1
                            break
                except OSError:
                    self.trickle_cuts[number] += 1

    def _stalled_reader(self, number: int) -> None:
        """Ask for the 32 MiB sentinel chunk with a tiny receive buffer and never read; reconnect when cut."""
        while not self.stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KiB)
                    sock.bind((ATTACK_HOST, 0))
                    sock.settimeout(2.0)
                    sock.connect(("127.0.0.1", self.port))
                    sock.sendall(wire.header(wire.OP_READ, 1, wire.READ_IO.size, 0)
                                 + wire.READ_IO.pack(2, 1, SENTINEL_INODE, 1, 0, SENTINEL_BYTES))
                except OSError:
                    self.stop.wait(0.05)
                    continue
                port = sock.getsockname()[1]

                def state() -> str:
                    for host, peer_port, phase, reason in self.server.describe_connections():
                        if (host, peer_port) == (ATTACK_HOST, port):
                            return "cut" if reason else phase.value
                    return "gone"

                seen = False                    # not reading, until the server took it and then cut it
                while not self.stop.is_set() and not (seen and state() in ("cut", "gone", "idle")):
                    seen = seen or state() != "gone"
                    self.stop.wait(0.05)
                if self.stop.is_set():
                    continue
                if state() == "idle":           # answered at once: the attacker's buffer share is spent
                    self._guard("refused read", lambda: self._refused_read(sock))
                    continue
                received = 0
                try:
                    sock.settimeout(SAFETY_S)
                    while part := sock.recv(MiB):
                        received += len(part)
                except TimeoutError:
                    self.failures.append(f"stalled reader {number}: the server kept the connection open")
                    continue
                except ConnectionResetError:
                    pass
                if received >= wire.HEADER.size + SENTINEL_BYTES:
                    self.failures.append(f"stalled reader {number}: the whole reply came after the deadline")
                self.stalled_cuts[number] += 1

    def _refused_read(self, sock: socket.socket) -> None:
        sock.settimeout(SAFETY_S)
        header = sock.recv(wire.HEADER.size, socket.MSG_WAITALL)
        _, status, _, meta_len, _ = wire.parse_header(header)
        assert status == wire.STATUS_ERROR, "a stalled read answered in full"
        assert "busy" in str(wire.error_from_text(sock.recv(meta_len, socket.MSG_WAITALL)))
        self.stalled_refused += 1

    def _garbage(self, number: int) -> None:
        rng = random.Random(self.seeds[-1 - number])
        while not self.stop.is_set():
            kind = rng.randrange(3)
            if kind == 0:
                payload = rng.randbytes(rng.randrange(1, 200))
            elif kind == 1:
                payload = wire.HEADER.pack(wire.MAGIC, rng.choice([1, 2, 3, 5, 9]), rng.choice([0, 1]),
                                           rng.randrange(1 << 16), rng.choice([0, 28, (1 << 32) - 1]),
                                           rng.choice([0, 1 << 26, (1 << 64) - 1])) + rng.randbytes(50)
            else:
                payload = write_frame(0, 100, chunk_size=3 * MiB) + rng.randbytes(100)   # not a power of two
            try:
                reply = exchange(self.port, payload, ATTACK_HOST)
            except OSError:
                self.stop.wait(0.05)
                continue
            self._guard("garbage reply", lambda: replies_are_well_formed(reply))
            self.garbage_exchanges += 1
            self.garbage_errors += reply[:wire.HEADER.size].startswith(wire.MAGIC)


def _closed(sock: socket.socket, wait_s: float = 0.0) -> bool:
    """Whether the peer closed sock (EOF or reset), waiting up to wait_s for news."""
    try:
        sock.settimeout(wait_s) if wait_s else sock.setblocking(False)
        return sock.recv(1 << 16) == b""
    except (BlockingIOError, TimeoutError):
        return False
    except OSError:
        return True


def run_abuse(request, monkeypatch, tmp_path, *, flood: int, per_peer: int, tricklers: int, stalled_readers: int,
              garbage_senders: int, duration_s: float) -> None:
    seed = seed_from_env()
    announce_seed(request, seed, flood=flood, per_peer=per_peer, tricklers=tricklers,
                  stalled_readers=stalled_readers, garbage_senders=garbage_senders, duration_s=duration_s)
    rng = random.Random(seed)
    node = Node(tmp_path)
    limits = BulkLimits(connections_max=per_peer + 2 * (tricklers + stalled_readers + garbage_senders) + 16,
                        connections_per_peer_max=per_peer, inflight_bytes_max=256 * MiB,
                        inflight_bytes_per_peer_max=64 * MiB, budget_wait_s_max=0.5, idle_s_max=IDLE_S,
                        request_s_max=1.0)
    server = BulkServer(node.server.handler, "127.0.0.1:0", peer_timeout_s=2.0, limits=limits)
    server.start()
    sentinel = rng.randbytes(SENTINEL_BYTES)
    node.targets[102].engine.write(chunk_key(SENTINEL_INODE, 1), 0, sentinel, SENTINEL_BYTES, 1)
    attack = Attack(server, rng, flood, tricklers, stalled_readers, garbage_senders)
    monkeypatch.setattr(bulk_io, "socket", _SocketFrom(GOOD_HOST))
    good = BulkConnection(server.address, SAFETY_S)
    model: dict[tuple[int, int], bytes] = {}
    good_ops = 0
    flood_held_max = 0
    seqnum = 0
    try:
        attack.start()
        started = time.monotonic()
        while time.monotonic() - started < duration_s or not attack.flooded.is_set():
            chain = rng.choice([1, 2])
            index = rng.randrange(8)
            data = memoryview(rng.randbytes(rng.randrange(1, 512 * KiB)))
            seqnum += 1
            reply = good.write(chain, 1, GOOD_INODE, index, 0, data, crc32c.crc32c(data), GOOD_CHUNK_BYTES,
                               b"good-client", 1, seqnum)
            before = model.get((chain, index), b"")
            model[(chain, index)] = bytes(data) + before[len(data):]
            assert reply[1] == len(model[(chain, index)])
            got = read(good, (chain, 1, GOOD_INODE, index, 0, GOOD_CHUNK_BYTES))[0][0]
            assert got == model[(chain, index)], f"chain {chain} chunk {index} read back wrong"
            offset = rng.randrange(len(sentinel))
            got = read(good, (2, 1, SENTINEL_INODE, 1, offset, 64 * KiB))[0][0]
            assert got == sentinel[offset:offset + 64 * KiB]
            good_ops += 3
            flood_held_max = max(flood_held_max, server.connections_from(FLOOD_HOST))
            assert server.budget.peer_bytes(ATTACK_HOST) <= limits.inflight_bytes_per_peer_max
    finally:
        attack.finish()
    try:
        print(f"good client: {good_ops} ops; flood: {attack.flood_connects} connects, {server.refused_count} "
              f"refused; trickle cuts {attack.trickle_cuts}; stalled-read cuts {attack.stalled_cuts} "
              f"({attack.stalled_refused} refused for budget); "
              f"garbage {attack.garbage_exchanges} exchanges ({attack.garbage_errors} error replies); "
              f"watchdog cuts {server.cut_count}; budget peak {server.budget.in_use_bytes_peak >> 20} MiB")
        assert not attack.failures, attack.failures[:5]
        assert good_ops and not good.broken
        assert attack.flood_connects >= flood and server.refused_count >= flood - per_peer
        assert flood_held_max == per_peer, "the flood filled its per-peer cap and no more"
        assert all(attack.trickle_cuts) and attack.trickle_completed == 0
        assert all(attack.stalled_cuts)
        assert attack.garbage_exchanges and attack.garbage_errors
        assert 16 * MiB <= server.budget.in_use_bytes_peak <= limits.inflight_bytes_max   # tricklers held some
        wait_for(lambda: server.connection_count == server.connections_from(GOOD_HOST),
                 "the attacker's connections are gone",
                 server.describe_connections)
        wait_for(lambda: server.budget.in_use_bytes == 0, "no request buffer held")
        for (chain, index), data in model.items():
            target = node.targets[100 + chain]
            assert target.engine.read(chunk_key(GOOD_INODE, index), 0, GOOD_CHUNK_BYTES)[0] == data
        assert node.targets[102].engine.read(chunk_key(SENTINEL_INODE, 1), 0, SENTINEL_BYTES)[0] == sentinel
        assert read(BulkConnection(server.address, SAFETY_S), (2, 1, SENTINEL_INODE, 1, 0, 10))[0][0] == sentinel[:10]
    finally:
        good.close()
        server.stop()
        node.close()


def test_an_attacker_leaves_another_clients_reads_and_writes_working(request, monkeypatch, tmp_path):
    run_abuse(request, monkeypatch, tmp_path, flood=1000, per_peer=100, tricklers=3, stalled_readers=2,
              garbage_senders=2, duration_s=4.0)


@pytest.mark.slow
def test_an_attacker_leaves_another_clients_reads_and_writes_working_soak(request, monkeypatch, tmp_path):
    run_abuse(request, monkeypatch, tmp_path, flood=5000, per_peer=800, tricklers=8, stalled_readers=4,
              garbage_senders=4, duration_s=60.0)
