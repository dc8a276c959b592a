"""The local cluster on the etcd engine: etcd members, meta servers over them, one command.

Goal: ``ffs cluster up --meta-engine etcd`` starts etcd members on loopback ports with their
data under DIR, meta servers started with the etcd flags, and the storage nodes as today;
``status`` shows each member's health and exits 1 when anything is down; ``down`` stops
etcd last; the cluster keeps every file across a member kill and a whole-cluster restart.
Method: the first tests check arguments and command lines without services (the etcd ones
need the binary to build a member's command line); the rest run ``ffs`` in a subprocess,
as a user would, against real etcd members, and look at the processes through /proc.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import fsspec
import pytest

from fireflyfs.common import limits
from fireflyfs.deploy.local_cluster import ClusterError, LocalCluster
from tests.conftest import require_etcd


def _ffs(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fireflyfs.cli.main", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}: {result.stderr}")
    return result


def _cmdline(pid: int) -> list[str]:
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _flag(cmdline: list[str], flag: str) -> str:
    return cmdline[cmdline.index(flag) + 1]


def test_lmdb_stays_the_default_with_one_meta_server(tmp_path):
    local = LocalCluster(tmp_path, storage_nodes=1, port=4321, python="py")
    assert (local.meta_engine, local.meta_servers, local.etcd_members) == ("lmdb", 1, 0)
    assert local.roles() == ["meta", "storage-1"] and local.etcd_endpoints == []
    assert local.meta_addresses == ["127.0.0.1:4321"] == [local.meta_address]
    assert "--meta-engine" not in local.command("meta")
    with pytest.raises(ValueError, match="only on the etcd engine"):
        LocalCluster(tmp_path / "a", meta_servers=2)
    with pytest.raises(ValueError, match="etcd members serve only the etcd engine"):
        LocalCluster(tmp_path / "b", etcd_members=3)
    with pytest.raises(ValueError, match="unknown metadata engine"):
        LocalCluster(tmp_path / "c", meta_engine="rocksdb")


def test_a_cluster_keeps_its_engine_and_its_etcd_membership(tmp_path):
    (tmp_path / "lmdb").mkdir()
    (tmp_path / "lmdb" / "cluster.json").write_text(json.dumps({"port": 1234, "meta_engine": "lmdb"}))
    with pytest.raises(ValueError, match="keeps its engine"):
        LocalCluster(tmp_path / "lmdb", meta_engine="etcd")
    (tmp_path / "older").mkdir()                                   # written before engines had a name
    (tmp_path / "older" / "cluster.json").write_text(json.dumps({"port": 1234, "storage_nodes": 3}))
    with pytest.raises(ValueError, match="on the lmdb engine"):
        LocalCluster(tmp_path / "older", meta_engine="etcd")
    (tmp_path / "etcd").mkdir()
    (tmp_path / "etcd" / "cluster.json").write_text(json.dumps(
        {"port": 1234, "meta_engine": "etcd", "etcd_members": 3, "meta_servers": 2,
         "meta_ports": [1234, 1235], "etcd_ports": {"etcd-0": [2001, 3001]}}))
    kept = LocalCluster(tmp_path / "etcd")
    assert (kept.meta_engine, kept.etcd_members, kept.meta_servers) == ("etcd", 3, 2)
    assert kept.meta_addresses == ["127.0.0.1:1234", "127.0.0.1:1235"]
    assert kept.url == "ffs://127.0.0.1:1234,127.0.0.1:1235"
    assert kept.etcd.ports["etcd-0"] == (2001, 3001)               # a kept member comes back at its URLs
    assert LocalCluster(tmp_path / "etcd", meta_servers=3).meta_addresses[:2] == kept.meta_addresses
    with pytest.raises(ValueError, match="membership is fixed"):
        LocalCluster(tmp_path / "etcd", etcd_members=5)


def test_etcd_command_lines(tmp_path):
    require_etcd()
    local = LocalCluster(tmp_path, meta_engine="etcd", storage_nodes=2, port=4321, python="py",
                         heartbeat_timeout_ms=2000)
    assert local.roles() == ["etcd-0", "etcd-1", "etcd-2", "meta", "meta-2", "storage-1", "storage-2"]
    endpoints = local.etcd_endpoints
    assert len(endpoints) == 3 and len(set(endpoints)) == 3
    meta = local.command("meta")
    assert meta[:7] == ["py", "-m", "fireflyfs.meta_service", "--data-dir", str(tmp_path / "meta"),
                        "--listen", "127.0.0.1:4321"]
    assert _flag(meta, "--meta-engine") == "etcd" and _flag(meta, "--etcd-endpoints") == ",".join(endpoints)
    assert _flag(meta, "--heartbeat-timeout-ms") == "2000"
    second = local.command("meta-2")
    assert _flag(second, "--data-dir") == str(tmp_path / "meta-2")
    assert _flag(second, "--listen") == local.meta_addresses[1] != local.meta_addresses[0]
    assert _flag(local.command("storage-2"), "--mgmtd") == ",".join(local.meta_addresses)
    member = local.command("etcd-1")
    assert _flag(member, "--data-dir") == str(tmp_path / "etcd-1")
    assert _flag(member, "--listen-client-urls") == f"http://{endpoints[1]}"
    assert _flag(member, "--max-txn-ops") == str(limits.etcd_txn_ops_max)
    assert _flag(member, "--max-request-bytes") == str(limits.etcd_request_bytes_max)
    assert _flag(member, "--auto-compaction-mode") == "periodic"
    with pytest.raises(ValueError):
        local.command("meta-3")


def test_a_missing_etcd_binary_names_the_package(tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    env = {**os.environ, "PATH": str(empty_path)}
    result = _ffs("cluster", "up", "--dir", str(tmp_path / "c"), "--meta-engine", "etcd", check=False, env=env)
    assert result.returncode == 1
    assert "etcd-server" in result.stderr and "apt-get install" in result.stderr
    assert not (tmp_path / "c" / "run").exists(), "nothing started"


def test_etcd_cluster_up_write_read_kill_a_member_status_restart_down(tmp_path):
    """One meta server over three etcd members: files survive a member kill and a full restart."""
    require_etcd()
    base_dir = tmp_path / "c"
    try:
        url = _ffs("cluster", "up", "--dir", str(base_dir), "--meta-engine", "etcd", "--etcd-members", "3",
                   "--meta-servers", "1", "--storage-nodes", "1", "--targets-per-node", "1",
                   "--replicas", "1").stdout.strip()
        local = LocalCluster(base_dir)
        assert url == local.url and (local.meta_engine, local.etcd_members) == ("etcd", 3)
        status = _ffs("cluster", "status", "--dir", str(base_dir), "--json")
        rows = json.loads(status.stdout)
        assert [(r["role"], r["name"], r["state"]) for r in rows] == [
            ("etcd", "etcd-0", "running"), ("etcd", "etcd-1", "running"), ("etcd", "etcd-2", "running"),
            ("meta", "meta", "running"), ("storage", "storage-1", "running")]
        endpoints = [r["address"] for r in rows[:3]]
        assert endpoints == local.etcd_endpoints
        meta = _cmdline(rows[3]["pid"])
        assert _flag(meta, "--meta-engine") == "etcd" and _flag(meta, "--etcd-endpoints") == ",".join(endpoints)
        for row in rows[:3]:
            assert _flag(_cmdline(row["pid"]), "--data-dir") == str(base_dir / row["name"])
            assert (base_dir / row["name"] / "member").is_dir()          # etcd's data under DIR

        payload = os.urandom(5 * 1024 * 1024 + 17)                        # chunks on storage, too
        fs = fsspec.filesystem("ffs", host="127.0.0.1", port=local.port, skip_instance_cache=True)
        fs.pipe_file("/d/big.bin", payload)
        fs.pipe_file("/d/small.txt", b"inline")
        assert fs.cat_file("/d/big.bin") == payload

        local.kill("etcd-1")                                              # a quorum of 2 remains
        down = _ffs("cluster", "status", "--dir", str(base_dir), "--json", check=False)
        assert down.returncode == 1 and "etcd-1" in down.stderr
        assert {r["name"]: r["state"] for r in json.loads(down.stdout)}["etcd-1"] == "stopped"
        fs.pipe_file("/d/while-a-member-is-down.txt", b"written on two members")
        assert fs.cat_file("/d/big.bin") == payload

        _ffs("cluster", "up", "--dir", str(base_dir))                     # restarts etcd-1 on its data
        assert {r["state"] for r in json.loads(_ffs("cluster", "status", "--dir", str(base_dir),
                                                    "--json").stdout)} == {"running"}

        stopped = json.loads(_ffs("--json", "cluster", "down", "--dir", str(base_dir)).stdout)["stopped"]
        assert stopped == ["storage-1", "meta", "etcd-0", "etcd-1", "etcd-2"]   # etcd last
        assert not any(p for p in LocalCluster(base_dir).status() if p["pid"] is not None)

        _ffs("cluster", "up", "--dir", str(base_dir))                     # the whole cluster again
        fs = fsspec.filesystem("ffs", host="127.0.0.1", port=local.port, skip_instance_cache=True)
        assert sorted(fs.ls("/d", detail=False)) == ["/d/big.bin", "/d/small.txt",
                                                     "/d/while-a-member-is-down.txt"]
        assert fs.cat_file("/d/big.bin") == payload and fs.cat_file("/d/small.txt") == b"inline"
    finally:
        _ffs("cluster", "down", "--dir", str(base_dir), check=False)


def test_etcd_cluster_with_two_meta_servers(tmp_path):
    """The issue's command: 3 etcd members, 2 meta servers; a write and read through fsspec, status, down."""
    require_etcd()
    base_dir = tmp_path / "c"
    try:
        url = _ffs("cluster", "up", "--dir", str(base_dir), "--meta-engine", "etcd", "--etcd-members", "3",
                   "--meta-servers", "2", "--storage-nodes", "1", "--targets-per-node", "1",
                   "--replicas", "1", "--timeout", "20").stdout.strip()
        local = LocalCluster(base_dir)
        assert url == f"ffs://{','.join(local.meta_addresses)}" and len(local.meta_addresses) == 2
        with fsspec.open(f"{url}/two/hello.txt", "wb") as handle:
            handle.write(b"hello from two meta servers")
        with fsspec.open(f"{url}/two/hello.txt", "rb") as handle:
            assert handle.read() == b"hello from two meta servers"
        rows = json.loads(_ffs("cluster", "status", "--dir", str(base_dir), "--json").stdout)
        metas = [r for r in rows if r["role"] == "meta"]
        assert [r["name"] for r in metas] == ["meta", "meta-2"]
        assert sorted(r["mgmtd"] for r in metas) == ["primary", "standby"]
        assert {r["state"] for r in rows} == {"running"}
        stopped = json.loads(_ffs("--json", "cluster", "down", "--dir", str(base_dir)).stdout)["stopped"]
        assert stopped[-3:] == ["etcd-0", "etcd-1", "etcd-2"]
    finally:
        _ffs("cluster", "down", "--dir", str(base_dir), check=False)
