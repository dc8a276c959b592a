"""The client and fsspec tests run on both metadata engines: ``cluster`` (and so ``ffs`` and
``ffs_dir``, built on it) is parametrized over the session cluster on LMDB and its twin on etcd
with two meta servers (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import fsspec_on

ENGINE_CLUSTERS = {"lmdb": "lmdb_cluster", "etcd": "etcd_cluster"}


@pytest.fixture(scope="session", params=list(ENGINE_CLUSTERS))
def cluster(request):
    return request.getfixturevalue(ENGINE_CLUSTERS[request.param])


@pytest.fixture
def ffs(cluster):
    return fsspec_on(cluster)
