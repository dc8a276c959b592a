"""The meta store's durability wiring: durable by default, group commit, the opt-out, NoSpace.

The ordering proof (no reply before the synced commit covering it) is in
tests/common/test_lmdb_commit.py; these tests check that Store uses it: its
env runs with LMDB's sync and metasync on, every write goes through the group
committer, and a namespace write seen by a new read was counted durable.
"""

from __future__ import annotations

import threading

import pytest

from fireflyfs.common.errors import NoSpace
from fireflyfs.meta_service.store import Store
from fireflyfs.proto import types_pb2


@pytest.fixture
def store(tmp_path):
    """These are LMDB's durability tests: the etcd engine's durability is etcd's (raft + fsync)."""
    opened = Store(str(tmp_path / "meta.lmdb"))
    yield opened
    opened.close()


def test_the_default_store_is_durable(store):
    flags = store.env.flags()
    assert (flags["sync"], flags["metasync"], store.writer.durable) == (True, True, True)
    with store.write() as txn:
        txn.put_inode(types_pb2.Inode(id=7, type=types_pb2.INODE_FILE))
    assert store.writer.counters.writes_durable == 1, "the write returned after a synced commit"
    with store.read() as txn:
        assert txn.get_inode(7).id == 7


def test_the_opt_out_commits_unsynced(tmp_path):
    store = Store(str(tmp_path / "m"), fsync=False)
    try:
        flags = store.env.flags()
        assert (flags["sync"], flags["metasync"], store.writer.durable) == (False, False, False)
        with store.write() as txn:
            txn.put_inode(types_pb2.Inode(id=7))
        assert (store.writer.counters.writes_unsynced, store.writer.counters.writes_durable) == (1, 0)
    finally:
        store.close()


def test_concurrent_namespace_writers_share_commits_and_all_land(store):
    def run(first: int) -> None:
        for inode_id in range(first, first + 30):
            with store.write() as txn:
                txn.put_inode(types_pb2.Inode(id=inode_id))
                txn.next_id("test", 1)

    threads = [threading.Thread(target=run, args=(100 + 100 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.read() as txn:
        assert txn.entries("inodes") == 240
        assert txn.get_counter("test") == 241, "every increment saw the one before it"
    assert store.writer.counters.writes_durable == 240


def test_a_full_map_is_no_space_and_the_store_goes_on(tmp_path):
    store = Store(str(tmp_path / "m"), map_size_bytes=1 << 20, map_size_bytes_max=1 << 20)
    try:
        with pytest.raises(NoSpace, match="is full"):
            with store.write() as txn:
                for n in range(10_000):
                    txn.put_inline(n, bytes(1024))
        with store.write() as txn:
            txn.put_inode(types_pb2.Inode(id=7))
        with store.read() as txn:
            assert txn.get_inline(0) is None, "the refused write left nothing"
            assert txn.get_inode(7).id == 7
    finally:
        store.close()


def test_transact_commits_durably_returns_the_result_and_a_raising_mutation_changes_nothing(store):
    before = store.writer.counters.writes_durable

    def create(txn):
        txn.put_inode(types_pb2.Inode(id=41))
        return txn.get_inode(41).id

    assert store.transact(create) == 41
    assert store.writer.counters.writes_durable == before + 1

    def half_then_fail(txn):
        txn.put_inode(types_pb2.Inode(id=42))
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        store.transact(half_then_fail)
    with store.read() as txn:
        assert txn.get_inode(41).id == 41 and txn.get_inode(42) is None
