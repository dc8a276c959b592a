"""Shared fixtures: one real local cluster per test session, and fsspec handles to it.

``cluster`` starts real processes (one meta, three storage nodes of two
targets) under a pytest tmp dir and stops them at the end of the session, even
when tests fail. ``ffs`` is a FireflyFileSystem on that cluster; ``ffs_dir`` a
fresh, empty directory in it, so tests sharing the cluster never see each
other's files.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import uuid

import pytest

from fireflyfs.deploy.local_cluster import LocalCluster


@dataclasses.dataclass(frozen=True)
class RunningCluster:
    url: str
    host: str
    port: int
    cluster: LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> RunningCluster:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), storage_nodes=3, targets_per_node=2,
                         python=sys.executable)
    try:
        url = local.up()
        yield RunningCluster(url=url, host=local.host, port=local.port, cluster=local)
    finally:
        local.down()


@pytest.fixture
def ffs(cluster):
    """A FireflyFileSystem on the session cluster."""
    import fsspec

    return fsspec.filesystem("ffs", host=cluster.host, port=cluster.port)


def unique_dir(prefix: str = "t") -> str:
    """A path under the root that no other test uses."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix)[:80]
    return f"/{safe}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ffs_dir(ffs, request) -> str:
    """A fresh directory in the cluster named after the test; returns its path."""
    path = unique_dir(request.node.name)
    ffs.mkdir(path)
    return path
