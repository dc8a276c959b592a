"""Traffic classes: DSCP names and overrides, and the marks read back from real sockets.

Method: plain sockets are checked with getsockopt(IP_TOS) on the client, the
listener and the accepted socket; gRPC channels and servers (which hide their
sockets) are checked on the wire with a loopback packet capture (root only).
"""

from __future__ import annotations

import socket
import time

import grpc
import pytest

from fireflyfs.common.rpc import make_channel, make_server
from fireflyfs.common import traffic
from fireflyfs.common.traffic import TrafficClass

from .capture import LoopbackCapture, capture_available


def test_dscp_names_parse_to_standard_code_points():
    assert traffic.parse_dscp("EF") == 46
    assert traffic.parse_dscp("af11") == 10
    assert traffic.parse_dscp("AF41") == 34
    assert traffic.parse_dscp("CS6") == 48
    assert traffic.parse_dscp("cs2") == 16
    assert traffic.parse_dscp("18") == 18
    for bad in ("AF51", "CS8", "64", "fast", "-1"):
        with pytest.raises(ValueError):
            traffic.parse_dscp(bad)


def test_defaults_are_four_distinct_classes(monkeypatch):
    for cls in TrafficClass:
        monkeypatch.delenv(traffic.dscp_env_prefix + cls.name, raising=False)
    monkeypatch.delenv(traffic.config_env, raising=False)
    codes = traffic.dscp_map()
    assert codes[TrafficClass.HFREDUCE] == 46 and codes[TrafficClass.STORAGE] == 10
    assert len(set(codes.values())) == len(TrafficClass)
    assert traffic.tos_of("hfreduce") == 0xB8
    with pytest.raises(ValueError, match="unknown traffic class"):
        traffic.dscp_of("bulk")


def test_environment_overrides_file_which_overrides_defaults(tmp_path, monkeypatch):
    config = tmp_path / "fabric.toml"
    config.write_text('[traffic_classes]\nstorage = "AF21"\ncontrol = 24\n')
    monkeypatch.setenv(traffic.config_env, str(config))
    monkeypatch.setenv("FFS_DSCP_CONTROL", "CS6")
    codes = traffic.dscp_map()
    assert codes[TrafficClass.STORAGE] == 18      # from the file
    assert codes[TrafficClass.CONTROL] == 48      # the environment wins over the file
    assert codes[TrafficClass.HFREDUCE] == 46     # untouched default


def test_plain_socket_marks_on_both_ends():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        traffic.mark_socket(listener, TrafficClass.STORAGE)
        client = socket.create_connection(listener.getsockname())
        traffic.mark_socket(client, TrafficClass.HFREDUCE)
        accepted, _ = listener.accept()
        traffic.mark_socket(accepted, TrafficClass.STORAGE)
        with client, accepted:
            assert traffic.socket_tos(client) == 46 << 2
            assert traffic.socket_tos(listener) == 10 << 2
            assert traffic.socket_tos(accepted) == 10 << 2


def test_ipv6_socket_marks_traffic_class():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    with listener:
        traffic.mark_socket(listener, TrafficClass.CONTROL)
        assert traffic.socket_tos(listener) == 16 << 2


@pytest.mark.skipif(not capture_available(), reason="packet capture needs root (AF_PACKET)")
def test_plain_socket_marks_are_on_the_wire():
    with LoopbackCapture() as capture, socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        traffic.mark_socket(client, TrafficClass.HFREDUCE)
        accepted, _ = listener.accept()
        traffic.mark_socket(accepted, TrafficClass.STORAGE)
        with client, accepted:
            client.sendall(b"x" * 1000)
            accepted.recv(1000)
            accepted.sendall(b"y" * 1000)
            client.recv(1000)
        time.sleep(0.2)
    assert 46 << 2 in capture.tos_to_port(port)
    assert 10 << 2 in capture.tos_from_port(port)


@pytest.mark.skipif(not capture_available(), reason="packet capture needs root (AF_PACKET)")
@pytest.mark.parametrize("server_class, channel_class", [
    (TrafficClass.CONTROL, TrafficClass.CONTROL),
    (TrafficClass.STORAGE, TrafficClass.STORAGE),
    (TrafficClass.HFREDUCE, TrafficClass.COLLECTIVE),
])
def test_grpc_server_and_channel_marks_are_on_the_wire(server_class, channel_class):
    with LoopbackCapture() as capture:
        server, port = make_server("127.0.0.1:0", 2, traffic_class=server_class)
        server.start()
        try:
            with make_channel(f"127.0.0.1:{port}", traffic_class=channel_class) as channel:
                with pytest.raises(grpc.RpcError) as caught:
                    channel.unary_unary("/none.Service/Nothing")(b"ping", timeout=5)
                assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            server.stop(None)
        time.sleep(0.2)
    assert capture.tos_to_port(port) == {traffic.tos_of(channel_class)}
    assert capture.tos_from_port(port) == {traffic.tos_of(server_class)}


@pytest.mark.skipif(not capture_available(), reason="packet capture needs root (AF_PACKET)")
def test_grpc_default_class_is_control():
    with LoopbackCapture() as capture:
        server, port = make_server("127.0.0.1:0", 2)
        server.start()
        try:
            with make_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.RpcError):
                    channel.unary_unary("/none.Service/Nothing")(b"ping", timeout=5)
        finally:
            server.stop(None)
        time.sleep(0.2)
    control = traffic.tos_of(TrafficClass.CONTROL)
    assert capture.tos_to_port(port) == {control} and capture.tos_from_port(port) == {control}
