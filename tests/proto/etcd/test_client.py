"""Every call of proto/etcd/client.py against a real etcd 3.4 (deploy/etcd_cluster.py).

Method: one shared member for the KV, txn and lease calls (each test under its own key
prefix), a fresh 3-member cluster for failover; limits are probed on both sides of
the values common/limits.py gives the members.
"""

from __future__ import annotations

import threading
import time

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.deploy.etcd_cluster import EtcdCluster, etcd_binary
from fireflyfs.deploy.local_cluster import ClusterError, pick_free_port
from fireflyfs.proto.etcd import client as etcd
from fireflyfs.proto.etcd.client import EtcdClient


@pytest.fixture
def client(etcd_endpoints):
    with EtcdClient(etcd_endpoints) as c:
        yield c


@pytest.fixture
def prefix(request) -> bytes:
    return f"/t/{request.node.name}/".encode()


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_prefix_end_covers_exactly_the_prefix():
    assert etcd.prefix_end(b"/a/") == b"/a0"
    assert etcd.prefix_end(b"a\xff") == b"b"
    assert etcd.prefix_end(b"\xff\xff") == b"\0"       # every key
    assert etcd.prefix_end(b"") == b"\0"


def test_put_get_and_range_at_an_old_revision(client, prefix):
    key = prefix + b"k"
    first = client.put(key, b"one")
    second = client.put(key, b"two")
    assert second > first
    now = client.get(key)
    assert (now.value, now.create_revision, now.mod_revision, now.version) == (b"two", first, second, 2)
    assert client.get(key, revision=first).value == b"one"
    assert client.get(prefix + b"missing") is None
    assert client.range(key).revision >= second


def test_prefix_range_pages_with_continuation_at_one_revision(client, prefix):
    keys = [prefix + b"%02d" % i for i in range(7)]
    for key in keys:
        client.put(key, b"v")
    client.put(prefix[:-1] + b"0", b"outside")            # sorts right after the prefix range
    page = client.range(prefix, prefix=True, limit=3)
    assert [kv.key for kv in page.kvs] == keys[:3] and page.count == 7
    seen = list(page.kvs)
    client.put(prefix + b"99", b"written after the first page")
    while page.continue_from is not None:
        page = client.range(prefix, prefix=True, limit=3, revision=page.revision,
                            continue_from=page.continue_from)
        seen += page.kvs
    assert [kv.key for kv in seen] == keys                  # the snapshot, without the later write
    assert [kv.key for kv in client.scan_prefix(prefix, page_limit=2)] == keys + [prefix + b"99"]


def test_delete_a_key_and_a_prefix(client, prefix):
    for name in (b"a", b"b", b"c/1", b"c/2"):
        client.put(prefix + name, b"v")
    assert client.delete(prefix + b"a") == 1
    assert client.delete(prefix + b"a") == 0
    assert client.delete(prefix + b"c/", prefix=True) == 2
    assert [kv.key for kv in client.range(prefix, prefix=True).kvs] == [prefix + b"b"]


def test_txn_compare_on_mod_revision_fails_after_a_concurrent_write(etcd_endpoints, client, prefix):
    key, other = prefix + b"counter", prefix + b"log"
    client.put(key, b"1")
    read = client.get(key)
    with EtcdClient(etcd_endpoints) as concurrent:
        concurrent.put(key, b"2")                            # lands between our read and our commit
    result = client.txn([etcd.compare_mod_revision(key, "=", read.mod_revision)],
                        success=[etcd.op_put(key, b"from stale read"), etcd.op_put(other, b"x")],
                        failure=[etcd.op_get(key)])
    assert not result.succeeded
    assert result.responses[0].kvs[0].value == b"2"         # the failure branch ran
    assert client.get(other) is None and client.get(key).value == b"2"

    fresh = client.get(key)
    result = client.txn([etcd.compare_mod_revision(key, "=", fresh.mod_revision),
                         etcd.compare_create_revision(other, "=", 0)],
                        success=[etcd.op_put(key, b"3"), etcd.op_put(other, b"x"), etcd.op_delete(prefix + b"none"),
                                 etcd.op_get(prefix, prefix=True)])
    assert result.succeeded
    assert result.responses[:3] == [result.revision, result.revision, 0]
    assert [kv.value for kv in result.responses[3].kvs] == [b"3", b"x"]
    assert client.get(key).mod_revision == result.revision


def test_txn_limits_are_the_members_flags(client, prefix, monkeypatch):
    ops = [etcd.op_put(prefix + b"%05d" % i, b"") for i in range(limits.etcd_txn_ops_max)]
    assert client.txn([], ops).succeeded                     # the member accepts the full size
    too_many = ops + [etcd.op_put(prefix + b"one more", b"")]
    with pytest.raises(errors.TooLarge, match="etcd_txn_ops_max"):
        client.txn([], too_many)                             # refused before sending
    monkeypatch.setattr(limits, "etcd_txn_ops_max", 10 * limits.etcd_txn_ops_max)
    with pytest.raises(errors.TooLarge, match="too many operations"):
        client.txn([], too_many)                             # and by etcd: --max-txn-ops is set
    with pytest.raises(errors.TooLarge, match="etcd_request_bytes_max"):
        client.put(prefix + b"big", bytes(limits.etcd_request_bytes_max))
    monkeypatch.setattr(limits, "etcd_request_bytes_max", 2 * limits.etcd_request_bytes_max)
    with pytest.raises(errors.TooLarge, match="request is too large"):
        client.put(prefix + b"big", bytes(limits.etcd_request_bytes_max // 2 + 1))
    assert client.get(prefix + b"big") is None


def test_a_lease_that_expires_removes_its_key(client, prefix):
    lease_id = client.lease_grant(ttl_s=2)
    client.put(prefix + b"ephemeral", b"v", lease_id=lease_id)
    assert client.get(prefix + b"ephemeral").lease_id == lease_id
    wait_until(lambda: client.get(prefix + b"ephemeral") is None, 15, "the lease to expire")
    assert client.lease_ttl_s(lease_id) == -1
    with pytest.raises(errors.NotFound):
        client.lease_keepalive_once(lease_id)


def test_keepalive_thread_holds_a_lease_until_revoked(etcd_endpoints, client, prefix):
    lease_id = client.lease_grant(ttl_s=2)
    client.put(prefix + b"held", b"v", lease_id=lease_id)
    client.lease_keepalive(lease_id, interval_s=0.3)
    deadline = time.monotonic() + 5                          # well past the 2 s TTL
    while time.monotonic() < deadline:
        assert client.get(prefix + b"held") is not None, "the kept-alive lease expired"
        time.sleep(0.2)
    client.lease_revoke(lease_id)
    assert client.get(prefix + b"held") is None
    client.lease_revoke(lease_id)                            # already gone: fine


def test_keepalive_reports_a_lease_revoked_elsewhere(etcd_endpoints, client):
    lost = threading.Event()
    reasons = []
    lease_id = client.lease_grant(ttl_s=5)
    client.lease_keepalive(lease_id, interval_s=0.1, on_lost=lambda why: (reasons.append(why), lost.set()))
    with EtcdClient(etcd_endpoints) as other:
        other.lease_revoke(lease_id)
    assert lost.wait(10), "the keepalive thread did not notice the revoked lease"
    assert isinstance(reasons[0], errors.NotFound)


def test_unreachable_endpoints_raise_unavailable():
    with EtcdClient([f"127.0.0.1:{pick_free_port()}", f"127.0.0.1:{pick_free_port()}"], timeout_s=2) as c:
        with pytest.raises(errors.Unavailable):
            c.range(b"k")
        with pytest.raises(errors.Unavailable):
            c.put(b"k", b"v")
    with pytest.raises(errors.InvalidArgument):
        EtcdClient([])


def test_missing_binary_names_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ClusterError, match="etcd-server"):
        etcd_binary()


def test_failover_to_another_member_when_the_first_is_killed(etcd_three: EtcdCluster):
    """Goal: a member's death costs a client at most one write it must retry, never data.

    Method: write through member 0, SIGKILL it, then read and write through the same
    client: reads move on by themselves; a write may fail once with Unavailable.
    Restart the member and check it caught up.
    """
    with EtcdClient(etcd_three.endpoints, timeout_s=3) as c:
        assert c.endpoint == etcd_three.endpoints[0]
        written = c.put(b"/f/before", b"1")
        etcd_three.kill("etcd-0")
        assert c.get(b"/f/before").mod_revision == written        # a read fails over
        assert c.endpoint != etcd_three.endpoints[0]
        for attempt in range(3):
            try:
                c.put(b"/f/after", b"2")
                break
            except errors.Unavailable:
                assert attempt < 2, "writes did not resume on the surviving members"
        assert c.get(b"/f/after").value == b"2"
    etcd_three.start()                                              # member 0 rejoins on its data
    with EtcdClient([etcd_three.endpoints[0]]) as rejoined:
        wait_until(lambda: rejoined.get(b"/f/after") is not None, 15, "member 0 to catch up")
