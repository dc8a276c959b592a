"""``ffs status``: the verdict and its exit code follow the cluster as nodes die (cli/status.py)."""

from __future__ import annotations

import json
import signal
import time

from tests.cli.test_cli import run


def _status_when(url: str, exit_code: int, timeout_s: float = 30.0) -> dict:
    """The JSON report of the first ``ffs status`` that exits with exit_code (mgmtd needs a
    heartbeat timeout to notice a dead node)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = run("status", url, "--json")
        if result.exit_code == exit_code or time.monotonic() > deadline:
            assert result.exit_code == exit_code, result.stdout + result.stderr
            report = json.loads(result.stdout)
            assert report["exit_code"] == exit_code
            return report
        time.sleep(0.5)


def test_status_is_healthy_then_degraded_then_unavailable_as_nodes_die(make_cluster):
    local = make_cluster(storage_nodes=2, replicas=2, targets_per_node=1, heartbeat_timeout_ms=2000)
    url = local.url
    healthy = _status_when(url, 0)
    assert healthy["health"] == "HEALTHY" and healthy["problems"] == []
    assert healthy["url"] == url
    assert healthy["meta_servers"] == [{"address": url.removeprefix("ffs://"), "answers": True, "error": None}]
    assert [n["id"] for n in healthy["nodes"] if n["type"] == "STORAGE"] == [1, 2]
    assert healthy["chains"] == {"total": 1, "healthy": 1, "degraded": 0, "unavailable": 0}
    assert healthy["targets"] == {"SERVING": 2}
    assert healthy["chain_tables"] == [{"id": 1, "replicas": 2, "chains": 1}]
    assert healthy["usage"]["capacity_bytes"] > 0 and healthy["usage"]["inodes"] >= 1
    text = run("status", url)
    assert text.exit_code == 0 and f"cluster {url}: HEALTHY" in text.stdout

    local.kill(2, signal.SIGKILL)
    degraded = _status_when(url, 1)
    assert degraded["health"] == "DEGRADED"
    assert degraded["chains"] == {"total": 1, "healthy": 0, "degraded": 1, "unavailable": 0}
    assert any(p.startswith("storage node 2 ") for p in degraded["problems"]), degraded["problems"]
    assert [c["id"] for c in degraded["unhealthy_chains"]] == [1]
    assert "DEGRADED" in run("status", url).stdout

    local.kill(1, signal.SIGKILL)
    unavailable = _status_when(url, 3)
    assert unavailable["health"] == "UNAVAILABLE"
    assert unavailable["chains"]["unavailable"] == 1
    assert unavailable["unhealthy_chains"][0]["health"] == "unavailable"


def test_status_of_an_unreachable_cluster_is_unavailable_within_the_timeout():
    started = time.monotonic()
    result = run("status", "ffs://127.0.0.1:1", "--json", "--timeout", "2")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["health"] == "UNAVAILABLE" and report["meta_servers"][0]["answers"] is False
    assert "127.0.0.1:1" in report["problems"][0]
    assert time.monotonic() - started < 30


def test_df_counts_a_shared_disk_once_and_du_sums_a_tree(cluster, tmp_path):
    import shutil

    from tests.conftest import unique_dir

    report = json.loads(run("df", cluster.url, "--json").stdout)
    targets = report["targets"]
    assert len(targets) == report["total"]["targets"] >= 6
    on_one_disk = {t["fs_id"] for t in targets}
    assert len(on_one_disk) == report["total"]["file_systems"] == 1, "every session target is on one disk"
    disk = shutil.disk_usage(tmp_path)
    used = report["total"]["used_bytes"]
    # Each target's whole-disk size summed once per target overstated it 6x; shares count it once.
    assert report["total"]["capacity_bytes"] <= used + disk.free + disk.total // 50
    assert report["total"]["capacity_bytes"] == sum(n["capacity_bytes"] for n in report["nodes"])
    table = run("df", cluster.url)
    assert table.exit_code == 0 and "total:" in table.stdout and "1 file system(s)" in table.stdout

    base = f"{cluster.url}{unique_dir('du')}"
    for name, size in (("a/one", 1000), ("a/b/two", 2345), ("three", 7)):
        local = tmp_path / "f"
        local.write_bytes(b"x" * size)
        assert run("put", str(local), f"{base}/{name}").exit_code == 0
    rows = json.loads(run("du", f"{base}", f"{base}/a/b/two", "--json").stdout)
    assert [(r["bytes"], r["files"], r["directories"]) for r in rows] == [(3352, 3, 2), (2345, 1, 0)]
    missing = run("du", f"{base}/nope")
    assert missing.exit_code == 1 and "NotFound" in missing.stderr


def test_stat_reads_as_a_person_reads_it(cluster, tmp_path):
    from tests.conftest import unique_dir

    url = f"{cluster.url}{unique_dir('stat')}/file"
    local = tmp_path / "f"
    local.write_bytes(b"y" * 2048)
    assert run("put", str(local), url).exit_code == 0
    lines = dict(line.split(None, 1) for line in run("stat", url).stdout.splitlines())
    assert lines["mode"] == "-rw-r--r-- (0644)"
    assert lines["size"] == "2048 (2.0 KiB)"
    assert lines["mtime"].startswith("20") and "-" in lines["mtime"].split()[0]
    assert int(json.loads(run("stat", url, "--json").stdout)["mode"]) & 0o777 == 0o644
