"""Chain replication across real gRPC servers in one process, routing installed by the test.

Goal: the node wiring of CRAQ (chain_driver, Update servicer, resync) does what
the protocol tests prove for the pure logic: a write is acknowledged after
every replica committed it, replicas stay byte-identical, a dead successor is
skipped once routing drops it, a SYNCING target is filled by its predecessor
(with live writes as full replaces) and reports UPTODATE after SyncDone.

Method: three "nodes" (each: one Target, RoutingView, Peers, ChainDriver,
ResyncManager, StorageServicer on its own 127.0.0.1 server), one chain of
targets 101 -> 201 -> 301. The test plays mgmtd: it builds RoutingInfo with
chain order, versions and public states and installs it on every live node.
"""

from __future__ import annotations

import threading
import time

import crc32c
import pytest

from fireflyfs.common.errors import NotHead, StaleChainVersion
from fireflyfs.common.rpc import make_channel, make_server, rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.craq import UpdateKind
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.resync import ResyncManager
from fireflyfs.storage_service.rollforward import RollForwardSweeper
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.servicer import StorageServicer
from fireflyfs.storage_service.target import Target

CHUNK = 64 * 1024
SERVING, SYNCING, OFFLINE = types_pb2.SERVING, types_pb2.SYNCING, types_pb2.OFFLINE


class MiniNode:
    def __init__(self, tmp_path, node_id: int) -> None:
        self.node_id = node_id
        self.target_id = node_id * 100 + 1
        self.target = Target(self.target_id, tmp_path / f"node{node_id}", block_size=4096)
        self.targets = {self.target_id: self.target}
        fence = Fence(node_id, 60_000)
        fence.contact_ok(time.monotonic() + 3600)    # never fenced in these tests
        self.routing = RoutingView(node_id, [self.target_id], fence)
        self.peers = Peers(self.routing, rpc_timeout_s=5)
        self.driver = ChainDriver(self.routing, self.peers, op_deadline_s=10)
        self.resync = ResyncManager(self.targets, self.routing, self.peers, self.driver)
        self.routing.add_listener(self._observe)
        self.server, self.port = make_server("127.0.0.1:0", max_workers=16)
        storage_pb2_grpc.add_StorageServicer_to_server(
            StorageServicer(node_id, self.targets, self.routing, self.driver), self.server)
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"
        self.channel = make_channel(self.address)
        self.stub = storage_pb2_grpc.StorageStub(self.channel)
        self.alive = True

    def _observe(self, routing) -> None:
        chain = routing.chain_of_target(self.target_id)
        self.target.local.observe(chain is not None, chain.state_of(self.target_id) if chain else 0)
        self.resync.on_routing(routing)

    def stop(self) -> None:
        if self.alive:
            self.alive = False
            self.resync.close()
            self.server.stop(0).wait()
            self.channel.close()
            self.peers.close()
            self.target.close()


class Cluster:
    def __init__(self, tmp_path) -> None:
        self.nodes = {i: MiniNode(tmp_path, i) for i in (1, 2, 3)}
        self.version = 0
        self.chain_version = 0
        self.order: list[int] = []
        self.states: dict[int, int] = {}

    def install(self, order: list[int], states: dict[int, int]) -> None:
        self.version += 1
        self.chain_version += 1
        self.order, self.states = order, states
        routing = types_pb2.RoutingInfo(
            version=self.version,
            nodes=[types_pb2.NodeInfo(id=n.node_id, type=types_pb2.NODE_STORAGE, address=n.address)
                   for n in self.nodes.values()],
            targets=[types_pb2.TargetInfo(id=t, node_id=t // 100, chain_id=1, public_state=states[t])
                     for t in order],
            chains=[types_pb2.ChainInfo(id=1, version=self.chain_version, targets=order)])
        for node in self.nodes.values():
            if node.alive:
                node.routing.update(routing)

    def node(self, target_id: int) -> MiniNode:
        return self.nodes[target_id // 100]

    def write(self, data: bytes, offset: int = 0, index: int = 0, head: int | None = None):
        head = head or next(t for t in self.order if self.states[t] == SERVING)
        request = storage_pb2.WriteRequest(
            chain_id=1, chain_version=self.chain_version, chunk=types_pb2.ChunkId(inode=5, index=index),
            offset=offset, data=data, checksum=crc32c.crc32c(data), chunk_size=CHUNK)
        with rpc_errors_mapped():
            return self.node(head).stub.Write(request, timeout=30)

    def read(self, target_id: int, index: int = 0) -> storage_pb2.ReadResult:
        request = storage_pb2.BatchReadRequest(ios=[storage_pb2.ReadIO(
            chain_id=1, chain_version=self.chain_version, chunk=types_pb2.ChunkId(inode=5, index=index),
            offset=0, length=CHUNK)])
        with rpc_errors_mapped():
            return self.node(target_id).stub.BatchRead(request, timeout=10).results[0]

    def metas(self, target_id: int) -> dict:
        node = self.node(target_id)
        return {key: (m.length, m.commit_version, m.update_version, m.chunk_checksum)
                for key, m in node.target.engine.metas_after(None, 1000)}

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path)
    running.install([101, 201, 301], {101: SERVING, 201: SERVING, 301: SERVING})
    yield running
    running.close()


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_write_commits_on_every_replica_before_the_ack(cluster):
    reply = cluster.write(b"hello chain", offset=10)
    assert reply.commit_version == 1
    for target in (101, 201, 301):
        result = cluster.read(target)
        assert result.status.error == "" and result.data == bytes(10) + b"hello chain"
        assert result.commit_version == 1
    assert cluster.metas(101) == cluster.metas(201) == cluster.metas(301)
    truncate = storage_pb2.TruncateChunkRequest(chain_id=1, chain_version=1, chunk=types_pb2.ChunkId(inode=5),
                                                length=12, chunk_size=CHUNK)
    with rpc_errors_mapped():
        assert cluster.node(101).stub.TruncateChunk(truncate, timeout=10).commit_version == 2
    assert cluster.read(301).data == bytes(10) + b"he"
    removed = storage_pb2.RemoveChunksRequest(chain_id=1, chain_version=1, inode=5, begin_index=0)
    with rpc_errors_mapped():
        assert cluster.node(101).stub.RemoveChunks(removed, timeout=10).removed == 1
    assert cluster.metas(101) == cluster.metas(201) == cluster.metas(301) == {}


def test_only_the_head_takes_client_writes_and_versions_are_checked(cluster):
    with pytest.raises(NotHead):
        cluster.write(b"x", head=201)
    cluster.chain_version += 1       # the client believes in a version nobody has
    with pytest.raises(StaleChainVersion):
        cluster.write(b"x")
    cluster.chain_version -= 1
    assert cluster.metas(101) == {}


def test_dead_middle_is_skipped_after_routing_drops_it(cluster):
    cluster.write(b"one")
    cluster.node(201).stop()
    # The head retries the dead successor until routing changes; change it while it waits.
    result = {}
    writer = threading.Thread(target=lambda: result.setdefault("reply", cluster.write(b"two", offset=3)))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive(), "a write must not be acknowledged while a chain member is missing"
    cluster.install([101, 301, 201], {101: SERVING, 301: SERVING, 201: OFFLINE})
    writer.join(15)
    assert result["reply"].commit_version == 2
    assert cluster.read(301).data == b"onetwo"
    assert cluster.metas(101) == cluster.metas(301)


def test_syncing_target_gets_everything_then_reports_uptodate(cluster):
    for index in range(4):
        cluster.write(b"base%d" % index, index=index)
    # 301 misses writes while offline, and keeps one chunk nobody else has.
    cluster.install([101, 201, 301], {101: SERVING, 201: SERVING, 301: OFFLINE})
    cluster.write(b"NEW", index=0)
    cluster.write(b"fresh", index=7)
    with rpc_errors_mapped():
        cluster.node(101).stub.RemoveChunks(storage_pb2.RemoveChunksRequest(
            chain_id=1, chain_version=cluster.chain_version, inode=5, begin_index=3, end_index=4), timeout=10)
    assert cluster.node(301).target.local_state == types_pb2.ONLINE
    cluster.install([101, 201, 301], {101: SERVING, 201: SERVING, 301: SYNCING})
    wait_for(lambda: cluster.node(301).target.local_state == types_pb2.UPTODATE, what="sync done")
    [worker] = cluster.node(201).resync.workers()
    assert (worker.chunks_sent, worker.chunks_removed) == (2, 1), "chunk 0 changed, 7 is new, 3 went"
    cluster.write(b"live", index=1)          # after the sync: a full replace to the syncing tail
    assert cluster.metas(301) == cluster.metas(201) == cluster.metas(101)
    cluster.install([101, 201, 301], {101: SERVING, 201: SERVING, 301: SERVING})
    assert cluster.read(301, index=0).data == b"NEWe0"
    assert cluster.read(301, index=1).data == b"live1"
    assert cluster.read(301, index=3).data == b""
    assert cluster.read(301, index=7).data == b"fresh"
    wait_for(lambda: not worker.thread.is_alive(), what="the resync worker to stop once 301 serves")


def test_head_rolls_forward_an_update_a_failure_left_pending(cluster):
    """Head and middle hold update 2 staged (their op died); the tail never saw it."""
    cluster.write(b"v1")
    key = chunk_key(5, 0)
    for target in (101, 201):
        cluster.node(target).target.engine.stage(key, UpdateKind.WRITE, 2, cluster.chain_version, CHUNK,
                                                 commit=False, offset=2, data=b"+v2")
    assert cluster.read(201).status.error == "ChunkNotCommitted"
    assert cluster.read(301).data == b"v1"
    sweeper = RollForwardSweeper(cluster.node(101).targets, cluster.node(101).routing,
                                 cluster.node(101).driver)
    assert RollForwardSweeper(cluster.node(201).targets, cluster.node(201).routing,
                              cluster.node(201).driver).sweep_once() == 0, "only heads roll forward"
    assert sweeper.sweep_once() == 1
    assert sweeper.sweep_once() == 0
    for target in (101, 201, 301):
        result = cluster.read(target)
        assert (result.data, result.commit_version) == (b"v1+v2", 2)
    assert cluster.metas(101) == cluster.metas(201) == cluster.metas(301)


def test_reads_need_a_serving_target(cluster):
    cluster.write(b"data")
    cluster.install([101, 201, 301], {101: SERVING, 201: SERVING, 301: SYNCING})
    assert cluster.read(301).status.error == "NotHead"
    assert cluster.read(201).data == b"data"
