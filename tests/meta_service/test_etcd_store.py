"""The etcd engine against a real etcd member: snapshot reads, own writes, and the compare-all commit
that makes concurrent transactions serializable (lost updates, phantoms and deletes are all caught)."""

from __future__ import annotations

import threading
import uuid

import pytest

from fireflyfs.common import limits
from fireflyfs.common.errors import Conflict, NotPrimary, TooLarge
from fireflyfs.meta_service import etcd_store
from fireflyfs.meta_service.etcd_store import EtcdStore, Guard
from fireflyfs.proto.etcd.client import EtcdClient


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def make_store(etcd_endpoints, prefix):
    opened: list[EtcdStore] = []

    def make() -> EtcdStore:
        opened.append(EtcdStore(etcd_endpoints, prefix))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def put(store, table: str, key: bytes, value: bytes) -> None:
    store.transact(lambda txn: txn.kv.put(table, key, value))


def test_reads_see_own_writes_and_scans_merge_them_in_key_order(make_store):
    store = make_store()
    for key in (b"a1", b"a3", b"a5", b"b1"):
        put(store, "dentries", key, key.upper())

    def mutate(txn):
        kv = txn.kv
        kv.put("dentries", b"a2", b"new")
        kv.put("dentries", b"a5", b"changed")
        assert kv.delete("dentries", b"a3") is True
        assert kv.delete("dentries", b"a9") is False
        assert kv.get("dentries", b"a2") == b"new" and kv.get("dentries", b"a3") is None
        return list(kv.scan("dentries", b"a")), list(kv.scan("dentries", b"a", start=b"a2")), kv.count("dentries")

    whole, from_a2, count = store.transact(mutate)
    assert whole == [(b"a1", b"A1"), (b"a2", b"new"), (b"a5", b"changed")]
    assert from_a2 == [(b"a2", b"new"), (b"a5", b"changed")]
    assert count == 4
    with store.read() as txn:
        assert list(txn.kv.scan("dentries")) == [(b"a1", b"A1"), (b"a2", b"new"), (b"a5", b"changed"),
                                                 (b"b1", b"B1")]
        assert txn.kv.count("dentries") == 4 and txn.kv.count("inodes") == 0


def test_scans_page_through_large_ranges_at_one_snapshot(make_store, monkeypatch):
    monkeypatch.setattr(etcd_store, "scan_page_keys", 7)
    store = make_store()
    keys = [b"k%04d" % i for i in range(100)]

    def fill(txn):
        for key in keys:
            txn.kv.put("inodes", key, key)
    store.transact(fill)
    with store.read() as txn:
        seen = []
        for key, _ in txn.kv.scan("inodes", b"k"):
            if len(seen) == 3:
                put(make_store(), "inodes", b"k0050x", b"late")     # after the snapshot: not seen
            seen.append(key)
    assert seen == keys


def test_concurrent_increments_lose_no_update(make_store):
    stores = [make_store() for _ in range(2)]
    put(stores[0], "counters", b"c", b"0")
    rounds = 25

    def increment(txn):
        value = int(txn.kv.get("counters", b"c"))
        txn.kv.put("counters", b"c", str(value + 1).encode())

    def work(store):
        for _ in range(rounds):
            store.transact(increment)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with stores[1].read() as txn:
        assert int(txn.kv.get("counters", b"c")) == 4 * rounds
    assert sum(store.conflicts for store in stores) > 0, "the racing commits must have conflicted"


def test_an_insert_into_a_scanned_range_reruns_the_transaction(make_store):
    store, other = make_store(), make_store()
    put(store, "dentries", b"d/a", b"1")
    runs = []

    def rmdir_if_empty(txn):
        runs.append(1)
        children = list(txn.kv.scan("dentries", b"d/"))
        if len(runs) == 1:
            put(other, "dentries", b"d/b", b"2")          # a phantom, after our snapshot
        if len(children) == 1:
            txn.kv.delete("dentries", b"d/a")
            txn.kv.put("inodes", b"gone", b"d")
        return len(children)

    assert store.transact(rmdir_if_empty) == 2, "the rerun saw the insert and decided on it"
    assert len(runs) == 2
    with store.read() as txn:
        assert txn.kv.get("inodes", b"gone") is None and txn.kv.get("dentries", b"d/a") == b"1"


def test_a_delete_inside_a_scanned_range_reruns_the_transaction(make_store):
    store, other = make_store(), make_store()
    for key in (b"s/1", b"s/2", b"s/3"):
        put(store, "sessions", key, b"x")
    runs = []

    def count_into_counter(txn):
        runs.append(1)
        seen = sum(1 for _ in txn.kv.scan("sessions", b"s/"))
        if len(runs) == 1:
            other.transact(lambda t: t.kv.delete("sessions", b"s/2"))
        txn.kv.put("counters", b"sessions", str(seen).encode())

    store.transact(count_into_counter)
    assert len(runs) == 2
    with store.read() as txn:
        assert txn.kv.get("counters", b"sessions") == b"2"


def test_a_write_outside_what_was_read_does_not_conflict(make_store):
    store, other = make_store(), make_store()
    put(store, "dentries", b"x/1", b"1")
    runs = []

    def mutate(txn):
        runs.append(1)
        next(iter(txn.kv.scan("dentries", b"x/")))       # consumes x/1 only
        if len(runs) == 1:
            put(other, "dentries", b"y/1", b"elsewhere")
        txn.kv.put("inodes", b"i", b"1")

    store.transact(mutate)
    assert len(runs) == 1


def test_a_transaction_that_keeps_losing_raises_conflict_with_nothing_applied(make_store, monkeypatch):
    monkeypatch.setattr(etcd_store, "conflict_tries_min", 3)
    monkeypatch.setattr(etcd_store, "conflict_budget_s", 0.0)
    monkeypatch.setattr(etcd_store, "backoff_first_s", 0.0)
    store, other = make_store(), make_store()
    put(store, "counters", b"hot", b"0")

    def always_raced(txn):
        txn.kv.get("counters", b"hot")
        put(other, "counters", b"hot", uuid.uuid4().bytes)
        txn.kv.put("inodes", b"never", b"1")

    runs = []
    with pytest.raises(Conflict, match="nothing was applied"):
        store.transact(lambda txn: runs.append(1) or always_raced(txn))
    assert len(runs) == 3, "with the time budget spent, it gives up after conflict_tries_min losses"
    with store.read() as txn:
        assert txn.kv.get("inodes", b"never") is None


def test_a_losing_transaction_keeps_trying_until_its_time_budget_is_spent(make_store, monkeypatch):
    """A count alone starved threads on a loaded machine: losses past conflict_tries_min rerun while
    the budget lasts, and a rerun that finally wins applies once."""
    monkeypatch.setattr(etcd_store, "conflict_tries_min", 3)
    monkeypatch.setattr(etcd_store, "backoff_max_s", 0.001)
    store, other = make_store(), make_store()
    put(store, "counters", b"hot", b"0")
    runs = []

    def raced_six_times(txn):
        runs.append(1)
        value = int(txn.kv.get("counters", b"hot"))
        if len(runs) <= 6:
            put(other, "counters", b"hot", b"100")
        txn.kv.put("counters", b"hot", str(value + 1).encode())

    store.transact(raced_six_times)
    assert len(runs) == 7
    with store.read() as txn:
        assert txn.kv.get("counters", b"hot") == b"101"


def test_a_guarded_commit_fails_with_not_primary_once_the_guard_is_gone(make_store, etcd_endpoints, prefix):
    store = make_store()
    client = EtcdClient(etcd_endpoints)
    try:
        election_key = f"{prefix}election".encode()
        lease = client.lease_grant(30)
        client.put(election_key, b"node 1", lease_id=lease)
        guard = Guard(election_key, client.get(election_key).create_revision)
        store.transact(lambda txn: txn.kv.put("nodes", b"1", b"primary write"), guard=guard)
        client.lease_revoke(lease)                       # the lease ends: the key goes with it
        with pytest.raises(NotPrimary):
            store.transact(lambda txn: txn.kv.put("nodes", b"2", b"stale primary"), guard=guard)
        client.put(election_key, b"node 2")              # someone else won: another create_revision
        with pytest.raises(NotPrimary):
            store.transact(lambda txn: txn.kv.put("nodes", b"2", b"stale primary"), guard=guard)
    finally:
        client.close()
    with store.read() as txn:
        assert txn.kv.get("nodes", b"1") == b"primary write" and txn.kv.get("nodes", b"2") is None


def test_a_transaction_over_the_etcd_limits_is_refused_with_nothing_applied(make_store):
    store = make_store()

    def too_many_reads(txn):
        for i in range(limits.etcd_txn_ops_max + 1):
            txn.kv.get("inodes", b"%08d" % i)
        txn.kv.put("inodes", b"x", b"1")

    with pytest.raises(TooLarge, match="max-txn-ops"):
        store.transact(too_many_reads)

    def too_many_writes(txn):
        for i in range(limits.etcd_txn_ops_max + 1):
            txn.kv.put("inodes", b"%08d" % i, b"v")

    with pytest.raises(TooLarge):
        store.transact(too_many_writes)
    with store.read() as txn:
        assert txn.kv.count("inodes") == 0


def test_id_ranges_are_unique_across_stores_and_the_counter_bounds_them(make_store):
    stores = [make_store() for _ in range(3)]
    handed: list[int] = []
    lock = threading.Lock()

    def take(store):
        for _ in range(etcd_store.id_range_size + 10):
            value = store.transact(lambda txn: txn.next_id("next_inode", 2))
            with lock:
                handed.append(value)

    threads = [threading.Thread(target=take, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(handed) == len(set(handed)) == 3 * (etcd_store.id_range_size + 10)
    assert min(handed) >= 2
    with stores[0].read() as txn:
        assert txn.get_counter("next_inode") > max(handed)


def test_concurrent_disjoint_transactions_share_commits_and_overlapping_ones_do_not(make_store):
    """Group commit (etcd_commit.py): disjoint transactions ride one etcd Txn; a counter that every
    thread increments is never batched with itself, so no increment is lost."""
    store = make_store()
    put(store, "counters", b"shared", b"0")
    rounds, threads = 20, 8

    def work(n: int) -> None:
        for i in range(rounds):
            store.transact(lambda txn: txn.kv.put("inodes", b"%02d-%03d" % (n, i), b"x"))

            def increment(txn):
                value = int(txn.kv.get("counters", b"shared"))
                txn.kv.put("counters", b"shared", str(value + 1).encode())
            store.transact(increment)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with store.read() as txn:
        assert txn.kv.count("inodes") == rounds * threads
        assert int(txn.kv.get("counters", b"shared")) == rounds * threads
    assert store.group.batches > 0, "concurrent commits shared etcd Txns"


@pytest.mark.parametrize("kind", ["read", "transact"])
def test_a_cached_guess_newer_than_the_snapshot_is_not_mixed_into_it(make_store, kind):
    """A dentry and its inode, created by this store after a transaction took its snapshot: the
    transaction sees both or neither. (The cache held the new dentry but not the inode, which a
    failed commit had forgotten; reading the dentry there and the inode at the older snapshot
    gave 'dentry points at missing inode' under concurrent makedirs on two meta servers.)"""
    store = make_store()
    put(store, "counters", b"x", b"1")
    seen = []

    def look(txn):
        assert txn.kv.get("counters", b"x") == b"1"        # a fresh read: the snapshot is taken here
        if not seen:
            put(store, "dentries", b"d", b"inode 7")         # now in this store's cache, newer
            put(store, "inodes", b"7", b"the inode")
            store.forget([store.key("inodes", b"7")])        # as a failed commit that read it does
        seen.append((txn.kv.get("dentries", b"d"), txn.kv.get("inodes", b"7")))

    if kind == "read":
        with store.read() as txn:
            look(txn)
    else:
        store.transact(look)
    dentry, inode = seen[-1]
    assert (dentry is None) == (inode is None), seen
