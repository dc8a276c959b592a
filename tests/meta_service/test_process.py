"""The real meta process over gRPC: durability across SIGKILL, and error mapping.

Method: start ``python -m fireflyfs.meta_service`` on a free 127.0.0.1 port
with a tmp data dir, register a (fake-address) storage node so files can get
a layout, send mutations with the generated stubs, SIGKILL the process right
after the last reply, restart it on the same data dir and check that every
acknowledged mutation is there. No storage process is needed: nothing here
reads or writes chunks (GC is delayed far beyond the test).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

from fireflyfs.common.rpc import ERROR_METADATA_KEY, make_channel
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, mgmtd_pb2, mgmtd_pb2_grpc, types_pb2
from tests import trust

STARTUP_TIMEOUT_S = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MetaProcess:
    def __init__(self, data_dir, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.address = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.channel = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fireflyfs.meta_service", "--data-dir", str(self.data_dir),
             "--listen", self.address, "--log-file", str(self.data_dir / "meta.log"),
             "--gc-delay-ms", "3600000", "--admin-token-file", trust.admin_token_file(self.data_dir),
             *trust.tls_args()])
        self.channel = make_channel(self.address, token=trust.ADMIN_TOKEN)
        self.meta = meta_pb2_grpc.MetaStub(self.channel)
        self.mgmtd = mgmtd_pb2_grpc.MgmtdStub(self.channel)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, (self.data_dir / "meta.log").read_text()
            try:
                self.mgmtd.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=1)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self, sig=signal.SIGKILL) -> int:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10) if self.proc else 0
        self.proc = None
        return code


@pytest.fixture
def meta(tmp_path):
    process = MetaProcess(tmp_path, free_port())
    process.start()
    try:
        yield process
    finally:
        process.kill()


def setup_cluster(meta: MetaProcess) -> None:
    targets = [types_pb2.TargetInfo(id=101 + i, path=f"/t{i}", capacity_bytes=1 << 30) for i in range(4)]
    with trust.node_channel_via(meta.address, 1) as channel:     # a node registers with its own key
        mgmtd_pb2_grpc.MgmtdStub(channel).RegisterNode(mgmtd_pb2.RegisterNodeRequest(
            node_id=1, incarnation=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:1", targets=targets),
            timeout=5)
    reply = meta.mgmtd.CreateChainTable(mgmtd_pb2.CreateChainTableRequest(replicas=1, only_if_missing=True),
                                        timeout=5)
    assert reply.created and len(reply.table.chains) == 4


def test_acknowledged_mutations_survive_sigkill(meta):
    setup_cluster(meta)
    stub = meta.meta
    stub.Mkdirs(meta_pb2.MkdirsRequest(path="/data/train", parents=True), timeout=5)
    created = {}
    for i in range(40):
        reply = stub.Create(meta_pb2.CreateRequest(path=f"/data/train/f{i:03d}", exclusive=True), timeout=5)
        created[reply.path] = reply.inode.id
    stub.Rename(meta_pb2.RenameRequest(src="/data/train/f000", dst="/data/renamed"), timeout=5)
    stub.Symlink(meta_pb2.SymlinkRequest(path="/latest", target="/data/train"), timeout=5)
    stub.HardLink(meta_pb2.HardLinkRequest(src="/data/train/f001", dst="/data/link"), timeout=5)
    stub.SetAttr(meta_pb2.SetAttrRequest(path="/data/train/f002", mode=0o600, uid=5), timeout=5)
    stub.Remove(meta_pb2.RemoveRequest(path="/data/train/f003"), timeout=5)
    last = stub.Create(meta_pb2.CreateRequest(path="/data/last", open_for_write=True, client_id="c"), timeout=5)
    assert meta.kill() == -signal.SIGKILL  # right after the last reply

    meta.start()
    stub = meta.meta
    listing = stub.List(meta_pb2.ListRequest(path="/latest", limit=1000), timeout=5)
    names = [e.name for e in listing.entries]
    assert names == [f"f{i:03d}" for i in range(1, 40) if i != 3]
    renamed = stub.Stat(meta_pb2.StatRequest(path="/data/renamed"), timeout=5).inode
    assert renamed.id == created["/data/train/f000"]
    assert stub.Stat(meta_pb2.StatRequest(path="/data/link"), timeout=5).inode.nlink == 2
    attrs = stub.Stat(meta_pb2.StatRequest(path="/data/train/f002"), timeout=5).inode
    assert (attrs.mode, attrs.uid) == (0o600, 5)
    assert stub.ReadLink(meta_pb2.ReadLinkRequest(path="/latest"), timeout=5).target == "/data/train"
    reopened = stub.Stat(meta_pb2.StatRequest(path="/data/last"), timeout=5).inode
    assert reopened.id == last.inode.id and reopened.open_write_sessions == 1
    assert stub.StatFs(types_pb2.Empty(), timeout=5).gc_pending == 1
    routing = meta.mgmtd.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=5)
    assert len(routing.routing.chains) == 4 and routing.routing.nodes[0].address == "127.0.0.1:1"
    # A new file after restart gets a fresh id: the id counter was persisted too.
    fresh = stub.Create(meta_pb2.CreateRequest(path="/data/fresh"), timeout=5).inode
    assert fresh.id > max(created.values())
    assert meta.kill(signal.SIGTERM) == 0  # graceful stop


def test_invalid_request_maps_to_invalid_argument_with_error_name(meta, tmp_path):
    stub = meta.meta
    for request, name in ((meta_pb2.MkdirsRequest(path="/a/../../x"), "InvalidPath"),
                          (meta_pb2.MkdirsRequest(path="/a\x00b"), "InvalidPath"),
                          (meta_pb2.MkdirsRequest(path="/d", layout=types_pb2.Layout(chunk_size=12345)),
                           "InvalidArgument")):
        with pytest.raises(grpc.RpcError) as info:
            stub.Mkdirs(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details()
        assert dict(info.value.trailing_metadata())[ERROR_METADATA_KEY] == name
    with pytest.raises(grpc.RpcError) as info:
        stub.Create(meta_pb2.CreateRequest(path="/f"), timeout=5)  # no chain table yet
    assert dict(info.value.trailing_metadata())[ERROR_METADATA_KEY] == "NoChainTable"
    listing = stub.List(meta_pb2.ListRequest(path="/"), timeout=5)
    assert list(listing.entries) == []  # nothing was created by the bad requests
    with pytest.raises(grpc.RpcError) as info, trust.node_channel_via(meta.address, 42) as channel:
        mgmtd_pb2_grpc.MgmtdStub(channel).Heartbeat(mgmtd_pb2.HeartbeatRequest(node_id=42, incarnation=1),
                                                    timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert os.path.exists(tmp_path / "meta.lmdb" / "data.mdb")
