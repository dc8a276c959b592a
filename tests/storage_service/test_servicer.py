"""The Storage servicer over a real gRPC server on 127.0.0.1, routing filled directly (one-replica
chains; replication across nodes is tested in test_replication.py).

Method: two local targets (101, 102) serve chains 1 and 2; chain 3 lives on a
remote target. Every call goes through a real channel, and errors come back
through the client-side mapping (rpc_errors_mapped / IoStatus names), exactly
as the client library sees them.
"""

from __future__ import annotations

import crc32c
import pytest

from fireflyfs.common import limits
from fireflyfs.common.errors import (ChecksumMismatch, InvalidArgument, NotFound, NotHead, StaleChainVersion, TooLarge, Unavailable)
from fireflyfs.common.rpc import make_channel, make_server, rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.servicer import StorageServicer
from fireflyfs.storage_service.target import Target

CHUNK = 64 * 1024


def routing_info(version: int = 5, chain1_version: int = 1) -> types_pb2.RoutingInfo:
    return types_pb2.RoutingInfo(version=version, chains=[
        types_pb2.ChainInfo(id=1, version=chain1_version, targets=[101]),
        types_pb2.ChainInfo(id=2, version=1, targets=[102]),
        types_pb2.ChainInfo(id=3, version=1, targets=[201]),
    ], targets=[types_pb2.TargetInfo(id=t, node_id=t // 100, chain_id=c, public_state=types_pb2.SERVING)
                for t, c in ((101, 1), (102, 2), (201, 3))])


class Node:
    def __init__(self, tmp_path, register: bool = True) -> None:
        self.targets = {tid: Target(tid, tmp_path / f"target-{tid}", block_size=4096) for tid in (101, 102)}
        self.fence = Fence(1, heartbeat_timeout_ms=10_000)
        self.clock = [1000.0]
        self.routing = RoutingView(1, list(self.targets), self.fence, clock=lambda: self.clock[0])
        if register:
            self.fence.contact_ok(self.clock[0])
            self.routing.update(routing_info())
        self.peers = Peers(self.routing)
        self.server, port = make_server("127.0.0.1:0", max_workers=4)
        storage_pb2_grpc.add_StorageServicer_to_server(
            StorageServicer(1, self.targets, self.routing, ChainDriver(self.routing, self.peers)), self.server)
        self.server.start()
        self.channel = make_channel(f"127.0.0.1:{port}")
        self.stub = storage_pb2_grpc.StorageStub(self.channel)

    def close(self) -> None:
        self.peers.close()
        self.channel.close()
        self.server.stop(0).wait()
        for target in self.targets.values():
            target.close()

    def write(self, data: bytes, *, chain: int = 1, version: int = 1, inode: int = 9, index: int = 0,
              offset: int = 0, chunk_size: int = CHUNK, checksum: int | None = None, **extra):
        request = storage_pb2.WriteRequest(
            chain_id=chain, chain_version=version, chunk=types_pb2.ChunkId(inode=inode, index=index),
            offset=offset, data=data, checksum=crc32c.crc32c(data) if checksum is None else checksum,
            chunk_size=chunk_size, **extra)
        with rpc_errors_mapped():
            return self.stub.Write(request, timeout=10)

    def read(self, *ios, verify: bool = True) -> list[storage_pb2.ReadResult]:
        request = storage_pb2.BatchReadRequest(verify_checksum=verify, ios=[
            storage_pb2.ReadIO(chain_id=chain, chain_version=version,
                               chunk=types_pb2.ChunkId(inode=inode, index=index), offset=offset,
                               length=length)
            for chain, version, inode, index, offset, length in ios])
        with rpc_errors_mapped():
            return list(self.stub.BatchRead(request, timeout=10).results)


@pytest.fixture
def node(tmp_path):
    running = Node(tmp_path)
    yield running
    running.close()


def test_write_then_batch_read(node):
    reply = node.write(b"hello world", offset=100)
    assert (reply.commit_version, reply.chunk_length) == (1, 111)
    meta = node.targets[101].engine.get_meta(chunk_key(9, 0))
    assert reply.chunk_checksum == meta.chunk_checksum
    results = node.read((1, 1, 9, 0, 100, 5), (1, 1, 9, 0, 0, 200), (1, 1, 9, 0, 500, 10),
                        (1, 1, 9, 7, 0, 10))
    assert [r.status.error for r in results] == ["", "", "", ""]
    assert results[0].data == b"hello" and results[0].checksum == crc32c.crc32c(b"hello")
    assert results[1].data == bytes(100) + b"hello world"          # hole zero-filled, short at the end
    assert (results[1].chunk_length, results[1].commit_version) == (111, 1)
    assert results[2].data == b"" and results[2].chunk_length == 111   # past the end: empty
    assert (results[3].data, results[3].chunk_length, results[3].commit_version) == (b"", 0, 0)  # missing
    # The other local chain is another target: same chunk id, separate data.
    assert node.read((2, 1, 9, 0, 0, 10))[0].data == b""


def test_batch_read_per_io_statuses(node):
    node.write(b"x" * 10000)
    engine = node.targets[101].engine
    meta = engine.get_meta(chunk_key(9, 0))
    with open(engine.chunks_dir / f"{chunk_key(9, 0).hex()}.{meta.file_version}", "r+b") as handle:
        handle.seek(5000)
        handle.write(b"y")  # corrupt block 1 (4 KiB blocks)
    results = node.read((1, 1, 9, 0, 0, 4096), (1, 2, 9, 0, 0, 10), (3, 1, 9, 0, 0, 10),
                        (44, 1, 9, 0, 0, 10), (1, 1, 9, 0, 4096, 10), (1, 1, 9, 0, 8192, 100))
    assert [r.status.error for r in results] == [
        "", "StaleChainVersion", "NotHead", "StaleChainVersion", "ChecksumMismatch", ""]
    assert "chunk 9:0 block 1" in results[4].status.message and results[4].data == b""
    assert results[0].data == b"x" * 4096 and results[5].data == b"x" * 100
    assert "chain 3" in results[2].status.message


def test_write_errors_store_nothing(node):
    node.write(b"base")
    cases = [
        (dict(version=2), StaleChainVersion),
        (dict(chain=3), NotHead),
        (dict(chain=45), StaleChainVersion),
        (dict(checksum=1), ChecksumMismatch),
        (dict(offset=CHUNK - 2), InvalidArgument),
        (dict(chunk_size=CHUNK + 1), InvalidArgument),
        (dict(chunk_size=2 * CHUNK), InvalidArgument),       # the chunk exists with another size
        (dict(chunk_size=limits.chunk_size_max * 2), InvalidArgument),
    ]
    for kwargs, error in cases:
        with pytest.raises(error) as caught:
            node.write(b"new!", **kwargs)
        assert str(caught.value), kwargs
    assert node.read((1, 1, 9, 0, 0, 100))[0].data == b"base"
    assert node.targets[101].engine.get_meta(chunk_key(9, 0)).commit_version == 1


def test_too_many_ios_is_refused(node):
    too_many = [(1, 1, 9, 0, 0, 1)] * (limits.batch_read_ios_max + 1)
    with pytest.raises(TooLarge):
        node.read(*too_many)
    with pytest.raises(TooLarge):
        node.read(*[(1, 1, 9, 0, 0, limits.chunk_size_max)] * 2)


def test_exactly_once_writes(node):
    first = node.write(b"aaaa", client_id="c1", channel=3, seqnum=7)
    # The retry of seqnum 7 carries the same reply and is not applied again.
    again = node.write(b"aaaa", client_id="c1", channel=3, seqnum=7)
    assert again == first and first.commit_version == 1
    second = node.write(b"bb", offset=4, client_id="c1", channel=3, seqnum=8)
    assert second.commit_version == 2
    with pytest.raises(InvalidArgument):
        node.write(b"aaaa", client_id="c1", channel=3, seqnum=6)
    # Another channel of the same client is independent.
    assert node.write(b"c", offset=6, client_id="c1", channel=4, seqnum=7).commit_version == 3
    assert node.read((1, 1, 9, 0, 0, 100))[0].data == b"aaaabbc"


def test_truncate_remove_and_last_chunk(node):
    for index in (0, 2, 5):
        node.write(b"z" * (1000 + index), index=index, inode=33)
    query = storage_pb2.QueryLastChunkRequest(queries=[
        storage_pb2.LastChunkQuery(chain_id=1, chain_version=1, inode=33),
        storage_pb2.LastChunkQuery(chain_id=1, chain_version=1, inode=34),
        storage_pb2.LastChunkQuery(chain_id=1, chain_version=9, inode=33),
    ])
    results = node.stub.QueryLastChunk(query, timeout=10).results
    assert (results[0].found, results[0].last_index, results[0].last_length, results[0].chunk_count) == \
        (True, 5, 1005, 3)
    assert not results[1].found and results[1].status.error == ""
    assert results[2].status.error == "StaleChainVersion"

    reply = node.stub.TruncateChunk(storage_pb2.TruncateChunkRequest(
        chain_id=1, chain_version=1, chunk=types_pb2.ChunkId(inode=33, index=5), length=10,
        chunk_size=CHUNK), timeout=10)
    assert (reply.chunk_length, reply.commit_version) == (10, 2)
    removed = node.stub.RemoveChunks(storage_pb2.RemoveChunksRequest(
        chain_id=1, chain_version=1, inode=33, begin_index=1, end_index=0), timeout=10)
    assert removed.removed == 2
    results = node.stub.QueryLastChunk(query, timeout=10).results
    assert (results[0].last_index, results[0].last_length, results[0].chunk_count) == (0, 1000, 1)
    with pytest.raises(InvalidArgument), rpc_errors_mapped():
        node.stub.TruncateChunk(storage_pb2.TruncateChunkRequest(
            chain_id=1, chain_version=1, chunk=types_pb2.ChunkId(inode=33, index=0), length=CHUNK + 1,
            chunk_size=CHUNK), timeout=10)


def test_space_info(node):
    node.write(b"q" * 3000)
    targets = node.stub.SpaceInfo(types_pb2.Empty(), timeout=10).targets
    assert [t.target_id for t in targets] == [101, 102]
    assert (targets[0].used_bytes, targets[0].chunk_count) == (3000, 1)
    assert targets[0].capacity_bytes >= targets[0].free_bytes > 0


def test_fenced_node_refuses_reads_and_writes(node):
    """Half the heartbeat timeout without a heartbeat reply: nothing is served; a reply reopens."""
    node.write(b"before")
    node.clock[0] += 5.1
    with pytest.raises(Unavailable, match="fenced"):
        node.write(b"x")
    assert node.read((1, 1, 9, 0, 0, 10))[0].status.error == "Unavailable"
    node.fence.contact_ok(node.clock[0])
    assert node.read((1, 1, 9, 0, 0, 10))[0].data == b"before"


def test_update_to_a_single_replica_chain_is_refused(node):
    """Chain 1 has only target 101: an Update from a 'predecessor' names no member relation."""
    write = storage_pb2.WriteRequest(chain_id=1, chain_version=1, chunk=types_pb2.ChunkId(inode=9),
                                     data=b"x", checksum=crc32c.crc32c(b"x"), chunk_size=CHUNK)
    with pytest.raises(StaleChainVersion), rpc_errors_mapped():
        node.stub.Update(storage_pb2.UpdateRequest(write=write, update_version=1, from_target=201,
                                                   to_target=101), timeout=10)
    assert node.read((1, 1, 9, 0, 0, 10))[0].data == b""


def test_chunk_metas_paged(node):
    for index in range(5):
        node.write(b"m" * (index + 1), index=index, inode=70)
    request = storage_pb2.GetChunkMetasRequest(target_id=101, limit=2)
    seen = []
    while True:
        reply = node.stub.GetChunkMetas(request, timeout=10)
        seen += [(m.chunk.inode, m.chunk.index, m.length, m.commit_version, m.update_version) for m in reply.metas]
        if not reply.more:
            break
        request.start_after.CopyFrom(reply.metas[-1].chunk)
    assert seen == [(70, i, i + 1, 1, 1) for i in range(5)]
    with pytest.raises(NotFound), rpc_errors_mapped():
        node.stub.GetChunkMetas(storage_pb2.GetChunkMetasRequest(target_id=555), timeout=10)


def test_routing_update_fences_old_versions(node):
    node.write(b"v1")
    node.routing.update(routing_info(version=6, chain1_version=2))
    with pytest.raises(StaleChainVersion):
        node.write(b"old", version=1)
    assert node.write(b"v2", version=2).commit_version == 2
    # An older routing never replaces a newer one.
    assert not node.routing.update(routing_info(version=4, chain1_version=1))
    assert node.read((1, 2, 9, 0, 0, 10))[0].data == b"v2"


def test_unregistered_node_serves_nothing(tmp_path):
    running = Node(tmp_path, register=False)
    try:
        with pytest.raises(Unavailable):
            running.write(b"x")
        assert running.read((1, 1, 9, 0, 0, 10))[0].status.error == "Unavailable"
    finally:
        running.close()
