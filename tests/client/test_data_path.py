"""The client's data path end to end: bulk vs gRPC, readahead and write-behind streams, fork and threads.

Method: the session cluster (3 nodes, R=3, bulk listeners on) with files of
small chunks so every pattern crosses chunk and stripe boundaries; results
are compared with the bytes written (a plain Python model). One dedicated
cluster runs with the bulk listener off (FFS_STORAGE_BULK=0) to show the
gRPC fallback end to end; stream error paths use in-process fakes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
import types

import fsspec
import pytest

from fireflyfs.client.buffers import filled_bytes
from fireflyfs.client.client import FfsClient
from fireflyfs.proto import types_pb2
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.streams import SequentialReader, WriteBehind
from fireflyfs.common.errors import Unavailable
from fireflyfs.common.layout import Layout

from tests.conftest import unique_dir

CHUNK = 64 * 1024


def write_file(client: FfsClient, path: str, data: bytes) -> None:
    handle = client.create(path, chunk_size=CHUNK, stripe_size=3)
    client.pwrite(handle, 0, data)
    client.close(handle, len(data))


def test_bulk_and_grpc_paths_agree(cluster):
    bulk = FfsClient(f"{cluster.host}:{cluster.port}")
    grpc_only = FfsClient(f"{cluster.host}:{cluster.port}", ClientConfig.from_env(bulk_enabled=0))
    assert all(node.bulk_address for node in bulk.routing.routing_info().nodes
               if node.type == types_pb2.NODE_STORAGE), "storage nodes advertise bulk"
    base = unique_dir("paths-agree")
    data = os.urandom(5 * CHUNK + 999)
    write_file(bulk, f"{base}/by-bulk", data)
    write_file(grpc_only, f"{base}/by-grpc", data)
    rng = random.Random(3)
    requests = [(path, rng.randrange(len(data)), rng.choice([1, 100, CHUNK, 2 * CHUNK + 7]))
                for path in (f"{base}/by-bulk", f"{base}/by-grpc") for _ in range(40)]
    one = bulk.read_batch(requests)
    two = grpc_only.read_batch(requests)
    assert one.nbytes == two.nbytes and bytes(one.buffer) == bytes(two.buffer)
    for number, (_, offset, length) in enumerate(requests):
        assert bytes(one.view(number)) == data[offset:offset + length]


def test_sequential_reader_follows_any_read_pattern(ffs, ffs_dir):
    data = os.urandom(7 * CHUNK + 321)
    path = f"{ffs_dir}/patterns"
    write_file(ffs.client, path, data)
    with ffs.open(path, "rb", cache_type="none") as handle:
        reader = handle._reader
        got = bytearray()
        while True:                       # odd sizes, front to back: the readahead window grows
            piece = handle.read(10_007)
            if not piece:
                break
            got += piece
        assert got == data
        handle.seek(CHUNK - 5)            # a jump drops the readahead and starts again
        assert handle.read(10) == data[CHUNK - 5:CHUNK + 5]
        buffer = bytearray(300_000)       # large readinto: straight into the caller's buffer
        handle.seek(3)
        assert handle.readinto(buffer) == 300_000 and buffer == data[3:300_003]
        assert reader._window_bytes == 0 and not reader._ahead, "a jump asks for its bytes only"
        rest = len(data) - 300_003
        assert handle.readinto(buffer) == rest and buffer[:rest] == data[300_003:]
        assert reader._window_bytes > 0, "a read that continues the last one grows the window"
        handle.seek(len(data) - 10)
        assert handle.readinto(buffer) == 10 and buffer[:10] == data[-10:]
        assert reader._window_bytes == 0 and not reader._ahead
        handle.seek(0)
        assert handle.read() == data
    rng = random.Random(5)
    with ffs.open(path, "rb", cache_type="none") as handle:
        for _ in range(50):
            offset, size = rng.randrange(len(data) + 10), rng.randrange(1, 3 * CHUNK)
            handle.seek(offset)
            assert handle.read(size) == data[offset:offset + size]


def test_write_behind_cuts_at_chunk_boundaries_and_appends(ffs, ffs_dir):
    path = f"{ffs_dir}/written"
    rng = random.Random(8)
    model = bytearray()
    with ffs.open(path, "wb") as handle:
        for size in (1, CHUNK - 1, 5, 3 * CHUNK + 11, 0, CHUNK, 777):
            piece = rng.randbytes(size)
            assert handle.write(memoryview(piece)) == size
            model += piece
            assert handle.tell() == len(model)
        handle.flush()
    assert ffs.cat(path) == model
    with ffs.open(path, "ab") as handle:
        handle.write(b"tail" * 20_000)
        model += b"tail" * 20_000
    assert ffs.cat(path) == model
    assert ffs.info(path)["size"] == len(model)


def test_files_without_bulk_listeners_use_grpc(make_cluster):
    local = make_cluster(storage_nodes=2, replicas=1, heartbeat_timeout_ms=None,
                         extra_env={"FFS_STORAGE_BULK": "0"})
    fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
    assert not any(node.bulk_address for node in fs.client.routing.routing_info().nodes)
    data = os.urandom(3 * 1024 * 1024 + 5)
    with fs.open("/plain/file", "wb") as handle:
        handle.write(data)
    with fs.open("/plain/file", "rb", cache_type="none") as handle:
        assert handle.read() == data
    result = fs.client.read_batch([("/plain/file", 5, 10), ("/plain/file", 4 << 20, 10)])
    assert bytes(result.view(0)) == data[5:15] and result.nbytes[1] == 0


def _child_round_trip(address: str, path: str, seed: int) -> bool:
    fs = fsspec.filesystem("ffs", host=address.split(":")[0], port=int(address.split(":")[1]))
    data = random.Random(seed).randbytes(3 * CHUNK + seed)
    write_file(fs.client, path, data)
    with fs.open(path, "rb", cache_type="none") as handle:
        return handle.read() == data


def test_concurrent_readers_and_writers_in_threads_and_forked_processes(ffs, ffs_dir, cluster):
    # The parent uses its bulk connections first, so the children inherit live pooled sockets.
    warm = os.urandom(CHUNK * 2)
    write_file(ffs.client, f"{ffs_dir}/warm", warm)
    assert ffs.cat(f"{ffs_dir}/warm") == warm
    address = f"{cluster.host}:{cluster.port}"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threads = [pool.submit(_child_round_trip, address, f"{ffs_dir}/thread-{n}", n) for n in range(4)]
        context = multiprocessing.get_context("fork")
        with context.Pool(2) as processes:
            forked = processes.starmap(_child_round_trip,
                                       [(address, f"{ffs_dir}/fork-{n}", 10 + n) for n in range(2)])
        assert all(future.result() for future in threads)
    assert forked == [True, True]
    assert ffs.cat(f"{ffs_dir}/warm") == warm, "the parent's pooled connections still work"


# ---- stream error paths with fakes -------------------------------------------------------------


class _FailingStorage:
    def __init__(self, fail_at: int) -> None:
        self.config = ClientConfig(write_behind_chunks=2)
        self.calls: list[tuple[int, bytes]] = []
        self.fail_at = fail_at
        executor = concurrent.futures.ThreadPoolExecutor(2)
        self._pool = types.SimpleNamespace(executor=lambda: executor)

    def write(self, inode_id, layout, offset, data):
        self.calls.append((offset, bytes(data)))
        if offset == self.fail_at:
            raise Unavailable("node gone for good")


LAYOUT = Layout(chunk_size=CHUNK, stripe_size=1, chain_table_id=1, chain_table_version=1, chain_base=1, seed=0)


def test_write_behind_reports_a_failed_chunk_at_the_latest_on_flush():
    storage = _FailingStorage(fail_at=CHUNK)
    writer = WriteBehind(storage, 1, LAYOUT, 100)
    writer.write(b"x" * (3 * CHUNK))
    with pytest.raises(Unavailable):
        writer.flush()
    offsets = sorted(offset for offset, _ in storage.calls)
    assert offsets == [100, CHUNK, 2 * CHUNK, 3 * CHUNK], "cut at chunk boundaries from an unaligned start"
    assert [len(data) for _, data in sorted(storage.calls)] == [CHUNK - 100, CHUNK, CHUNK, 100]


def test_sequential_reader_without_bulk_uses_read_into():
    calls = []

    class Storage:
        config = ClientConfig(bulk_enabled=0)
        bulk = None          # no bulk connection pool: the transport is gRPC only

        def read_into(self, requests, outs):
            calls.append((requests[0].offset, len(outs[0])))
            outs[0][:] = b"z" * len(outs[0])
            return [None]

    reader = SequentialReader(Storage(), 1, LAYOUT, 10 * CHUNK)
    out = memoryview(bytearray(1000))
    assert reader.readinto(5, out) == 1000 and bytes(out) == b"z" * 1000
    assert reader.readinto(10 * CHUNK - 10, out) == 10
    assert calls == [(5, 1000), (10 * CHUNK - 10, 10)]


def test_filled_bytes_are_real_bytes():
    data = filled_bytes(10_000, lambda view: view.__setitem__(slice(None), b"ab" * 5000))
    assert type(data) is bytes and data == b"ab" * 5000 and hash(data) == hash(b"ab" * 5000)
    assert filled_bytes(3, lambda view: view.__setitem__(slice(None), b"xyz")) == b"xyz"
