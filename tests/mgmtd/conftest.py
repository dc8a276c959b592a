"""Fixtures for the cluster manager tests: a fresh LMDB store and a full dump of it."""

from __future__ import annotations

import pytest

from fireflyfs.meta_service.store import Store


def dump(store: Store) -> dict:
    """Every key/value of every DB: equal dumps mean nothing changed."""
    with store.read() as txn:
        return {name: list(txn.scan(name)) for name in store.dbs}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "meta.lmdb"))
    yield s
    s.close()
