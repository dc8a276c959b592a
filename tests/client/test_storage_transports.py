"""The storage transports on their own: gRPC's error and reply mapping, bulk's fallback, and that the
in-process transport the StorageClient tests use answers as the gRPC one does.

Method: in-process storage nodes (tests/client/in_process.py: real targets,
chain drivers and Storage servicers); the production GrpcStorageTransport
reaches them through LoopbackChannelPool, whose stubs serialize every message
and fail as a grpc channel does (RpcError with status, details and error
name). The same requests go through both transports and must give the same
outcomes and bytes. The bulk transport is pointed at a port nobody listens on.
"""

from __future__ import annotations

import dataclasses
import os

import crc32c
import grpc
import pytest

from fireflyfs.client.bulk_client import BulkPool
from fireflyfs.client.bulk_transport import BulkStorageTransport
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.grpc_transport import GrpcStorageTransport
from fireflyfs.client.routing import RoutingCache
from fireflyfs.client.storage_client import StorageClient
from fireflyfs.client.storage_transport import NodeUnreachable
from fireflyfs.common import errors
from fireflyfs.common.layout import Layout

from .fakes import make_routing
from .in_process import InProcessCluster, InProcessTransport, LoopbackChannelPool

CHUNK = 64 * 1024
ONE_CHAIN = Layout(chunk_size=CHUNK, stripe_size=1, chain_table_id=1, chain_table_version=1,
                   chain_base=1, seed=3)   # every chunk on chain 1, whose only target is on node-1
INODE = 9


@pytest.fixture
def nodes(tmp_path):
    cluster = InProcessCluster(tmp_path, make_routing(nodes=3, chains=6, replicas=1))
    pool = LoopbackChannelPool(cluster)
    routing = RoutingCache(lambda known: None if known == 1 else make_routing(nodes=3, chains=6, replicas=1))
    yield cluster, pool, routing
    pool.close()
    cluster.close()


def read(transport, route, ios):
    views = [memoryview(bytearray(io[5])) for io in ios]
    outcomes = transport.receive_read(route, transport.send_read(route, ios), ios, views)
    return ([(o.data_len, o.chunk_length, o.commit_version, type(o.error), o.checksum_failed) for o in outcomes],
            [bytes(view) for view in views])


def test_grpc_and_in_process_transports_answer_alike(nodes):
    cluster, pool, routing = nodes
    in_process = InProcessTransport(cluster)
    over_grpc = GrpcStorageTransport(pool, ClientConfig())
    client = StorageClient(routing, "writer", config=ClientConfig(), transport=in_process)
    data = os.urandom(2 * CHUNK + 500)
    client.write(INODE, ONE_CHAIN, 0, data)
    cluster.leave_pending("node-1", 1, INODE, 1, b"mid-write")
    route = routing.serving_routes(1)[0]
    ios = [(1, 1, INODE, 0, 100, 5000),          # committed bytes
           (1, 1, INODE, 2, 0, CHUNK),           # past the chunk's end: short
           (1, 1, INODE, 5, 0, 4096),            # a hole
           (1, 1, INODE, 1, 0, 10),              # mid-write: ChunkNotCommitted
           (1, 7, INODE, 0, 0, 10)]              # a chain version the node does not have
    outcomes, views = read(over_grpc, route, ios)
    assert (outcomes, views) == read(in_process, route, ios)
    assert [kind for _, _, _, kind, _ in outcomes] == [type(None), type(None), type(None),
                                                      errors.ChunkNotCommitted, errors.StaleChainVersion]
    assert outcomes[1][0] == 500 and views[0][:5000] == data[100:5100]
    routes = [routing.serving_routes(chain_id)[0] for chain_id in (1, 4)]    # both on node-1
    assert over_grpc.query_last_chunks(routes, INODE) == in_process.query_last_chunks(routes, INODE)
    ack = over_grpc.write(route, INODE, 3, 0, memoryview(b"abc"), crc32c.crc32c(b"abc"), CHUNK, "grpc-writer", 1, 1)
    assert ack.commit_version == 1 and ack.chunk_length == 3
    assert over_grpc.remove_chunks(route, INODE, 3) == 1 and in_process.remove_chunks(route, INODE, 3) == 0


def test_grpc_transport_maps_failures_to_errors_naming_the_route(nodes):
    cluster, pool, routing = nodes
    over_grpc = GrpcStorageTransport(pool, ClientConfig())
    route = routing.serving_routes(1)[0]
    stale = dataclasses.replace(route, chain_version=7)
    with pytest.raises(errors.StaleChainVersion, match="TruncateChunk on chain 1 v7, target 101 on node 1"):
        over_grpc.truncate_chunk(stale, INODE, 0, 10, CHUNK)
    assert pool.forgotten == [], "an answer from the node keeps its channel"
    with pytest.raises(errors.InvalidArgument, match="chunk size"):    # not retryable: as the node raised it
        over_grpc.truncate_chunk(route, INODE, 0, 10, CHUNK + 1)
    cluster.dead.add(route.address)
    with pytest.raises(NodeUnreachable, match="BatchRead on chain 1 v1, target 101 on node 1 .node-1.") as info:
        over_grpc.receive_read(route, over_grpc.send_read(route, [(1, 1, INODE, 0, 0, 10)]), [(1, 1, INODE, 0, 0, 10)],
                               [memoryview(bytearray(10))])
    assert isinstance(info.value.__cause__.__cause__, grpc.RpcError)
    assert pool.forgotten == [route.address], "UNAVAILABLE drops the channel: the node may come back elsewhere"


def test_grpc_transport_reports_bytes_damaged_in_transit(nodes):
    cluster, pool, routing = nodes
    StorageClient(routing, "writer", config=ClientConfig(), transport=InProcessTransport(cluster)).write(
        INODE, ONE_CHAIN, 0, b"payload")
    stub_for = pool.stub

    def damaging_stub(address, stub_cls):
        stub = stub_for(address, stub_cls)

        class Damaging:
            def BatchRead(self, request, timeout=None):
                reply = stub.BatchRead(request, timeout)
                for result in reply.results:
                    result.checksum ^= 1
                return reply
        return Damaging()

    pool.stub = damaging_stub
    route = routing.serving_routes(1)[0]
    outcomes, _ = read(GrpcStorageTransport(pool, ClientConfig()), route, [(1, 1, INODE, 0, 0, 7)])
    assert outcomes == [(0, 0, 0, errors.ChecksumMismatch, False)], "reported, not worth another read"
    unchecked, views = read(GrpcStorageTransport(pool, ClientConfig(), verify_checksums=False), route,
                            [(1, 1, INODE, 0, 0, 7)])
    assert unchecked[0][0] == 7 and views == [b"payload"]


def test_bulk_transport_uses_grpc_where_there_is_no_bulk_listener(nodes):
    cluster, pool, routing = nodes
    config = ClientConfig(bulk_read_bytes_max=CHUNK, bulk_read_ios_max=3)
    over_grpc = GrpcStorageTransport(pool, config)
    bulk = BulkStorageTransport(BulkPool(timeout_s=2.0, connect_timeout_s=2.0), over_grpc, config)
    route = routing.serving_routes(1)[0]
    assert route.bulk_address == ""
    assert bulk.read_limits(route) == over_grpc.read_limits(route) and not bulk.read_limits(route).pipelined
    ack = bulk.write(route, INODE, 0, 0, memoryview(b"by grpc"), crc32c.crc32c(b"by grpc"), CHUNK, "c", 1, 1)
    assert ack.commit_version == 1
    outcomes, views = read(bulk, route, [(1, 1, INODE, 0, 0, 7)])
    assert outcomes[0][0] == 7 and views == [b"by grpc"]
    listener = dataclasses.replace(route, bulk_address="127.0.0.1:1")    # nobody listens there
    assert bulk.read_limits(listener).pipelined and bulk.read_limits(listener).ios_max == 3
    assert bulk.truncate_chunk(listener, INODE, 0, 2, CHUNK) is None, "control calls always go over gRPC"
    with pytest.raises(NodeUnreachable, match="BatchRead on chain 1 v1, target 101"):
        bulk.send_read(listener, [(1, 1, INODE, 0, 0, 2)])
    with pytest.raises(NodeUnreachable, match="Write on chain 1 v1"):
        bulk.write(listener, INODE, 0, 0, memoryview(b"x"), 0, CHUNK, "c", 1, 2)


def test_the_client_picks_its_transport_from_the_config(nodes):
    _, pool, routing = nodes
    grpc_only = StorageClient(routing, "c", pool=pool, config=ClientConfig(bulk_enabled=0))
    assert grpc_only.transport is grpc_only.grpc and grpc_only.bulk is None
    with_bulk = StorageClient(routing, "c", pool=pool, config=ClientConfig())
    assert isinstance(with_bulk.transport, BulkStorageTransport) and with_bulk.transport.grpc is with_bulk.grpc
    assert with_bulk.bulk is with_bulk.transport.pool, "SequentialReader streams over the transport's pool"
    assert StorageClient(routing, "d", pool=pool, config=ClientConfig()).bulk is with_bulk.bulk, "one per process"
