"""The ffs command line against a real cluster.

Method: click's CliRunner drives file and admin commands against the session
cluster (stdout and stderr apart, exit codes checked); a subprocess runs the
installed ``ffs`` for ``cluster up/status/down`` in a tmp dir, as a user would.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.conftest import unique_dir
from fireflyfs.cli.main import cli


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def base(cluster) -> str:
    """ffs:// URL of a fresh directory on the session cluster."""
    return f"{cluster.url}{unique_dir('cli')}"


def test_file_round_trip(base, tmp_path):
    assert run("mkdir", "-p", f"{base}/a/b").exit_code == 0
    local = tmp_path / "data.bin"
    payload = os.urandom(5 * 1024 * 1024 + 123)      # crosses a chunk boundary
    local.write_bytes(payload)

    result = run("put", str(local), f"{base}/a/b/data.bin")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""

    result = run("cat", f"{base}/a/b/data.bin")
    assert result.exit_code == 0 and result.stdout_bytes == payload

    result = run("ls", f"{base}/a")
    assert result.exit_code == 0 and result.stdout.split() == ["b/"]
    result = run("ls", "--json", f"{base}/a/b")
    entries = json.loads(result.stdout)
    assert [(e["name"].rsplit("/", 1)[-1], e["size"], e["type"]) for e in entries] == [
        ("data.bin", len(payload), "file")]

    result = run("--json", "stat", f"{base}/a/b/data.bin")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["size"] == len(payload)
    assert "size" in run("stat", f"{base}/a/b/data.bin").stdout

    result = run("mv", f"{base}/a/b/data.bin", f"{base}/a/moved.bin")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out.bin"
    assert run("get", f"{base}/a/moved.bin", str(out)).exit_code == 0
    assert out.read_bytes() == payload

    result = run("rm", f"{base}/a")
    assert result.exit_code == 1 and "use -r" in result.stderr
    assert run("--json", "rm", "-r", f"{base}/a").exit_code == 0
    result = run("ls", base)
    assert result.exit_code == 0 and result.stdout == ""


def test_put_and_get_recursive(base, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.txt").write_text("one")
    (tree / "sub" / "two.txt").write_text("two")
    assert run("mkdir", base).exit_code == 0
    result = run("put", "-r", str(tree), f"{base}/tree")
    assert result.exit_code == 0, result.stderr
    assert run("cat", f"{base}/tree/sub/two.txt").stdout == "two"
    back = tmp_path / "back"
    result = run("get", "-r", f"{base}/tree", str(back))
    assert result.exit_code == 0, result.stderr
    assert (back / "one.txt").read_text() == "one"
    assert (back / "sub" / "two.txt").read_text() == "two"
    assert run("put", str(tree), f"{base}/x").exit_code == 1   # a directory needs -r


def test_failures_exit_1_with_a_message(base):
    result = run("cat", f"{base}/missing")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "NotFound" in result.stderr or "FileNotFound" in result.stderr

    result = run("--json", "stat", f"{base}/missing")
    assert result.exit_code == 1 and result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] in ("NotFound", "FileNotFoundError") and error["message"]

    assert run("mkdir", f"{base}/no/parents").exit_code == 1
    assert run("mkdir", base).exit_code == 0
    assert run("mkdir", base).exit_code == 1             # exists
    assert run("mkdir", "-p", base).exit_code == 0       # -p: fine


def test_usage_errors_exit_2():
    assert run("ls").exit_code == 2
    assert run("ls", "/not/a/url").exit_code == 2
    assert run("ls", "ffs://127.0.0.1/no-port").exit_code == 2
    assert run("rm", "--bogus", "ffs://127.0.0.1:1/x").exit_code == 2
    assert run("cluster", "up").exit_code == 2                # --dir is required
    assert run("nosuchcommand").exit_code == 2


def test_unreachable_cluster_is_an_operation_failure():
    result = run("--json", "admin", "nodes", "ffs://127.0.0.1:1")
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"] == "Unavailable"


def test_an_unreachable_cluster_fails_within_the_timeout_and_says_where():
    import time

    from fireflyfs.client.config import ClientConfig

    started = time.monotonic()
    result = run("cat", "ffs://127.0.0.1:1/x", "--json", "--timeout", "0.5")   # options after it too
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["error"] == "Unavailable" and error["errno"] == errno.EAGAIN
    assert "127.0.0.1:1" in error["message"] and "gave up after 0.5s" in error["message"]
    assert time.monotonic() - started < 30          # a bound on hanging, not a speed check
    plain = run("ls", "ffs://127.0.0.1:1/", "--timeout", "0.2")
    assert plain.exit_code == 1 and "hint" in plain.stderr and "127.0.0.1:1" in plain.stderr
    # The command's timeout ended with it: clients made afterwards in this process keep theirs.
    assert ClientConfig.from_env().meta_retry_time_s == ClientConfig().meta_retry_time_s


def test_version_and_json_errors_carry_errno_and_one_naming_scheme(base):
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("ffs ")
    result = run("get", f"{base}/missing", "/tmp/ffs-test-nowhere", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert (error["error"], error["errno"]) == ("NotFound", errno.ENOENT)
    run("mkdir", "-p", f"{base}/adir")
    result = run("rm", f"{base}/adir", "--json")
    assert json.loads(result.stderr)["error"] == "IsADirectory"      # not Python's IsADirectoryError


def test_admin_views(cluster):
    result = run("admin", "nodes", "--json", cluster.url)
    assert result.exit_code == 0, result.stderr
    nodes = json.loads(result.stdout)["nodes"]
    storage = [n for n in nodes if n["type"] == "STORAGE"]
    assert [n["id"] for n in storage] == [1, 2, 3]
    assert all(n["status"] == "HEARTBEAT_CONNECTED" for n in storage)

    targets = json.loads(run("--json", "admin", "targets", cluster.url).stdout)["targets"]
    assert sorted(t["id"] for t in targets) == [101, 102, 201, 202, 301, 302]
    assert all(t["chain_id"] for t in targets)

    assert all(t["public_state"] == "SERVING" and not t["admin_offline"] for t in targets)

    chains = json.loads(run("--json", "admin", "chains", cluster.url).stdout)
    replicas = cluster.cluster.replicas
    assert len(chains["chains"]) == 6 // replicas
    assert chains["chain_tables"] and chains["chain_tables"][0]["replicas"] == replicas
    assert sorted(t for c in chains["chains"] for t in c["targets"]) == sorted(t["id"] for t in targets)
    assert all(c["version"] >= 1 and len(c["local_states"]) == replicas for c in chains["chains"])

    for view in ("nodes", "targets", "chains"):
        result = run("admin", view, cluster.url)
        assert result.exit_code == 0 and "routing version" in result.stdout
    assert "101" in run("admin", "targets", cluster.url).stdout


def test_admin_scrub_shows_every_target(cluster):
    """The session cluster scrubs at the default rate; its store is small, so its first pass is done."""
    from fireflyfs.storage_service.scrub import scrub_bytes_per_s_default

    result = run("admin", "scrub", cluster.url, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["targets"]
    assert sorted(r["target_id"] for r in rows) == [101, 102, 201, 202, 301, 302] and report["unreachable"] == []
    assert all(r["rate_bytes_per_s"] == scrub_bytes_per_s_default for r in rows)
    assert all(r["unrepairable"] == 0 and r["repairs_queued"] == 0 for r in rows)
    assert all(r["passes_completed"] >= 1 or r["pass_running"] for r in rows)
    table = run("admin", "scrub", cluster.url)
    assert table.exit_code == 0 and "scrub (routing version" in table.stdout and "302" in table.stdout


def test_admin_chain_table_create_and_target_offline_online(make_cluster):
    local = make_cluster(storage_nodes=3, targets_per_node=2, replicas=None, heartbeat_timeout_ms=None,
                         chain_table=False)
    url = local.url
    empty = json.loads(run("--json", "admin", "chains", url).stdout)
    assert empty["chains"] == [] and empty["chain_tables"] == []

    result = run("--json", "admin", "chain-table", "create", url, "--replicas", "2")
    assert result.exit_code == 0, result.stderr
    table = json.loads(result.stdout)
    assert (table["created"], table["id"], table["replicas"], len(table["chains"])) == (True, 1, 2, 3)
    result = run("admin", "chain-table", "create", url)                  # every target is in a chain
    assert result.exit_code == 1 and "InvalidArgument" in result.stderr
    result = run("admin", "chain-table", "create", url, "--if-missing")
    assert result.exit_code == 0 and "exists" in result.stdout
    chains = json.loads(run("--json", "admin", "chains", url).stdout)["chains"]
    assert all(len({t // 100 for t in c["targets"]}) == 2 for c in chains)   # distinct nodes
    assert all(c["version"] == 1 and c["target_states"] == ["SERVING"] * 2 for c in chains)

    head, tail = chains[0]["targets"]
    result = run("--json", "admin", "target", "offline", url, str(head))     # URL first, as everywhere
    assert result.exit_code == 0, result.stderr
    moved = json.loads(result.stdout)
    assert moved["public_state"] == "OFFLINE" and moved["admin_offline"]
    assert moved["chain"] == {"id": chains[0]["id"], "version": 2, "targets": [tail, head]}
    targets = {t["id"]: t for t in json.loads(run("--json", "admin", "targets", url).stdout)["targets"]}
    assert targets[head]["admin_offline"] and targets[head]["public_state"] == "OFFLINE"
    assert targets[head]["local_state"] != "LOCAL_OFFLINE"          # the node is fine; the operator holds it
    assert "offline" in run("admin", "targets", url).stdout
    shown = run("admin", "chains", url).stdout
    assert "local" in shown and f"{tail},{head}" in shown and "serving,offline" in shown

    result = run("admin", "target", "offline", str(tail), url)       # the old order works too; would stop the chain
    assert result.exit_code == 1 and "last SERVING" in result.stderr
    assert run("admin", "target", "offline", "999", url).exit_code == 1
    assert run("admin", "target", "offline", "0", url).exit_code == 2

    result = run("admin", "target", "online", str(head), url)
    assert result.exit_code == 0 and f"target {head} released" in result.stdout
    targets = {t["id"]: t for t in json.loads(run("--json", "admin", "targets", url).stdout)["targets"]}
    assert not targets[head]["admin_offline"]
    assert targets[head]["public_state"] in ("WAITING", "SYNCING", "SERVING")   # on its way back: resync
    chains = local.wait_all_serving(timeout_s=30)
    assert chains[moved["chain"]["id"]] == [(tail, "SERVING"), (head, "SERVING")]   # back, as the tail


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its reaper counts as gone)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _ffs(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fireflyfs.cli.main", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}: {result.stderr}")
    return result


def test_cluster_commands_in_a_subprocess(tmp_path):
    base_dir = tmp_path / "c"
    try:
        assert _ffs("cluster", "up", "--dir", str(base_dir), "--storage-nodes", "1", "--replicas", "3",
                    check=False).returncode == 2               # 3 replicas need 3 nodes
        up = _ffs("cluster", "up", "--dir", str(base_dir), "--storage-nodes", "1",
                  "--targets-per-node", "1", "--replicas", "1", "--heartbeat-timeout-ms", "5000")
        url = up.stdout.strip()
        assert url.startswith("ffs://127.0.0.1:")
        rows = json.loads(_ffs("cluster", "status", "--dir", str(base_dir), "--json").stdout)
        assert [(r["role"], r["name"], r["state"]) for r in rows] == [
            ("meta", "meta", "running"), ("storage", "storage-1", "running")]
        assert rows[1]["node_id"] == 1
        assert rows[0]["address"] == url.removeprefix("ffs://")
        state = json.loads((base_dir / "cluster.json").read_text())
        assert (state["replicas"], state["heartbeat_timeout_ms"], state["fsync"]) == (1, 5000, True)
        meta_cmdline = pathlib.Path(f"/proc/{rows[0]['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--heartbeat-timeout-ms" in meta_cmdline and b"5000" in meta_cmdline
        assert b"--no-fsync" not in meta_cmdline, "durable by default"
        pids = [r["pid"] for r in rows]
        table = _ffs("cluster", "status", "--dir", str(base_dir)).stdout
        assert "storage" in table and "running" in table
        assert table.splitlines()[0].startswith(f"cluster {url} "), "the URL to use comes first"
        # The cluster serves files through the CLI too.
        assert _ffs("mkdir", f"{url}/hello").returncode == 0
        assert _ffs("ls", url).stdout.split() == ["hello/"]
        down = _ffs("--json", "cluster", "down", "--dir", str(base_dir))
        assert sorted(json.loads(down.stdout)["stopped"]) == ["meta", "storage-1"]
        stopped = _ffs("cluster", "status", "--dir", str(base_dir), "--json", check=False)
        assert stopped.returncode == 1 and "2 of 2 process(es) not running" in stopped.stderr
        assert {r["state"] for r in json.loads(stopped.stdout)} == {"stopped"}
        assert all(pids) and not any(_alive(pid) for pid in pids)
    finally:
        _ffs("cluster", "down", "--dir", str(base_dir), check=False)
    fast_dir = tmp_path / "fast"
    try:
        _ffs("cluster", "up", "--dir", str(fast_dir), "--storage-nodes", "1", "--targets-per-node", "1",
             "--replicas", "1", "--no-fsync")
        assert json.loads((fast_dir / "cluster.json").read_text())["fsync"] is False
        rows = json.loads(_ffs("cluster", "status", "--dir", str(fast_dir), "--json").stdout)
        for row in rows:
            cmdline = pathlib.Path(f"/proc/{row['pid']}/cmdline").read_bytes().split(b"\0")
            assert b"--no-fsync" in cmdline, f"{row['role']} runs without fsync"
    finally:
        _ffs("cluster", "down", "--dir", str(fast_dir), check=False)
    missing = _ffs("cluster", "status", "--dir", str(tmp_path / "nothing"), check=False)
    assert missing.returncode == 2
