"""Every Meta and Mgmtd RPC once, through a real gRPC server in this process.

The MetaServer is built with the fake chunk store injected (no storage
processes), so this checks the servicers' request/reply plumbing; semantics
are covered by the Namespace/ClusterState unit tests.
"""

from __future__ import annotations

import dataclasses

import pytest

from fireflyfs.common import errors, rpc
from fireflyfs.common.layout import Layout
from fireflyfs.meta_service.server import MetaConfig, MetaServer
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, mgmtd_pb2, mgmtd_pb2_grpc, types_pb2

from tests import trust

from .fakes import FakeChunkStore


class MgmtdAs:
    """Mgmtd as its callers reach it: a node registers and heartbeats with its own key (node 1's
    here), everything else comes from the admin."""

    def __init__(self, server: MetaServer) -> None:
        self.channels = [trust.admin_channel(server.address),
                         trust.node_channel(server.address, server.cluster_secret, 1)]
        self._admin, self._node = (mgmtd_pb2_grpc.MgmtdStub(channel) for channel in self.channels)

    def __getattr__(self, method: str):
        return getattr(self._node if method in ("RegisterNode", "Heartbeat") else self._admin, method)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def served_config(tmp_path, **overrides) -> MetaConfig:
    return MetaConfig(data_dir=str(tmp_path), gc_interval_ms=60_000,
                      admin_token_file=trust.admin_token_file(tmp_path), **trust.meta_tls_config(), **overrides)


@pytest.fixture
def served(tmp_path):
    chunks = FakeChunkStore()
    server = MetaServer(served_config(tmp_path), chunk_store=chunks)
    server.start()
    channel = trust.admin_channel(server.address)
    mgmtd = MgmtdAs(server)
    try:
        yield meta_pb2_grpc.MetaStub(channel), mgmtd, chunks
    finally:
        channel.close()
        mgmtd.close()
        server.stop(0)


def test_every_rpc(served):
    meta, mgmtd, chunks = served
    targets = [types_pb2.TargetInfo(id=101 + i, capacity_bytes=1000) for i in range(2)]
    routing = mgmtd.RegisterNode(mgmtd_pb2.RegisterNodeRequest(
        node_id=1, incarnation=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:5", targets=targets)).routing
    assert mgmtd.Heartbeat(mgmtd_pb2.HeartbeatRequest(node_id=1, incarnation=1, targets=[
        mgmtd_pb2.TargetHeartbeat(target_id=101, used_bytes=10)])).routing_version == routing.version
    assert mgmtd.CreateChainTable(mgmtd_pb2.CreateChainTableRequest()).table.chains == [1, 2]
    current = mgmtd.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest())
    assert current.changed and current.routing.version == routing.version + 1
    assert not mgmtd.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(
        known_version=current.routing.version)).changed

    assert meta.Mkdirs(meta_pb2.MkdirsRequest(path="/d", layout=types_pb2.Layout(chunk_size=1 << 16))).path == "/d"
    created = meta.Create(meta_pb2.CreateRequest(path="/d/f", open_for_write=True, client_id="c"))
    assert created.session_id and created.inode.layout.chunk_size == 1 << 16
    assert created.session_lease_ms == MetaConfig(data_dir="").session_lease_ms
    chunks.write(created.inode.id, Layout.from_proto(created.inode.layout), 0, 100_000)
    assert meta.Sync(meta_pb2.SyncRequest(inode_id=created.inode.id, session_id=created.session_id,
                                          client_id="c")).inode.length == 100_000
    renewed = meta.RenewSessions(meta_pb2.RenewSessionsRequest(client_id="c", sessions=[
        meta_pb2.SessionRef(inode_id=created.inode.id, session_id=created.session_id),
        meta_pb2.SessionRef(inode_id=created.inode.id, session_id=created.session_id ^ 1)]))
    assert [ref.session_id for ref in renewed.gone] == [created.session_id ^ 1] and renewed.lease_ms
    closed = meta.Close(meta_pb2.CloseRequest(inode_id=created.inode.id, session_id=created.session_id,
                                              client_id="c", update_mtime=True)).inode
    assert closed.length == 100_000 and closed.open_write_sessions == 0
    opened = meta.Open(meta_pb2.OpenRequest(path="/d/f"))
    assert opened.session_id == 0 and opened.inode.id == created.inode.id
    assert meta.Truncate(meta_pb2.TruncateRequest(path="/d/f", length=10)).inode.length == 10
    copy = meta.CopyFile(meta_pb2.CopyFileRequest(src="/d/f", dst="/e/g", parents=True))
    assert copy.path == "/e/g" and copy.inode.length == 10
    assert meta.Symlink(meta_pb2.SymlinkRequest(path="/s", target="/d/f")).inode.type == types_pb2.INODE_SYMLINK
    assert meta.ReadLink(meta_pb2.ReadLinkRequest(path="/s")).target == "/d/f"
    assert meta.HardLink(meta_pb2.HardLinkRequest(src="/d/f", dst="/h")).inode.nlink == 2
    attrs = meta.SetAttr(meta_pb2.SetAttrRequest(path="/s", follow_symlinks=True, mode=0o600)).inode
    assert attrs.id == created.inode.id and attrs.mode == 0o600 and attrs.uid == 0
    stat = meta.Stat(meta_pb2.StatRequest(path="/s", follow_symlinks=False))
    assert stat.inode.type == types_pb2.INODE_SYMLINK and stat.path == "/s"
    results = meta.BatchStat(meta_pb2.BatchStatRequest(paths=["/h", "/nope"], follow_symlinks=True)).results
    assert results[0].inode.nlink == 2 and results[1].error == "NotFound"
    listing = meta.List(meta_pb2.ListRequest(path="/", with_attrs=True))
    assert [e.name for e in listing.entries] == ["d", "e", "h", "s"] and listing.entries[0].inode.id
    found = meta.Find(meta_pb2.FindRequest(path="/", withdirs=False, limit=2))
    assert [e.path for e in found.entries] == ["/d/f", "/e/g"] and found.more
    meta.Rename(meta_pb2.RenameRequest(src="/e/g", dst="/g"))
    meta.Remove(meta_pb2.RemoveRequest(path="/e", directory_only=True))
    meta.Remove(meta_pb2.RemoveRequest(path="/d", recursive=True))
    statfs = meta.StatFs(types_pb2.Empty())
    assert (statfs.capacity_bytes, statfs.used_bytes, statfs.free_bytes) == (2000, 10, 1990)
    # /d/f lives on as /h; the removed /d waits in the trash until the GC pass empties it
    assert statfs.inodes == 5 and statfs.gc_pending == 0
    with pytest.raises(errors.IsADirectory):
        with rpc.rpc_errors_mapped():
            meta.Open(meta_pb2.OpenRequest(path="/", write=True, client_id="c"))


def test_command_line_flags_build_the_config(tmp_path, monkeypatch):
    from fireflyfs.meta_service.__main__ import parse_args

    config = parse_args(["--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                         "--gc-interval-ms", "50", "--heartbeat-timeout-ms", "3000"])
    assert (config.fsync, config.gc_interval_ms, config.heartbeat_timeout_ms) == (True, 50, 3000)
    assert parse_args(["--data-dir", "x", "--no-fsync"]).fsync is False
    monkeypatch.setenv("FFS_META_FSYNC", "0")
    assert parse_args(["--data-dir", "x"]).fsync is False, "the environment opts out too"
    assert parse_args(["--data-dir", "x", "--fsync"]).fsync is True, "a flag wins over the environment"
    monkeypatch.delenv("FFS_META_FSYNC")
    config = dataclasses.replace(config, admin_token_file=trust.admin_token_file(tmp_path), **trust.meta_tls_config())
    server = MetaServer(config, chunk_store=FakeChunkStore())  # the durable default opens and commits
    try:
        server.namespace.mkdirs("/synced", 1)
        assert server.namespace.stat("/synced")[1] == "/synced"
    finally:
        server.stop(0)


def test_request_ids_replay_and_stat_inodes_over_grpc(served):
    meta, mgmtd, _chunks = served
    mgmtd.RegisterNode(mgmtd_pb2.RegisterNodeRequest(
        node_id=1, incarnation=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:5",
        targets=[types_pb2.TargetInfo(id=101, capacity_bytes=1000)]))
    mgmtd.CreateChainTable(mgmtd_pb2.CreateChainTableRequest(replicas=1))
    create = meta_pb2.CreateRequest(path="/f", exclusive=True, request_id="req-1")
    first = meta.Create(create)
    again = meta.Create(create)
    assert again.capability and first.capability         # each reply signs a fresh capability...
    again.ClearField("capability")
    first.ClearField("capability")
    assert again == first, "...and otherwise a retried exclusive create answers as the first did"
    rename = meta_pb2.RenameRequest(src="/f", dst="/g", request_id="req-2")
    meta.Rename(rename)
    meta.Rename(rename)   # no NotFound for the client's own first attempt
    with pytest.raises(errors.NotFound):
        with rpc.rpc_errors_mapped():
            meta.Rename(meta_pb2.RenameRequest(src="/f", dst="/g", request_id="req-3"))
    meta.Remove(meta_pb2.RemoveRequest(path="/g"))
    states = meta.StatInodes(meta_pb2.StatInodesRequest(inode_ids=[first.inode.id, 1, 424242])).states
    assert [(s.exists, s.gc_pending) for s in states] == [(False, True), (True, False), (False, False)]


def test_inline_creates_opens_and_batches(served):
    """Create(inline), Open/BatchStat with inline_ok, attrs_only stats and BatchCreate over gRPC."""
    meta, mgmtd, chunks = served
    mgmtd.RegisterNode(mgmtd_pb2.RegisterNodeRequest(
        node_id=1, incarnation=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:5",
        targets=[types_pb2.TargetInfo(id=101, capacity_bytes=1000)]))
    mgmtd.CreateChainTable(mgmtd_pb2.CreateChainTableRequest())
    created = meta.Create(meta_pb2.CreateRequest(path="/d/small", inline=True, inline_data=b"tiny",
                                                 parents=True, truncate=True))
    assert created.inline and created.session_id == 0 and created.inode.length == 4
    opened = meta.Open(meta_pb2.OpenRequest(path="/d/small", inline_ok=True))
    assert (opened.inline, opened.inline_data, opened.path) == (True, b"tiny", "/d/small")
    stats = meta.BatchStat(meta_pb2.BatchStatRequest(paths=["/d/small", "/nope"], attrs_only=True)).results
    assert (stats[0].path, stats[0].inode.length, stats[0].inline_data, stats[1].error) == (
        "/d/small", 4, b"", "NotFound")
    assert chunks.calls == []   # nothing above touched storage
    with pytest.raises(Exception) as too_big:
        meta.Create(meta_pb2.CreateRequest(path="/d/big", inline=True, inline_data=b"x" * (1 << 20)))
    assert rpc.error_from_rpc(too_big.value).__class__ is errors.TooLarge
    batch = meta.BatchCreate(meta_pb2.BatchCreateRequest(requests=[
        meta_pb2.CreateRequest(path="/d/a", inline=True, inline_data=b"a", request_id="r-a"),
        meta_pb2.CreateRequest(path="/d/small", exclusive=True, request_id="r-x"),
        meta_pb2.CreateRequest(path="/d/e", truncate=True)])).results
    assert batch[0].reply.inline and batch[0].reply.path == "/d/a"
    assert (batch[1].error, batch[2].error, batch[2].reply.inode.length) == ("AlreadyExists", "", 0)
    again = meta.BatchCreate(meta_pb2.BatchCreateRequest(requests=[
        meta_pb2.CreateRequest(path="/d/a", inline=True, inline_data=b"a", request_id="r-a")])).results
    assert again[0].reply.inode.id == batch[0].reply.inode.id   # replayed, not run twice
    # A plain read open (no inline_ok) moves the bytes to chunks first.
    plain = meta.Open(meta_pb2.OpenRequest(path="/d/small"))
    assert not plain.inline and plain.inline_data == b"" and ("write", plain.inode.id, 0, 4) in chunks.calls


def test_lease_and_storage_gate_come_from_flags_or_the_environment(monkeypatch):
    from fireflyfs.meta_service.__main__ import parse_args

    monkeypatch.setenv("FFS_META_SESSION_LEASE_MS", "1500")
    monkeypatch.setenv("FFS_META_STORAGE_CALLS_MAX", "3")
    config = parse_args(["--data-dir", "x"])
    assert (config.session_lease_ms, config.storage_calls_max) == (1500, 3)
    config = parse_args(["--data-dir", "x", "--session-lease-ms", "9000", "--storage-calls-max", "5"])
    assert (config.session_lease_ms, config.storage_calls_max) == (9000, 5)
    monkeypatch.setenv("FFS_META_STORAGE_CALLS_MAX", "16")
    with pytest.raises(ValueError, match="must stay free for metadata"):
        parse_args(["--data-dir", "x"])


def test_a_batch_of_creates_shares_durable_commits(tmp_path):
    """The creates of one BatchCreate run side by side, so group commit gives them fewer fdatasyncs
    than creates; every one is durable (counted) and present when the reply arrives."""
    server = MetaServer(served_config(tmp_path), chunk_store=FakeChunkStore())
    server.start()
    channel = trust.admin_channel(server.address)
    try:
        meta, mgmtd = meta_pb2_grpc.MetaStub(channel), MgmtdAs(server)
        mgmtd.RegisterNode(mgmtd_pb2.RegisterNodeRequest(
            node_id=1, incarnation=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:5",
            targets=[types_pb2.TargetInfo(id=101, capacity_bytes=1000)]))
        mgmtd.CreateChainTable(mgmtd_pb2.CreateChainTableRequest())
        meta.Mkdirs(meta_pb2.MkdirsRequest(path="/b", parents=True))
        counters = server.store.writer.counters
        before = (counters.writes_durable, counters.commits_durable)
        results = meta.BatchCreate(meta_pb2.BatchCreateRequest(requests=[
            meta_pb2.CreateRequest(path=f"/b/f{n}", inline=True, inline_data=b"%d" % n, request_id=f"r{n}")
            for n in range(64)])).results
        assert [r.reply.path for r in results] == [f"/b/f{n}" for n in range(64)], "results in request order"
        writes, commits = counters.writes_durable - before[0], counters.commits_durable - before[1]
        assert writes == 64 and commits < writes, (writes, commits)
        listed = meta.List(meta_pb2.ListRequest(path="/b")).entries
        assert len(listed) == 64
    finally:
        channel.close()
        server.stop(0)
