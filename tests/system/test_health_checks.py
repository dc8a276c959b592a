"""gRPC's standard health service answers on every server, without a token (common/rpc.add_health)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import types_pb2


def _check(address: str, service: str = "") -> int:
    with make_channel(address, token=None) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_every_meta_and_storage_server_answers_health_checks_without_a_token(cluster):
    routing = cluster.cluster.routing()
    storage = [n.address for n in routing.nodes if n.type == types_pb2.NODE_STORAGE]
    assert len(storage) >= 3
    serving = health_pb2.HealthCheckResponse.SERVING
    meta = f"{cluster.host}:{cluster.port}"
    assert _check(meta) == serving
    assert _check(meta, "fireflyfs.Meta") == _check(meta, "fireflyfs.Mgmtd") == serving
    for address in storage:
        assert _check(address) == _check(address, "fireflyfs.Storage") == serving
    with pytest.raises(grpc.RpcError) as unknown:
        _check(meta, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_without_a_token_nothing_but_health_answers(cluster):
    with make_channel(f"{cluster.host}:{cluster.port}", token=None) as channel:
        from fireflyfs.proto import meta_pb2_grpc
        with pytest.raises(grpc.RpcError) as refused:
            meta_pb2_grpc.MetaStub(channel).StatFs(types_pb2.Empty(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
