"""The Mgmtd gRPC shell: new fields and SetTargetState over a real in-process gRPC server.

Method: ClusterState on a tmp LMDB behind MgmtdServicer on 127.0.0.1:0; calls go
through a real channel, so field wiring and error mapping are what clients see.
"""

from __future__ import annotations

import pytest

from fireflyfs.common import errors, rpc
from fireflyfs.common.rpc import make_channel, make_server
from fireflyfs.meta_service.mgmtd.cluster import ClusterState
from fireflyfs.meta_service.mgmtd.servicer import MgmtdServicer
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc, types_pb2


@pytest.fixture
def stub(store):
    cluster = ClusterState(store, heartbeat_timeout_ms=4321, now_ms=0)
    server, port = make_server("127.0.0.1:0", 4)
    mgmtd_pb2_grpc.add_MgmtdServicer_to_server(MgmtdServicer(cluster), server)
    server.start()
    channel = make_channel(f"127.0.0.1:{port}")
    try:
        yield mgmtd_pb2_grpc.MgmtdStub(channel)
    finally:
        channel.close()
        server.stop(0).wait()


def register(stub, node_id, incarnation):
    return stub.RegisterNode(mgmtd_pb2.RegisterNodeRequest(
        node_id=node_id, type=types_pb2.NODE_STORAGE, address=f"127.0.0.1:{9000 + node_id}",
        targets=[types_pb2.TargetInfo(id=node_id * 100 + 1, path="/t", capacity_bytes=1)],
        incarnation=incarnation), timeout=5)


def test_replies_carry_the_timeout_and_set_target_state_round_trips(stub):
    for node in (1, 2, 3):
        assert register(stub, node, 10).heartbeat_timeout_ms == 4321
    reply = stub.Heartbeat(mgmtd_pb2.HeartbeatRequest(node_id=1, incarnation=10), timeout=5)
    assert reply.heartbeat_timeout_ms == 4321
    table = stub.CreateChainTable(mgmtd_pb2.CreateChainTableRequest(), timeout=5).table
    assert table.replicas == 3 and len(table.chains) == 1

    reply = stub.SetTargetState(mgmtd_pb2.SetTargetStateRequest(target_id=101, offline=True), timeout=5)
    assert reply.target.public_state == types_pb2.OFFLINE
    assert list(reply.chain.targets)[-1] == 101 and reply.chain.version == 2
    routing_reply = stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=5)
    assert list(routing_reply.admin_offline_targets) == [101]
    assert routing_reply.routing.version == reply.routing_version

    with pytest.raises(errors.NotFound), rpc.rpc_errors_mapped():
        stub.SetTargetState(mgmtd_pb2.SetTargetStateRequest(target_id=999, offline=True), timeout=5)
    with pytest.raises(errors.InvalidArgument), rpc.rpc_errors_mapped():
        register(stub, 2, 9)                                       # an older process of node 2
    # A restarted node 3: its target leaves SERVING in the very reply to its registration.
    states = {t.id: t.public_state for t in register(stub, 3, 11).routing.targets}
    assert states[301] == types_pb2.OFFLINE
