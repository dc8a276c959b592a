"""make_server (common/rpc.py): a request body that does not parse is the caller's error.

Method: a real server from make_server on loopback with one unary method
taking a ChunkId. A valid body reaches the handler; bodies that do not parse
(found by tests/system/test_fuzz_rpc.py, where grpcio answered INTERNAL
"Exception deserializing request!") answer INVALID_ARGUMENT with the
InvalidArgument name, which clients map back to InvalidArgument; an unknown
method stays UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc
import pytest

from fireflyfs.common import errors
from fireflyfs.common.rpc import error_from_rpc, make_channel, make_server
from fireflyfs.proto import types_pb2

SERVICE = "fireflyfs.test.Echo"


def _echo(request: types_pb2.ChunkId, context) -> types_pb2.ChunkId:
    return types_pb2.ChunkId(inode=request.inode + 1, index=request.index)


@pytest.fixture
def channel():
    server, port = make_server("127.0.0.1:0", 2)
    handler = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=types_pb2.ChunkId.FromString,
                                                  response_serializer=types_pb2.ChunkId.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),))
    server.start()
    try:
        with make_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        server.stop(None)


def test_valid_request_reaches_the_handler(channel):
    call = channel.unary_unary(f"/{SERVICE}/Echo", request_serializer=None,
                               response_deserializer=types_pb2.ChunkId.FromString)
    assert call(types_pb2.ChunkId(inode=41, index=3).SerializeToString(), timeout=10) == \
        types_pb2.ChunkId(inode=42, index=3)


@pytest.mark.parametrize("body", [b"\x00", b"\x08", b"\x12\x80\x80\x80\x80\x08x", b"\xff" * 16, b"\x0b" * 50])
def test_unparsable_request_is_invalid_argument(channel, body):
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(f"/{SERVICE}/Echo", request_serializer=None, response_deserializer=None)(
            body, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unparsable request" in caught.value.details()
    assert type(error_from_rpc(caught.value)) is errors.InvalidArgument


def test_unknown_method_stays_unimplemented(channel):
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(f"/{SERVICE}/Nothing", request_serializer=None, response_deserializer=None)(
            b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_advertised_address_is_what_peers_can_dial(caplog):
    from fireflyfs.common.rpc import advertised_address

    assert advertised_address("10.0.0.7:0", 8123) == "10.0.0.7:8123"
    assert advertised_address("0.0.0.0:8000", 8000, "storage-7.example") == "storage-7.example:8000"
    assert advertised_address("[::]:8000", 8000, "fd00::7") == "[fd00::7]:8000"
    with caplog.at_level("WARNING"):
        wildcard = advertised_address("0.0.0.0:8000", 8000)
    import socket
    assert wildcard == f"{socket.getfqdn()}:8000" and "set advertise" in caplog.text
