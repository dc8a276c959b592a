"""Chain updates over the bulk path (op UPDATE: storage_service/bulk_peers.py, bulk_server.py).

Method: two storage "nodes" in this process, each with its own routing view,
target and BulkServer on 127.0.0.1, and no gRPC server at all: chain 1 is
[101 on node 1, 201 on node 2], so every update node 1 forwards can only
travel as a bulk UPDATE frame. Client writes enter at node 1's chain driver
(as a bulk or gRPC Write would); both replicas must end with the same bytes
and versions. Hand-made UPDATE frames then check the CRAQ rules at the
receiving hop: the chain version, the data's CRC, chunk bounds, and a full
replace to a SYNCING successor; each refusal is a reply on a connection that
stays usable, and nothing refused is stored.
"""

from __future__ import annotations

import os

import crc32c
import pytest

from fireflyfs.common.errors import ChecksumMismatch, InvalidArgument, StaleChainVersion
from fireflyfs.proto import storage_pb2, types_pb2
from fireflyfs.storage_service.bulk_peers import PeerConnection
from fireflyfs.storage_service.bulk_server import BulkHandler, BulkServer
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chain_update import ChainUpdate
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.target import Target

pytestmark = pytest.mark.usefixtures("plaintext_bulk")   # in-process listeners (tests/conftest.py)

CHUNK = 256 * 1024
BLOCK = 4096


class ChainNode:
    def __init__(self, root, node_id: int) -> None:
        self.node_id = node_id
        self.target = Target(node_id * 100 + 1, root / f"target-{node_id}", block_size=BLOCK)
        fence = Fence(node_id, heartbeat_timeout_ms=600_000)
        fence.contact_ok(0.0)
        self.routing = RoutingView(node_id, [self.target.id], fence, clock=lambda: 1.0)
        self.peers = Peers(self.routing)
        self.driver = ChainDriver(self.routing, self.peers, op_deadline_s=5.0)
        handler = BulkHandler(node_id, {self.target.id: self.target}, self.routing, self.driver)
        self.server = BulkServer(handler, "127.0.0.1:0", peer_timeout_s=10.0)
        self.server.start()

    def close(self) -> None:
        self.driver.close()
        self.server.stop()
        self.peers.close()
        self.target.close()


def routing(nodes: list[ChainNode], chain_version: int = 1, states=(types_pb2.SERVING, types_pb2.SERVING)):
    return types_pb2.RoutingInfo(
        version=chain_version,
        chains=[types_pb2.ChainInfo(id=1, version=chain_version, targets=[n.target.id for n in nodes])],
        targets=[types_pb2.TargetInfo(id=n.target.id, node_id=n.node_id, chain_id=1, public_state=state)
                 for n, state in zip(nodes, states)],
        # gRPC addresses nobody listens on: a forward that took gRPC would fail.
        nodes=[types_pb2.NodeInfo(id=n.node_id, type=types_pb2.NODE_STORAGE, address="127.0.0.1:9",
                                  bulk_address=n.server.address) for n in nodes])


@pytest.fixture
def chain(tmp_path):
    nodes = [ChainNode(tmp_path, 1), ChainNode(tmp_path, 2)]
    for node in nodes:
        node.routing.update(routing(nodes))
    yield nodes
    for node in nodes:
        node.close()


def replicas(chain, inode: int, index: int):
    key = chunk_key(inode, index)
    return [(node.target.engine.get_meta(key), node.target.engine.read(key, 0, CHUNK)[0]) for node in chain]


def test_client_writes_reach_every_replica_over_bulk_frames(chain):
    head = chain[0]
    data = os.urandom(3 * BLOCK + 17)
    outcome = head.driver.write_data(head.target, 1, 1, 7, 0, 0, memoryview(data), crc32c.crc32c(data), CHUNK,
                                     "client-a", 1, 1)
    more = os.urandom(BLOCK)
    second = head.driver.write_data(head.target, 1, 1, 7, 0, BLOCK, memoryview(more), crc32c.crc32c(more),
                                    CHUNK, "client-a", 1, 2)
    expected = data[:BLOCK] + more + data[2 * BLOCK:]
    (head_meta, head_bytes), (tail_meta, tail_bytes) = replicas(chain, 7, 0)
    assert head_bytes == tail_bytes == expected
    assert head_meta.committed and tail_meta.committed
    assert head_meta.commit_version == tail_meta.commit_version == 2
    assert head_meta.chunk_checksum == tail_meta.chunk_checksum == second.chunk_checksum
    assert outcome.commit_version == 1
    # Exactly once: a replay of seqnum 2 answers from the cache and the tail sees no third update.
    again = head.driver.write_data(head.target, 1, 1, 7, 0, BLOCK, memoryview(more), crc32c.crc32c(more), CHUNK,
                                   "client-a", 1, 2)
    assert again == second
    assert [meta.commit_version for meta, _ in replicas(chain, 7, 0)] == [2, 2]


def test_truncates_travel_the_chain_too(chain):
    head = chain[0]
    data = os.urandom(2 * BLOCK)
    head.driver.write_data(head.target, 1, 1, 8, 0, 0, memoryview(data), crc32c.crc32c(data), CHUNK)
    head.driver.truncate(head.target, storage_pb2.TruncateChunkRequest(
        chain_id=1, chain_version=1, chunk=types_pb2.ChunkId(inode=8, index=0), length=100, chunk_size=CHUNK))
    assert [meta.length for meta, _ in replicas(chain, 8, 0)] == [100, 100]
    assert [got for _, got in replicas(chain, 8, 0)] == [data[:100]] * 2


def frame_to_tail(chain, **fields) -> ChainUpdate:
    data = fields.pop("data", os.urandom(BLOCK))
    values = dict(chain_id=1, chain_version=1, inode=9, index=0, chunk_size=CHUNK, update_version=1,
                  from_target=chain[0].target.id, to_target=chain[1].target.id, data=data,
                  checksum=crc32c.crc32c(data))
    values.update(fields)
    return ChainUpdate(**values)


def test_the_receiving_hop_checks_version_crc_and_bounds(chain):
    connection = PeerConnection(chain[1].server.address, timeout_s=10)
    try:
        refused = [
            (StaleChainVersion, frame_to_tail(chain, chain_version=2)),
            (ChecksumMismatch, frame_to_tail(chain, checksum=12345)),
            (InvalidArgument, frame_to_tail(chain, offset=CHUNK - 10)),
        ]
        for error, update in refused:
            with pytest.raises(error):
                connection.update(update, "", timeout_s=10)
            assert not connection.broken
        assert chain[1].target.engine.get_meta(chunk_key(9, 0)) is None      # nothing refused was stored
        good = frame_to_tail(chain)
        commit_version, length, checksum = connection.update(good, "", timeout_s=10)
        meta = chain[1].target.engine.get_meta(chunk_key(9, 0))
        assert (commit_version, length, checksum) == (1, BLOCK, meta.chunk_checksum) and meta.committed
        assert chain[1].target.engine.read(chunk_key(9, 0), 0, BLOCK)[0] == bytes(good.data)
    finally:
        connection.close()


def test_a_syncing_successor_gets_whole_chunks(chain):
    head = chain[0]
    data = os.urandom(5 * BLOCK)
    head.driver.write_data(head.target, 1, 1, 10, 0, 0, memoryview(data), crc32c.crc32c(data), CHUNK)
    # The tail falls out and comes back SYNCING at chain version 2: a write now ships the whole chunk.
    for node in chain:
        node.routing.update(routing(chain, 2, (types_pb2.SERVING, types_pb2.SYNCING)))
    patch = b"x" * 10
    head.driver.write_data(head.target, 1, 2, 10, 0, 3, memoryview(patch), crc32c.crc32c(patch), CHUNK)
    expected = data[:3] + patch + data[13:]
    (head_meta, head_bytes), (tail_meta, tail_bytes) = replicas(chain, 10, 0)
    assert head_bytes == tail_bytes == expected
    assert tail_meta.commit_version == head_meta.commit_version == 2 and tail_meta.chain_version == 2


def test_chain_updates_do_not_wait_on_the_client_write_budget(chain):
    """Head writes hold client-budget buffers while they wait on their successor; the updates they
    wait for take buffers from the chain budget, so a full client budget cannot stall them."""
    tail_server = chain[1].server
    held = []
    budget = tail_server.budget
    for number in range(budget.capacity_bytes // budget.peer_bytes_max):
        held.append((budget.acquire(budget.peer_bytes_max, 1.0, f"10.0.0.{number}"), f"10.0.0.{number}"))
    assert budget.in_use_bytes == budget.capacity_bytes          # no client write could get a buffer
    try:
        head = chain[0]
        data = os.urandom(2 * BLOCK)
        head.driver.write_data(head.target, 1, 1, 11, 0, 0, memoryview(data), crc32c.crc32c(data), CHUNK)
        assert [got[:len(data)] for _, got in replicas(chain, 11, 0)] == [data, data]
        assert tail_server.chain_budget.in_use_bytes_peak >= len(data)
    finally:
        for buffer, peer in held:
            budget.release(buffer, peer)
