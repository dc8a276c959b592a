"""Property: no byte sequence sent to the bulk listener crashes it, hangs it, or changes stored data.

Method: hypothesis draws what a connection sends: random bytes, frame
headers with random fields (bad magic, unknown ops and statuses, lengths up to
2^32-1 and 2^64-1), and well-framed reads and writes with random chains,
chunks, offsets, lengths and checksums, one to three back to back, cut short
or not. Each goes to a real listener on a fresh connection, which is then
half-closed: the listener must answer only with well-formed frames (each a
reply or an error naming a known error) and close the connection. After each
example a pooled client connection reads a chunk the fuzzer cannot address
and gets its bytes; at the end that chunk is unchanged and no request buffer
is held. FFS_SEED replays hypothesis' draws (announced with the seed).
"""

from __future__ import annotations

import pytest

import os
import socket

import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from fireflyfs.client.bulk_client import BulkConnection
from fireflyfs.common.errors import FfsError
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.storage_service.bulk_connections import BulkLimits
from fireflyfs.storage_service.bulk_server import BulkServer
from fireflyfs.storage_service.chunk_meta import chunk_key

from .test_bulk_limits import SAFETY_S, wait_for
from .test_bulk_protocol import CHUNK, Node, read

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # the frame layer, in-process (tests/conftest.py)

SENTINEL_INODE = 1 << 40           # the fuzzer draws inodes below 1000
EXAMPLES = int(os.environ.get("FFS_BULK_FUZZ_EXAMPLES", "80"))

u32 = st.one_of(st.integers(0, 4), st.integers(0, 1 << 32 - 1), st.just((1 << 32) - 1))
lengths32 = st.one_of(st.integers(0, 300), st.sampled_from([wire.READ_IO.size, wire.WRITE_REQUEST.size,
                                                            (1 << 32) - 1, 1 << 31]))
lengths64 = st.one_of(st.integers(0, 300), st.sampled_from([CHUNK, 64 << 20, (64 << 20) + 1, (1 << 64) - 1]))
chains = st.sampled_from([0, 1, 2, 3, 44])

raw_headers = st.builds(
    lambda magic, op, status, count, meta_len, data_len, tail: wire.HEADER.pack(
        magic, op, status, count, meta_len, data_len) + tail,
    st.sampled_from([wire.MAGIC, wire.MAGIC, b"FFB0", b"\x00\x00\x00\x00"]), st.integers(0, 255),
    st.sampled_from([0, 0, 1, 2, 255]), st.integers(0, 65535), lengths32, lengths64, st.binary(max_size=300))

read_ios = st.tuples(chains, st.integers(0, 3), st.integers(0, 999), st.integers(0, 4), u32, u32)
reads = st.builds(
    lambda op, ios: wire.header(op, len(ios), len(ios) * wire.READ_IO.size, 0)
    + b"".join(wire.READ_IO.pack(*io) for io in ios),
    st.sampled_from([wire.OP_READ, wire.OP_READ_RTS]), st.lists(read_ios, max_size=4))


def _write(chain, version, inode, index, offset, chunk_size, checksum, client_id, data, right_crc) -> bytes:
    meta = wire.WRITE_REQUEST.pack(chain, version, inode, index, offset, chunk_size,
                                   crc32c.crc32c(data) if right_crc else checksum, 1, 1, len(client_id)) + client_id
    return wire.header(wire.OP_WRITE, 1, len(meta), len(data)) + meta + data


writes = st.builds(_write, chains, st.integers(0, 3), st.integers(0, 999), st.integers(0, 4), u32,
                   st.sampled_from([0, 1000, CHUNK, 3 * CHUNK, 1 << 26, 1 << 27]), u32, st.binary(max_size=8),
                   st.binary(max_size=2048), st.booleans())
grants = st.just(wire.header(wire.OP_GRANT, 0, 0, 0))


def _update(version, targets, chain, chain_version, inode, index, offset, chunk_size, flags, token, data,
            right_crc) -> bytes:
    full_replace, kind = flags
    meta = wire.UPDATE_REQUEST.pack(version, targets[0], targets[1], chain, chain_version, inode, index, offset,
                                    chunk_size, crc32c.crc32c(data) if right_crc else 7, full_replace, kind,
                                    offset, 1, len(token)) + token
    return wire.header(wire.OP_UPDATE, 1, len(meta), len(data)) + meta + data


# Chain updates as a broken or hostile peer might send them (never to the sentinel's inode).
target_pairs = st.tuples(st.sampled_from([0, 101, 201]), st.sampled_from([0, 101, 201]))
updates = st.builds(_update, st.integers(0, 5), target_pairs,
                    chains, st.integers(0, 3), st.integers(0, 999), st.integers(0, 4), u32,
                    st.sampled_from([0, 1000, CHUNK, 3 * CHUNK, 1 << 26, 1 << 27]),
                    st.tuples(st.integers(0, 2), st.integers(0, 2)), st.binary(max_size=40),
                    st.binary(max_size=2048), st.booleans())

frames = st.lists(st.one_of(st.binary(max_size=200), raw_headers, reads, writes, grants, updates),
                  min_size=1, max_size=3)
sends = st.tuples(frames, st.one_of(st.none(), st.integers(0, 400)))     # all of it, or cut after n bytes


def replies_are_well_formed(reply: bytes) -> None:
    """Every frame the server sent parses; error frames name a known error."""
    position = 0
    while position < len(reply):
        header = reply[position:position + wire.HEADER.size]
        assert len(header) == wire.HEADER.size, f"a torn reply header at {position}"
        op, status, count, meta_len, data_len = wire.parse_header(header)
        position += wire.HEADER.size
        if status == wire.STATUS_ERROR:
            assert data_len == 0 and meta_len <= wire.error_text_bytes_max
            assert isinstance(wire.error_from_text(reply[position:position + meta_len]), FfsError)
        assert op in (wire.OP_READ, wire.OP_WRITE, wire.OP_RTS, wire.OP_UPDATE), f"reply op {op}"
        position += meta_len + data_len
        assert position <= len(reply), "a reply shorter than its header says"


def exchange(port: int, payload: bytes, source_host: str = "127.0.0.1") -> bytes:
    """Send payload, half-close, and return all the server sent until it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY_S, source_address=(source_host, 0)) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass        # the server may close before taking it all (a rejected header)
        chunks = []
        while True:
            try:
                part = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"the server kept a half-closed connection open for {SAFETY_S} s")
            if not part:
                break
            chunks.append(part)
    return b"".join(chunks)


def test_garbage_never_crashes_the_listener_and_stored_data_stays(tmp_path, seed):
    node = Node(tmp_path)
    server = BulkServer(node.server.handler, "127.0.0.1:0", peer_timeout_s=5.0,
                        limits=BulkLimits(request_s_max=5.0, budget_wait_s_max=1.0))
    server.start()
    sentinel = os.urandom(3 * 4096 + 5)
    node.targets[101].engine.write(chunk_key(SENTINEL_INODE, 0), 0, sentinel, CHUNK, 1)
    good = BulkConnection(server.address, SAFETY_S)

    @hypothesis_seed(seed)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sends)
    def check(drawn) -> None:
        parts, cut_after = drawn
        payload = b"".join(parts)
        if cut_after is not None:
            payload = payload[:cut_after]
        replies_are_well_formed(exchange(server.port, payload))
        assert read(good, (1, 1, SENTINEL_INODE, 0, 0, len(sentinel)))[0][0] == sentinel

    try:
        check()
        wait_for(lambda: server.connection_count == 1, "every fuzz connection closed")
        wait_for(lambda: server.budget.in_use_bytes == 0 and server.chain_budget.in_use_bytes == 0,
                 "no request buffer held")
        assert node.targets[101].engine.read(chunk_key(SENTINEL_INODE, 0), 0, CHUNK)[0] == sentinel
        assert not good.broken
    finally:
        good.close()
        server.stop()
        node.close()
