"""The fsspec tests run on both metadata engines: ``ffs`` (and ``ffs_dir``, built on it) is
parametrized over the session cluster on LMDB and its twin on etcd with two meta servers."""

from __future__ import annotations

import pytest

from tests.conftest import fsspec_on

ENGINE_CLUSTERS = {"lmdb": "cluster", "etcd": "etcd_cluster"}


@pytest.fixture(params=list(ENGINE_CLUSTERS))
def ffs(request):
    return fsspec_on(request.getfixturevalue(ENGINE_CLUSTERS[request.param]))
