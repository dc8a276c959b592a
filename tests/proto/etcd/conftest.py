"""Real etcd members for the client tests: one shared member, or a fresh 3-member cluster.

Where the etcd binary is missing the tests skip with the reason, except under CI
(the ``CI`` variable set), where deploy/test.sh installs it and a skip would hide a
broken setup: there they fail.
"""

from __future__ import annotations

import os

import pytest

from fireflyfs.deploy.etcd_cluster import EtcdCluster, etcd_binary
from fireflyfs.deploy.local_cluster import ClusterError


def require_etcd() -> None:
    try:
        etcd_binary()
    except ClusterError as missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {missing}")
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def etcd_endpoints(tmp_path_factory) -> list[str]:
    """One etcd member shared by a module's tests (each test uses its own key prefix)."""
    require_etcd()
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def etcd_three(tmp_path) -> EtcdCluster:
    """A fresh 3-member cluster, for tests that kill members."""
    require_etcd()
    cluster = EtcdCluster(tmp_path / "etcd", members=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
