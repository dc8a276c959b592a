"""Slow storage cannot take the metadata service's worker threads.

Goal: while storage hangs, calls that wait on it (Close settling a length,
CopyFile) hold at most ``storage_calls_max`` of the gRPC workers; the rest fail
fast with a retryable Unavailable, and Stat, List and Create keep answering.
Method: a real MetaServer in this process with a chunk store whose calls block
until the test releases them; many Close and CopyFile calls go out on raw stubs
(no client retry), then metadata calls must complete while storage is still
blocked. Nothing here measures time: "answers" means "returns before storage
is released".
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest

from fireflyfs.common.errors import Unavailable
from fireflyfs.common.rpc import make_channel
from fireflyfs.meta_service.chunk_store import GatedChunkStore
from fireflyfs.meta_service.server import MetaConfig, MetaServer
from fireflyfs.proto import meta_pb2, meta_pb2_grpc
from tests import trust

from .conftest import install_chain_table
from .fakes import FakeChunkStore

STORAGE_CALLS_MAX = 4
CALL_TIMEOUT_S = 60     # a guard against a hang, never reached when the gate works


class HangingStorage(FakeChunkStore):
    """Every storage call blocks until released; entered counts the callers inside."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def _check(self, *call) -> None:
        self.entered.release()
        self.release.wait()
        super()._check(*call)


@pytest.fixture
def served(tmp_path):
    storage = HangingStorage()
    server = MetaServer(MetaConfig(data_dir=str(tmp_path), gc_interval_ms=60_000, rpc_workers_max=16,
                                   storage_calls_max=STORAGE_CALLS_MAX,
                                   admin_token_file=trust.admin_token_file(tmp_path), **trust.meta_tls_config()),
                        chunk_store=storage)
    install_chain_table(server.store)
    server.start()
    channel = make_channel(server.address, token=trust.ADMIN_TOKEN)
    try:
        yield meta_pb2_grpc.MetaStub(channel), storage
    finally:
        storage.release.set()
        channel.close()
        server.stop(0)


def test_hanging_storage_holds_only_its_share_of_workers(served):
    meta, storage = served
    sessions = [meta.Create(meta_pb2.CreateRequest(path=f"/f{i}", open_for_write=True, client_id="c"),
                            timeout=CALL_TIMEOUT_S) for i in range(10)]
    calls = [("Close", meta_pb2.CloseRequest(inode_id=s.inode.id, session_id=s.session_id, client_id="c"))
             for s in sessions]
    calls += [("CopyFile", meta_pb2.CopyFileRequest(src=f"/f{i}", dst=f"/copy{i}")) for i in range(4)]
    with futures.ThreadPoolExecutor(len(calls)) as pool:
        pending = [pool.submit(getattr(meta, method), request, timeout=CALL_TIMEOUT_S)
                   for method, request in calls]
        for _ in range(STORAGE_CALLS_MAX):
            assert storage.entered.acquire(timeout=CALL_TIMEOUT_S), "storage calls should start"
        # Every call beyond the gate's slots is refused without waiting on storage.
        refused = []
        for done in futures.as_completed(pending, timeout=CALL_TIMEOUT_S):
            refused.append(done)
            if len(refused) == len(calls) - STORAGE_CALLS_MAX:
                break
        for failed in refused:
            error = failed.exception()
            assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
            assert "storage-bound operations busy" in error.details()
        # Metadata keeps answering while STORAGE_CALLS_MAX workers wait on storage.
        assert not storage.release.is_set()
        assert meta.Stat(meta_pb2.StatRequest(path="/f0"), timeout=CALL_TIMEOUT_S).inode.id
        assert len(meta.List(meta_pb2.ListRequest(path="/"), timeout=CALL_TIMEOUT_S).entries) == 10
        assert meta.Create(meta_pb2.CreateRequest(path="/new"), timeout=CALL_TIMEOUT_S).inode.id
        assert sum(not f.done() for f in pending) == STORAGE_CALLS_MAX
        storage.release.set()
        finished = [f.result() for f in pending if f not in refused]
    assert len(finished) == STORAGE_CALLS_MAX


def test_the_gate_frees_its_slot_when_a_call_fails():
    storage = FakeChunkStore()
    gate = GatedChunkStore(storage, calls_max=1)
    storage.fail = True
    for _ in range(3):
        with pytest.raises(Unavailable, match="fake storage down"):
            gate.file_length_from_chunks(1, None)
    storage.fail = False
    assert gate.remove_file_chunks(1, None) == 0
