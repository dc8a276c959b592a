"""The local cluster launcher: contract command lines, pid safety, restarts, isolation.

Method: the first tests need no services (state files and a fake "python" that
fails); the rest start a small real cluster (2 storage nodes of 1 target) in
tmp_path next to the session cluster, kill and restart parts of it, and check
the processes through /proc.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys

import pytest

from fireflyfs.deploy.local_cluster import ClusterError, LocalCluster
from fireflyfs.proto import types_pb2


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_command_lines_follow_the_contract(tmp_path):
    local = LocalCluster(tmp_path, storage_nodes=2, targets_per_node=3, port=4321, python="py")
    tls_dir, ca = tmp_path / "tls", str(local.ca_file)
    assert local.command("meta") == ["py", "-m", "fireflyfs.meta_service", "--data-dir",
                                     str(tmp_path / "meta"), "--listen", "127.0.0.1:4321",
                                     "--metrics-listen", "127.0.0.1:0", "--admin-token-file", str(tmp_path / "admin.token"),
                                     "--tls-cert", str(tls_dir / "meta.pem"), "--tls-key", str(tls_dir / "meta.key"),
                                     "--tls-ca", ca]
    assert local.command("storage-2") == [
        "py", "-m", "fireflyfs.storage_service", "--node-id", "2", "--data-dir",
        str(tmp_path / "storage-2"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        "--mgmtd", "127.0.0.1:4321",
        "--targets", "3", "--node-key-file", str(tmp_path / "storage-2" / "node.key"),
        "--tls-cert", str(tls_dir / "storage-2.pem"), "--tls-key", str(tls_dir / "storage-2.key"), "--tls-ca", ca]
    assert oct((tls_dir / "meta.key").stat().st_mode & 0o777) == "0o600"
    insecure = LocalCluster(tmp_path / "dev", storage_nodes=2, port=4322, python="py", insecure=True)
    assert insecure.command("meta")[-1] == insecure.command("storage-1")[-1] == "--insecure"
    assert local.roles() == ["meta", "storage-1", "storage-2"]
    assert local.url == "ffs://127.0.0.1:4321"
    with pytest.raises(ValueError):
        local.command("storage-3")


def test_replicas_and_heartbeat_timeout_reach_the_processes(tmp_path):
    local = LocalCluster(tmp_path, storage_nodes=4, targets_per_node=1, port=4321, python="py",
                         heartbeat_timeout_ms=2000)
    assert local.replicas == 3                              # default with >= 3 storage nodes
    meta = local.command("meta")
    assert meta[meta.index("--heartbeat-timeout-ms") + 1] == "2000"
    storage = local.command("storage-1")
    assert storage[storage.index("--heartbeat-interval-ms") + 1] == "200"   # a tenth: fence after 5
    assert storage[storage.index("--heartbeat-timeout-ms") + 1] == "2000"
    assert LocalCluster(tmp_path / "a", storage_nodes=2).replicas == 1
    assert LocalCluster(tmp_path / "b", storage_nodes=5, replicas=2).replicas == 2
    assert "--heartbeat-interval-ms" not in LocalCluster(tmp_path / "c", storage_nodes=1).command("storage-1")
    with pytest.raises(ValueError, match="3 replicas"):
        LocalCluster(tmp_path / "d", storage_nodes=2, replicas=3)
    with pytest.raises(ValueError):
        LocalCluster(tmp_path / "e", heartbeat_timeout_ms=10)


def test_sizes_and_port_come_back_from_cluster_json(tmp_path):
    (tmp_path / "cluster.json").write_text(json.dumps(
        {"port": 23456, "storage_nodes": 5, "targets_per_node": 4, "pids": {}}))
    local = LocalCluster(tmp_path)
    assert (local.port, local.storage_nodes, local.targets_per_node) == (23456, 5, 4)
    assert LocalCluster(tmp_path, port=0).port == 23456         # 0: keep the persisted port
    assert LocalCluster(tmp_path, storage_nodes=2).storage_nodes == 2
    (tmp_path / "cluster.json").write_text(json.dumps(
        {"port": 23456, "storage_nodes": 5, "targets_per_node": 4, "replicas": 2,
         "heartbeat_timeout_ms": 3000, "pids": {}}))
    local = LocalCluster(tmp_path)
    assert (local.replicas, local.heartbeat_timeout_ms) == (2, 3000)
    assert LocalCluster(tmp_path, replicas=3).replicas == 3


def test_fsync_is_the_default_and_the_opt_out_reaches_every_process_and_persists(tmp_path):
    durable = LocalCluster(tmp_path / "a", storage_nodes=1)
    assert durable.fsync and not any("--no-fsync" in durable.command(role) for role in durable.roles())
    fast = LocalCluster(tmp_path / "b", storage_nodes=1, fsync=False)
    assert all("--no-fsync" in fast.command(role) for role in fast.roles())
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cluster.json").write_text(json.dumps({"port": 23456, "fsync": False, "pids": {}}))
    assert LocalCluster(tmp_path / "c").fsync is False, "a restart keeps the cluster's mode"
    assert LocalCluster(tmp_path / "c", fsync=True).fsync is True


def test_stale_pid_files_never_touch_strangers(tmp_path):
    """A pid file naming a live process that is not ours reads as stopped and is never signalled."""
    local = LocalCluster(tmp_path, storage_nodes=1, port=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "run" / "storage-1.pid").write_text("not a pid\n")
    assert [row["state"] for row in local.status()] == ["stopped", "stopped"]
    assert local.pid("meta") is None
    assert local.down() == []
    assert _alive(os.getpid())
    with pytest.raises(ClusterError):
        local.kill("meta")


def test_a_crashing_service_fails_up_with_its_log(tmp_path):
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\necho 'boom-marker: cannot start' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    local = LocalCluster(tmp_path / "c", storage_nodes=1, python=str(fake_python),
                         startup_timeout_s=20)
    with pytest.raises(ClusterError) as info:
        local.up()
    assert "boom-marker" in str(info.value)
    assert "meta" in str(info.value)
    assert local.status()[0]["state"] == "stopped"


def test_session_cluster_is_up_with_its_environment(cluster):
    rows = cluster.cluster.status()
    assert [r["state"] for r in rows] == ["running"] * 4
    assert [r["node_id"] for r in rows] == [None, 1, 2, 3]
    assert all(r["address"].startswith("127.0.0.1:") for r in rows)
    routing = cluster.cluster.routing()
    storage = [n for n in routing.nodes if n.type == types_pb2.NODE_STORAGE]
    assert sorted(n.id for n in storage) == [1, 2, 3]
    assert len(routing.targets) == 6
    assert routing.chain_tables, "the launcher creates the chain table"
    replicas = cluster.cluster.replicas
    assert routing.chain_tables[0].replicas == replicas and len(routing.chains) == 6 // replicas
    assert all(t.public_state == types_pb2.SERVING for t in routing.targets)
    environ = pathlib.Path(f"/proc/{rows[1]['pid']}/environ").read_bytes().split(b"\0")
    assert b"MALLOC_MMAP_THRESHOLD_=67108864" in environ
    assert b"MALLOC_TRIM_THRESHOLD_=268435456" in environ
    state = json.loads((pathlib.Path(cluster.cluster.base_dir) / "cluster.json").read_text())
    assert state["port"] == cluster.port
    assert state["pids"]["meta"] == rows[0]["pid"]
    assert state["replicas"] == replicas


def test_kill_restart_and_isolation(tmp_path, cluster):
    local = LocalCluster(tmp_path / "small", storage_nodes=2, targets_per_node=1,
                         python=sys.executable)
    try:
        url = local.up()
        assert url == f"ffs://127.0.0.1:{local.port}" and local.port != cluster.port
        first = {r["name"]: r["pid"] for r in local.status()}
        assert all(first.values())
        # up() on a running cluster starts nothing new.
        assert local.up() == url
        assert {r["name"]: r["pid"] for r in local.status()} == first

        killed = local.kill(2, signal.SIGKILL)
        assert killed == first["storage-2"] and not _alive(killed)
        assert [r["state"] for r in local.status()] == ["running", "running", "stopped"]

        # A fresh object (as `ffs cluster up` would make) restarts only storage-2, same port.
        again = LocalCluster(tmp_path / "small", python=sys.executable)
        assert again.up() == url
        now = {r["name"]: r["pid"] for r in again.status()}
        assert now["meta"] == first["meta"] and now["storage-1"] == first["storage-1"]
        assert now["storage-2"] not in (None, first["storage-2"])
        routing = again.routing()
        connected = [n.id for n in routing.nodes
                     if n.type == types_pb2.NODE_STORAGE and n.status == types_pb2.HEARTBEAT_CONNECTED]
        assert sorted(connected) == [1, 2]
        assert (tmp_path / "small" / "storage-2").is_dir()

        stopped = again.down()
        assert sorted(stopped) == ["meta", "storage-1", "storage-2"]
        assert not any(_alive(pid) for pid in now.values())
        assert not list((tmp_path / "small" / "run").glob("*.pid"))
        # The other cluster did not notice.
        assert [r["state"] for r in cluster.cluster.status()] == ["running"] * 4
    finally:
        local.down()
