"""Every service's Prometheus /metrics, scraped over HTTP: counters move by what a known workload
did (common/metrics.py, ``ffs admin metrics``)."""

from __future__ import annotations

import json
import os

from fireflyfs.cli.admin import metrics_endpoints, scrape
from fireflyfs.client.client import FfsClient
from tests.cli.test_cli import run

MiB = 1 << 20


def _total(samples_by_endpoint: dict[str, dict[str, float]], name: str, having: str = "") -> float:
    return sum(value for samples in samples_by_endpoint.values() for key, value in samples.items()
               if key.startswith(name) and having in key)


def _scrape_all(endpoints) -> dict[str, dict[str, float]]:
    return {e["address"]: scrape(e["address"]) for e in endpoints}


def test_counters_move_by_what_a_known_workload_did(make_cluster):
    local = make_cluster(storage_nodes=2, replicas=2, targets_per_node=1, heartbeat_timeout_ms=None)
    endpoints = metrics_endpoints(local.url)
    assert sorted(e["service"] for e in endpoints) == ["meta", "storage", "storage"]
    client = FfsClient(local.meta_address)
    client.mkdir("/m")
    sizes = [MiB + 1, 2 * MiB, 3 * MiB - 7]
    payloads = [os.urandom(size) for size in sizes]
    before = _scrape_all(endpoints)

    for n, data in enumerate(payloads):
        client.write_file(f"/m/{n}", data)
    for n, data in enumerate(payloads):
        assert client.read_file(f"/m/{n}") == data
    for _ in range(5):
        client.stat("/m/0")
    try:
        client.stat("/m/missing")
    except FileNotFoundError:
        pass

    after = _scrape_all(endpoints)

    def moved(name: str, having: str = "") -> float:
        return _total(after, name, having) - _total(before, name, having)

    written = sum(sizes)
    assert moved("ffs_bulk_bytes_total", "op=write") == written, "each byte reached its chain's head once"
    assert moved("ffs_bulk_bytes_total", "op=update") == written, "and its one successor once (2 replicas)"
    assert moved("ffs_bulk_bytes_total", "op=read") == written, "each byte read from one replica"
    stat_ok = "method=Stat,outcome=ok,service=fireflyfs.Meta"
    assert moved("ffs_rpc_requests_total", stat_ok) == 5
    assert moved("ffs_rpc_requests_total", "method=Stat,outcome=error") == 1
    assert moved("ffs_rpc_seconds_count", "method=Stat,service=fireflyfs.Meta") == 6
    assert moved("ffs_target_chunks") == 2 * len(sizes), "one chunk per file on each of 2 replicas"
    assert moved("ffs_meta_inodes") == len(sizes)
    assert _total(after, "ffs_resyncs_running") == 0, "a healthy chain resyncs nothing"
    assert sum(1 for samples in after.values() if "ffs_resyncs_running" in samples) == 2

    summary = json.loads(run("admin", "metrics", local.url, "--json").stdout)["endpoints"]
    assert all(row["error"] is None for row in summary)
    assert sum(row["bulk_write_bytes"] for row in summary) == _total(after, "ffs_bulk_bytes_total", "op=write")
    assert [row["inodes"] for row in summary if row["service"] == "meta"][0] >= len(sizes) + 1
    table = run("admin", "metrics", local.url)
    assert table.exit_code == 0 and "storage" in table.stdout
