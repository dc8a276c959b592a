"""Shared fixtures: one real local cluster per test session, and fsspec handles to it.

``cluster`` starts real processes (one meta, three storage nodes of two
targets, so chains of 3 replicas by default) under a pytest tmp dir and stops
them at the end of the session, even when tests fail. ``ffs`` is a
FireflyFileSystem on that cluster; ``ffs_dir`` a fresh, empty directory in it,
so tests sharing the cluster never see each other's files. ``make_cluster``
starts dedicated clusters for tests that kill or restart processes (fault
tests: a short heartbeat timeout so failures are seen in ~2-3 s) and stops
them when the test ends.

Seeds: every randomized test draws everything from one seed, read from the one
variable ``FFS_SEED`` (else drawn fresh), announces ``SEED=<n>`` and its
parameters first, and on failure reports the one replay form
``FFS_SEED=<n> [FFS_...=...] .venv/bin/pytest '<file>::<test>' -s``
(``seed`` fixture, ``announce_seed``, ``seeds_or``).

Security is on, as for every user: every cluster the tests start adopts one
admin token made for the session (``FFS_CLUSTER_ADMIN_TOKEN``), and every
client in the test process and its children presents it (``FFS_TOKEN``).
Tests of what others may do make their own users (``make_user``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import sys
import tempfile
import uuid

import pytest

from fireflyfs.common import tls
from fireflyfs.common.auth import TOKEN_ENV, new_user_token
from fireflyfs.deploy.etcd_cluster import EtcdCluster, etcd_binary
from fireflyfs.deploy.local_cluster import ADMIN_TOKEN_ENV, CA_DIR_ENV, ClusterError, LocalCluster

SESSION_ADMIN_TOKEN = os.environ.get(ADMIN_TOKEN_ENV) or new_user_token(0)[0]
os.environ[ADMIN_TOKEN_ENV] = SESSION_ADMIN_TOKEN
os.environ[TOKEN_ENV] = SESSION_ADMIN_TOKEN
# TLS: one CA for the session; every cluster's certificates chain to it, and this process serves
# (in-process servers) and calls with TLS.
SESSION_CA_DIR = os.environ.get(CA_DIR_ENV) or tempfile.mkdtemp(prefix="ffs-test-ca-")
os.environ[CA_DIR_ENV] = SESSION_CA_DIR
os.environ[tls.CA_ENV] = tls.ensure_ca(SESSION_CA_DIR)[0]
SESSION_TLS = tls.issue(SESSION_CA_DIR, SESSION_CA_DIR, f"test-{os.getpid()}", ["127.0.0.1", "localhost"])
tls.configure(SESSION_TLS)

SEED_ENV = "FFS_SEED"
_REPLAY = pytest.StashKey[str]()


def seed_from_env(default: int | None = None) -> int:
    """FFS_SEED when set (a replay), else default, else a fresh random 32-bit seed."""
    value = os.environ.get(SEED_ENV)
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().getrandbits(32)


def seeds_or(defaults) -> list[int]:
    """The seeds of a test that runs many: only FFS_SEED when set (a replay), else defaults."""
    value = os.environ.get(SEED_ENV)
    return [int(value)] if value else list(defaults)


def replay_command(nodeid: str, seed: int, env: dict[str, object] | None = None, args: str = "") -> str:
    """The one replay form: the seed, other parameters, the test without its parameter id."""
    settings = "".join(f" {name}={value}" for name, value in (env or {}).items())
    test = nodeid.split("[")[0]
    return f"{SEED_ENV}={seed}{settings} .venv/bin/pytest{' ' + args if args else ''} '{test}' -s"


def announce_seed(request, seed: int, env: dict[str, object] | None = None, args: str = "",
                  **parameters) -> str:
    """Print SEED= and the parameters first; a failure of the test reports the replay command."""
    command = replay_command(request.node.nodeid, seed, env, args)
    shown = "".join(f" {name}={value}" for name, value in parameters.items())
    print(f"SEED={seed}{shown}\nreplay: {command}", flush=True)
    request.node.stash[_REPLAY] = command
    return command


@pytest.fixture
def seed(request) -> int:
    """This run's seed (FFS_SEED or fresh), announced with its replay command."""
    value = seed_from_env()
    announce_seed(request, value)
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _REPLAY in item.stash:
        report.sections.append(("replay", item.stash[_REPLAY]))


@dataclasses.dataclass(frozen=True)
class RunningCluster:
    url: str
    host: str
    port: int
    cluster: LocalCluster


# Replicas of the session cluster: FFS_TEST_REPLICAS, else the launcher's default (3 with 3 nodes).
SESSION_REPLICAS = int(os.environ.get("FFS_TEST_REPLICAS", "0")) or None


@pytest.fixture(scope="session")
def cluster(lmdb_cluster) -> RunningCluster:
    """The session cluster (tests/client/conftest.py runs its tests on both engines instead)."""
    return lmdb_cluster


@pytest.fixture(scope="session")
def lmdb_cluster(tmp_path_factory) -> RunningCluster:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), storage_nodes=3, targets_per_node=2,
                         replicas=SESSION_REPLICAS, python=sys.executable)
    try:
        url = local.up()
        yield RunningCluster(url=url, host=local.host, port=local.port, cluster=local)
    finally:
        local.down()


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory) -> RunningCluster:
    """The session cluster's twin on the etcd engine: one etcd member, two meta servers (a client
    spreads its calls over both), the same storage layout."""
    require_etcd()
    local = LocalCluster(tmp_path_factory.mktemp("etcd-cluster"), storage_nodes=3, targets_per_node=2,
                         replicas=SESSION_REPLICAS, python=sys.executable, meta_engine="etcd", etcd_members=1,
                         meta_servers=2)
    try:
        url = local.up()
        yield RunningCluster(url=url, host=local.host, port=local.port, cluster=local)
    finally:
        local.down()


def fsspec_on(running: RunningCluster, **options):
    """A FireflyFileSystem on a running cluster, through every meta server it has (options: more
    storage options, such as asynchronous=True for the asyncio face)."""
    import fsspec

    return fsspec.filesystem("ffs", addresses=",".join(running.cluster.meta_addresses), token=SESSION_ADMIN_TOKEN,
                             **options)


@pytest.fixture
def make_cluster(tmp_path):
    """make_cluster(storage_nodes=4, replicas=3, heartbeat_timeout_ms=2000, ...) -> a started LocalCluster
    of its own under tmp_path; every one is stopped at teardown."""
    started: list[LocalCluster] = []

    def make(storage_nodes: int = 4, replicas: int | None = 3, heartbeat_timeout_ms: int | None = 2000,
             targets_per_node: int = 2, **kwargs) -> LocalCluster:
        local = LocalCluster(tmp_path / f"cluster-{len(started) + 1}", storage_nodes=storage_nodes,
                             targets_per_node=targets_per_node, replicas=replicas,
                             heartbeat_timeout_ms=heartbeat_timeout_ms, python=sys.executable, **kwargs)
        started.append(local)
        local.up()
        return local

    try:
        yield make
    finally:
        for local in started:
            local.down()


@pytest.fixture
def ffs(cluster):
    """A FireflyFileSystem on the session cluster."""
    import fsspec

    return fsspec.filesystem("ffs", host=cluster.host, port=cluster.port, token=SESSION_ADMIN_TOKEN)


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


# ---- real etcd members ----------------------------------------------------------------
# Where the etcd binary is missing these tests skip with the reason, except under CI (the
# ``CI`` variable set), where deploy/test.sh installs it and a skip would hide a broken
# setup: there they fail.

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


@pytest.fixture
def plaintext_bulk(monkeypatch):
    """Bulk connections of this process in plaintext: for tests of the bulk protocol's frames against
    in-process listeners (raw sockets, malformed frames); TLS over the same frames is what every
    cluster test runs."""
    monkeypatch.setattr(tls.process_tls, "bulk_client", None)
