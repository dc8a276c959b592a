"""Fixtures for the metadata service unit tests: a fresh store of each engine, a
chain table installed directly in it, the fake chunk store and a Namespace.

``store`` is parametrized over the engines (kv.MetaStore): ``lmdb`` (a fresh
file), ``etcd`` (a fresh key prefix on one real etcd member shared by the
module) and ``rerun`` (LMDB running every mutation twice, the first aborted),
so every test that takes it runs on each, unchanged.
"""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.store import DB_NAMES, Store, u32_key
from fireflyfs.proto import types_pb2

from .fakes import FakeChunkStore


def install_chain_table(store: Store, chain_count: int = 6, table_id: int = 1) -> types_pb2.ChainTable:
    table = types_pb2.ChainTable(id=table_id, version=1, chains=list(range(1, chain_count + 1)), replicas=1)
    store.transact(lambda txn: txn.put_msg("chain_tables", u32_key(table_id), table))
    return table


def dump(store: Store) -> dict:
    """Every key/value of every DB: equal dumps mean nothing changed."""
    with store.read() as txn:
        return {name: list(txn.scan(name)) for name in DB_NAMES}


class Clock:
    def __init__(self) -> None:
        self.ticks = itertools.count(1_000_000_000, 1000)

    def __call__(self) -> int:
        return next(self.ticks)


ENGINES = ("lmdb", "etcd", "rerun")


class _Aborted(Exception):
    pass


class RerunStore(Store):
    """LMDB, but every mutate runs twice: first in a transaction that is then aborted, then for
    real. A mutate that touches anything but its txn (in-memory state, storage) shows it here, as
    it would when the etcd engine reruns it after a conflict."""

    def transact(self, mutate, guard=None):
        try:
            with self.write() as txn:
                mutate(txn)
                raise _Aborted
        except Exception:  # noqa: BLE001 - the first run's outcome is dropped either way
            pass
        return super().transact(mutate, guard)


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    if request.param == "etcd":
        from fireflyfs.meta_service.etcd_store import EtcdStore
        s = EtcdStore(request.getfixturevalue("etcd_endpoints"), f"/t-{uuid.uuid4().hex[:12]}/")
    elif request.param == "rerun":
        s = RerunStore(str(tmp_path / "meta.lmdb"))
    else:
        s = Store(str(tmp_path / "meta.lmdb"))
    yield s
    s.close()


@pytest.fixture
def chunks():
    return FakeChunkStore()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ns(store, chunks):
    install_chain_table(store)
    return Namespace(store, chunks, rng=random.Random(7))
