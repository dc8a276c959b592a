"""rm -r in bounded transactions (trash.py), on both engines: the tree leaves the namespace in one
small transaction and the trash is emptied in batches of at most trash_batch_entries_max entries."""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import limits
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.store import Txn
from fireflyfs.meta_service.trash import empty_trash, trash_entries

from .conftest import install_chain_table

NOW = 1_000_000_000


class CountingKv:
    """A KvTxn that counts the writes of the transaction it wraps."""

    def __init__(self, kv, writes: list[int]) -> None:
        self._kv, self._writes = kv, writes

    def put(self, table, key, value):
        self._writes[-1] += 1
        return self._kv.put(table, key, value)

    def delete(self, table, key):
        self._writes[-1] += 1
        return self._kv.delete(table, key)

    def __getattr__(self, name):
        return getattr(self._kv, name)


def counting_writes(store, monkeypatch) -> list[int]:
    """Writes per attempted transaction of store, from now on."""
    writes: list[int] = []
    real = store.transact

    def transact(mutate, guard=None):
        def counted(txn):
            writes.append(0)
            return mutate(Txn(CountingKv(txn.kv, writes)))
        return real(counted, guard=guard)

    monkeypatch.setattr(store, "transact", transact)
    return writes


def test_a_large_tree_is_removed_in_bounded_transactions(store, chunks, monkeypatch):
    monkeypatch.setattr(limits, "trash_batch_entries_max", 50)
    install_chain_table(store)
    ns = Namespace(store, chunks, rng=random.Random(1))
    paths = [f"/big/d{d}/f{i}" for d in range(3) for i in range(120)]
    paths += [f"/big/d0/sub/deep/g{i}" for i in range(80)] + ["/big/d1/empty/"]
    for path in paths:
        if path.endswith("/"):
            ns.mkdirs(path, NOW, parents=True)
        else:
            ns.create(path, NOW, parents=True)
    files = ns.statfs().inodes
    writes = counting_writes(store, monkeypatch)
    ns.remove("/big", NOW, recursive=True)
    assert max(writes) <= 5, f"rm -r wrote {max(writes)} records in one transaction"
    with pytest.raises(FileNotFoundError):
        ns.stat("/big/d0/f1")
    ns.create("/big/again", NOW, parents=True)      # the name is free at once
    with store.read() as txn:
        assert trash_entries(txn) == 1
    writes.clear()
    removed = empty_trash(store, NOW, transactions_max=1000)
    assert removed == len(paths) + 6            # + big, d0, d1, d2, sub, deep
    assert writes and max(writes) <= 3 * 50, f"a trash step wrote {max(writes)} records"
    with store.read() as txn:
        assert trash_entries(txn) == 0
        assert txn.entries("gc") == 440         # every file's chunks go through GC
    assert files == len(paths) + 6 + 1 and ns.statfs().inodes == 3   # root, the new /big and /big/again


def test_emptying_resumes_after_a_restart_midway(store, chunks, monkeypatch):
    monkeypatch.setattr(limits, "trash_batch_entries_max", 10)
    install_chain_table(store)
    ns = Namespace(store, chunks, rng=random.Random(2))
    for i in range(35):
        ns.create(f"/t/a/f{i}", NOW, parents=True)
    ns.remove("/t", NOW, recursive=True)
    assert empty_trash(store, NOW, transactions_max=2) == 20     # then the process "dies"
    restarted = Namespace(store, chunks, rng=random.Random(3))
    assert empty_trash(restarted.store, NOW, transactions_max=100) == 17   # 15 files, a, t
    with store.read() as txn:
        assert trash_entries(txn) == 0 and txn.entries("gc") == 35
