"""The namespace testbed: routing through the router, the shaped bottleneck, DSCP -> HTB class,
FireflyFS services and HFReduce ranks on its hosts, and complete teardown.

Method: one testbed (2 storage hosts, 1 peer) is built for the module with
services running; probes (deploy/testbed_probe.py) push marked bulk TCP
toward the client host and the tests read the router's tc counters. Teardown
tests build their own small testbeds, including one whose build fails half
way and one whose journal is lost. Root and ip/tc are needed; elsewhere the
module skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fireflyfs.deploy import netns
from fireflyfs.deploy.testbed import Testbed, TestbedSpec
from fireflyfs.deploy.testbed_shaping import ShapingSpec
from fireflyfs.fabric.hfreduce.worker import make_input

pytestmark = pytest.mark.skipif(netns.available() is not None,
                                reason=f"testbed needs root and ip/tc: {netns.available()}")

PROBE = [sys.executable, "-m", "fireflyfs.deploy.testbed_probe"]


def _name(tag: str) -> str:
    return f"{tag}{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    bed = Testbed(TestbedSpec(name=_name("t"), storage_hosts=2, peer_hosts=1),
                  tmp_path_factory.mktemp("testbed"))
    try:
        bed.up(services=True)
        yield bed
    finally:
        bed.down()


def _transfer(bed: Testbed, senders: dict[str, str], seconds: float, port: int) -> dict:
    """Each sender host pushes bulk TCP of its traffic class to the client host; the sink's report."""
    sink = bed.spawn("c", [*PROBE, "sink", "--listen", f"{bed.address('c')}:{port}",
                           "--sources", str(len(senders)), "--seconds", str(seconds)],
                     label=f"sink-{port}", stdout=subprocess.PIPE, text=True)
    assert "listening" in sink.stdout.readline()
    sources = [bed.spawn(host, [*PROBE, "source", "--to", f"{bed.address('c')}:{port}",
                                "--traffic-class", cls, "--seconds", str(seconds), "--congestion", "cubic"],
                         label=f"source-{host}-{port}")
               for host, cls in senders.items()]
    for source in sources:
        assert source.wait(timeout=seconds + 30) == 0
    report = json.loads(sink.stdout.readline())
    sink.wait(timeout=10)
    return report


def test_hosts_reach_each_other_only_through_the_router(testbed):
    report = _transfer(testbed, {"s1": "storage"}, 0.3, 7101)
    assert report["storage"]["bytes"] > 0
    route = testbed.run("c", ["ip", "route", "show", "default"]).stdout
    assert "via 10.77.1.1" in route
    # Nothing of the testbed is reachable from (or configured in) the machine's own namespace.
    assert "10.77." not in netns.run(["ip", "-4", "addr", "show"]).stdout
    assert "10.77." not in netns.run(["ip", "route", "show"]).stdout


def test_bottleneck_limits_a_bulk_transfer_near_its_rate(testbed):
    testbed.apply_shaping(ShapingSpec(rate_mbit=40, mode="shared"))
    try:
        report = _transfer(testbed, {"s1": "storage"}, 2.0, 7102)
    finally:
        testbed.remove_shaping()
    mbit = report["storage"]["mbit"]
    # The kernel enforces the ceiling whatever the CPU load; the floor only says data flowed.
    assert 8 < mbit <= 40 * 1.1, report
    unshaped = _transfer(testbed, {"s1": "storage"}, 0.5, 7103)
    assert unshaped["storage"]["mbit"] > 40 * 1.5, unshaped   # without the HTB it is much faster


def test_each_dscp_lands_in_its_htb_class(testbed):
    testbed.apply_shaping(ShapingSpec(rate_mbit=200))
    try:
        report = _transfer(testbed, {"s1": "storage", "s2": "collective", "p1": "hfreduce"}, 1.0, 7104)
        counters = testbed.class_counters()
    finally:
        testbed.remove_shaping()
    for cls in ("storage", "collective", "hfreduce"):
        payload = report[cls]["bytes"]
        # every payload byte passed its class (plus TCP/IP headers, under 10%), none went elsewhere
        assert payload <= counters[cls]["bytes"] <= payload * 1.1 + 100_000, (cls, report, counters)
    assert counters["control"]["bytes"] < 100_000       # only the unmarked handshakes


def test_shared_mode_puts_every_class_in_one_queue(testbed):
    testbed.apply_shaping(ShapingSpec(rate_mbit=200, mode="shared"))
    try:
        report = _transfer(testbed, {"s1": "storage", "p1": "hfreduce"}, 0.5, 7105)
        counters = testbed.class_counters()
    finally:
        testbed.remove_shaping()
    assert set(counters) == {"total", "shared"}
    assert counters["shared"]["bytes"] >= report["storage"]["bytes"] + report["hfreduce"]["bytes"]


def test_firefly_services_run_on_namespace_addresses(testbed, tmp_path):
    status = json.loads(testbed.run("c", [sys.executable, "-m", "fireflyfs.deploy.testbed",
                                          "--dir", str(testbed.base_dir), "cluster-status"]).stdout)
    addresses = {row["name"]: row["address"] for row in status}
    assert addresses["meta"] == "10.77.2.2:9000"
    assert addresses["storage-1"].startswith(testbed.address("s1") + ":")
    assert addresses["storage-2"].startswith(testbed.address("s2") + ":")
    code = (f"import fsspec\nfs = fsspec.filesystem('ffs', host='{testbed.address('m')}', port=9000)\n"
            "fs.pipe('/tb-file', bytes(range(256)) * 40000)\n"
            "assert fs.cat('/tb-file') == bytes(range(256)) * 40000\nprint('ok')\n")
    assert testbed.run("c", [sys.executable, "-c", code]).stdout.strip() == "ok"


def test_a_client_on_a_host_finds_the_clusters_ca_and_token_without_help(testbed, monkeypatch):
    """From a plain shell (no FFS_TLS_CA, no token): processes the testbed runs get its cluster's
    CA and admin token (ffs bench fabric failed there before)."""
    for name in ("FFS_TLS_CA", "FFS_TOKEN", "FFS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = testbed.client_env()
    assert env["FFS_TLS_CA"] == str(testbed.cluster().ca_file)
    assert env["FFS_TOKEN_FILE"] == str(testbed.cluster().admin_token_file)
    code = (f"import fsspec\nfs = fsspec.filesystem('ffs', host='{testbed.address('m')}', port=9000)\n"
            "fs.pipe('/tb-env', b'x')\nprint(fs.cat('/tb-env').decode())\n")
    assert testbed.run("c", [sys.executable, "-c", code]).stdout.strip() == "x"


def test_hfreduce_ranks_on_three_hosts(testbed, tmp_path):
    ranks = testbed.start_hfreduce(["c", "p1", "s1"], "--count", "20000", "--op", "sum",
                                   "--out", str(tmp_path), stdout=subprocess.DEVNULL)
    for rank in ranks:
        assert rank.wait(timeout=60) == 0
    expected = sum(make_input(0, r, 20000).astype(np.float64) for r in range(3)).astype(np.float32)
    for rank in range(3):
        assert np.array_equal(np.load(tmp_path / f"rank-{rank}.npy"), expected)


def _links_in_root() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in netns.run(["ip", "-o", "link", "show"]).stdout.splitlines()}


def test_down_leaves_no_namespace_link_qdisc_or_state(tmp_path):
    links_before = _links_in_root()
    bed = Testbed(TestbedSpec(name=_name("d"), storage_hosts=1, peer_hosts=0), tmp_path)
    bed.up(services=False, shaping=ShapingSpec(rate_mbit=50))
    assert len(netns.list_namespaces(bed.prefix)) == 4
    assert "htb" in netns.run(["tc", "-n", bed.namespace("sw"), "qdisc", "show"]).stdout
    sleeper = bed.spawn("s1", ["sleep", "300"], label="sleeper")
    removed = bed.down()
    assert sleeper.wait(timeout=10) != 0                 # processes inside were stopped
    assert len(removed["namespaces"]) == 4
    assert netns.list_namespaces(bed.prefix) == []
    assert _links_in_root() == links_before
    assert not bed.state_file.exists()


def test_down_cleans_up_after_a_failed_up_and_a_lost_journal(tmp_path, monkeypatch):
    bed = Testbed(TestbedSpec(name=_name("f"), storage_hosts=2, peer_hosts=1), tmp_path / "a")
    made = []
    real_link = netns.Builder.link

    def failing_link(self, *args):
        made.append(args)
        if len(made) == 3:
            raise netns.NetnsError("injected failure while linking the third host")
        return real_link(self, *args)

    monkeypatch.setattr(netns.Builder, "link", failing_link)
    with pytest.raises(netns.NetnsError, match="injected"):
        bed.up(services=False)
    monkeypatch.undo()
    assert len(netns.list_namespaces(bed.prefix)) == 4   # router + two linked hosts + the third
    Testbed(base_dir=tmp_path / "a").down()             # a fresh object: only the journal guides it
    assert netns.list_namespaces(bed.prefix) == []

    # A journal that is gone: down() still sweeps namespaces by the testbed's prefix.
    netns.run(["ip", "netns", "add", f"{bed.prefix}s9"])
    lost = Testbed(TestbedSpec(name=bed.spec.name), tmp_path / "empty")
    assert f"{bed.prefix}s9" in lost.down()["namespaces"]
    assert netns.list_namespaces(bed.prefix) == []


def test_bad_names_and_hosts_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Testbed(TestbedSpec(name="much-too-long"), tmp_path)
    bed = Testbed(TestbedSpec(name="ok1"), tmp_path)
    with pytest.raises(ValueError, match="no host"):
        bed.namespace("x9")
    with pytest.raises(ValueError):
        ShapingSpec(rate_mbit=10, weights={"hfreduce": 0.9, "storage": 0.9, "collective": 0.1,
                                           "control": 0.1})
    with pytest.raises(ValueError, match="mode"):
        ShapingSpec(mode="prio")


def test_cli_up_status_shape_down(tmp_path):
    from click.testing import CliRunner

    from fireflyfs.cli.main import cli

    name, runner = _name("k"), CliRunner()
    common = ["--name", name, "--dir", str(tmp_path)]
    result = runner.invoke(cli, ["testbed", "up", *common, "--storage-hosts", "1", "--peer-hosts", "0",
                                 "--no-services", "--rate-mbit", "30"])
    try:
        assert result.exit_code == 0, result.output
        status = json.loads(runner.invoke(cli, ["--json", "testbed", "status", *common]).output)
        assert status["up"] and status["shaping"]["rate_mbit"] == 30 and "storage" in status["counters"]
        shaped = runner.invoke(cli, ["--json", "testbed", "shape", *common, "--mode", "shared"])
        assert json.loads(shaped.output)["shaping"]["mode"] == "shared"
        unshaped = runner.invoke(cli, ["--json", "testbed", "shape", *common, "--mode", "none"])
        assert json.loads(unshaped.output)["shaping"] is None
    finally:
        down = runner.invoke(cli, ["testbed", "down", *common])
    assert down.exit_code == 0 and "removed 4 namespaces" in down.output
    assert netns.list_namespaces(f"ffstb-{name}-") == []
