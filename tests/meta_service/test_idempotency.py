"""Idempotent mutations: a retry with the same request_id gets the first outcome back.

Method: run each mutation twice with one request_id on the pure Namespace (fake
chunk store) and check the second call returns the first result and leaves the
store byte-identical; then the edges: recorded errors vs transient ones,
a request id reused for another method, TTL pruning, records surviving a
"restart" (a new Namespace on the same LMDB), and a duplicate that commits
while the first call waits on storage.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import errors
from fireflyfs.common.layout import Layout
from fireflyfs.meta_service.idempotency import IdemTable
from fireflyfs.meta_service.namespace import Namespace

from .conftest import dump

NOW = 1_000


def write(chunks, inode, offset, length):
    chunks.write(inode.id, Layout.from_proto(inode.layout), offset, length)


def twice(store, call):
    """Call twice; the second must return the same and change nothing."""
    first = call()
    before = dump(store)
    assert call() == first
    assert dump(store) == before
    return first


def test_every_mutation_replays_its_first_result(ns, store, chunks):
    twice(store, lambda: ns.mkdirs("/d", NOW, request_id="m1"))
    created = twice(store, lambda: ns.create("/d/f", NOW, exclusive=True, open_for_write=True,
                                             client_id="c", request_id="c1"))
    write(chunks, created[0], 0, 100)
    twice(store, lambda: ns.close(created[0].id, created[1], NOW, length_hint=100, request_id="x1",
                                  client_id="c"))
    opened = twice(store, lambda: ns.open("/d/f", NOW, write=True, client_id="c", request_id="o1"))
    assert ns.stat("/d/f")[0].open_write_sessions == 1, "a replayed write open opens no second session"
    ns.close(created[0].id, opened[1], NOW, client_id="c")
    twice(store, lambda: ns.symlink("/s", "/d/f", NOW, request_id="s1"))
    twice(store, lambda: ns.hardlink("/d/f", "/h", NOW, request_id="h1"))
    twice(store, lambda: ns.setattr("/h", NOW, mode=0o600, request_id="a1"))
    twice(store, lambda: ns.truncate("/h", 10, NOW, request_id="t1"))
    twice(store, lambda: ns.copy_file("/h", "/copy", NOW, request_id="p1"))
    twice(store, lambda: ns.rename("/copy", "/moved", NOW, request_id="r1"))
    twice(store, lambda: ns.remove("/moved", NOW, request_id="d1"))
    assert ns.stat("/h")[0].length == 10
    with pytest.raises(FileNotFoundError):
        ns.stat("/moved")


def test_without_a_request_id_a_retry_runs_again(ns):
    ns.create("/f", NOW)
    ns.rename("/f", "/g", NOW)
    with pytest.raises(errors.NotFound):
        ns.rename("/f", "/g", NOW)


def test_a_recorded_error_is_replayed_even_when_a_rerun_would_succeed(ns):
    with pytest.raises(errors.NotFound):
        ns.rename("/a", "/b", NOW, request_id="r")
    ns.create("/a", NOW)
    with pytest.raises(errors.NotFound):
        ns.rename("/a", "/b", NOW, request_id="r")
    ns.stat("/a")


def test_transient_errors_are_not_recorded(ns, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    chunks.fail = True
    with pytest.raises(errors.Unavailable):
        ns.close(inode.id, sid, NOW, request_id="close-1")
    chunks.fail = False
    assert ns.close(inode.id, sid, NOW, length_hint=5, request_id="close-1").length == 5


def test_a_request_id_reused_for_another_method_is_rejected(ns):
    ns.mkdirs("/d", NOW, request_id="same")
    with pytest.raises(errors.InvalidArgument, match="Mkdirs"):
        ns.remove("/d", NOW, request_id="same")
    with pytest.raises(errors.InvalidArgument):
        ns.mkdirs("/e", NOW, request_id="x" * 200)


def test_records_expire_and_are_pruned(store, chunks):
    from .conftest import install_chain_table

    install_chain_table(store)
    ns = Namespace(store, chunks, rng=random.Random(1), idem=IdemTable(ttl_ns=1_000))
    for i in range(40):
        ns.mkdirs(f"/d{i}", NOW + i, request_id=f"id-{i}")
    with store.read() as txn:
        assert ns.idem.count(txn) == 40
    # Long after the TTL: the old record no longer answers, and pruning keeps up.
    with pytest.raises(errors.AlreadyExists):
        ns.mkdirs("/d0", NOW + 10_000, request_id="id-0")
    for i in range(3):
        ns.mkdirs(f"/late{i}", NOW + 10_000, request_id=f"late-{i}")
    with store.read() as txn:
        assert ns.idem.count(txn) == 43, "mutations do not prune (on etcd they would all conflict)"
    # The GC pass prunes the 39 expired in bounded transactions (16 each).
    assert ns.idem.prune_expired(store, NOW + 10_000, batches_max=2) == 32
    assert ns.idem.prune_expired(store, NOW + 10_000) == 7
    with store.read() as txn:
        assert ns.idem.count(txn) == 4
        assert txn.entries("idem") == txn.entries("idem_expiry")


def test_records_survive_a_restart(store, chunks):
    from .conftest import install_chain_table

    install_chain_table(store)
    first = Namespace(store, chunks, rng=random.Random(1))
    inode, sid, path = first.create("/f", NOW, exclusive=True, open_for_write=True, request_id="c")
    again = Namespace(store, chunks, rng=random.Random(2))
    assert again.create("/f", NOW, exclusive=True, open_for_write=True, request_id="c") == (inode, sid, path)


def test_a_duplicate_committing_first_wins(ns, chunks, store):
    """The retry arrives while the first call waits on storage: the first then replays the retry's result."""
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 50)
    original = chunks.file_length_from_chunks
    results = []

    def slow_length(inode_id, layout):
        chunks.file_length_from_chunks = original
        results.append(ns.close(inode.id, sid, NOW, length_hint=7, request_id="dup"))
        return original(inode_id, layout)

    chunks.file_length_from_chunks = slow_length
    assert ns.close(inode.id, sid, NOW, length_hint=7, request_id="dup") == results[0]
    assert ns.stat("/f")[0].open_write_sessions == 0


def test_a_duplicate_that_committed_after_the_lookup_is_replayed_not_failed(ns, chunks, store, monkeypatch):
    """Two meta servers, the client's retry after a lost reply: the retry looks up the request id
    before the first attempt commits, then finds the session already closed by it. The first
    outcome is returned, not NotFound."""
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    first = ns.close(inode.id, sid, NOW, length_hint=7, request_id="retried")
    other_server = Namespace(store, chunks, rng=random.Random(9))
    real_lookup = other_server.idem.lookup
    lookups = []

    def lookup_before_the_commit(txn, key):
        lookups.append(key)
        return None if len(lookups) == 1 else real_lookup(txn, key)

    monkeypatch.setattr(other_server.idem, "lookup", lookup_before_the_commit)
    assert other_server.close(inode.id, sid, NOW + 1, length_hint=7, request_id="retried") == first
    assert len(lookups) >= 2


def test_sync_ignores_a_hint_from_before_a_truncate(ns, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 1000)
    ns.truncate("/f", 10, NOW)
    assert ns.sync(inode.id, sid, NOW, length_hint=1000).length == 10, "the session predates the truncate"
    _, after, _ = ns.open("/f", NOW, write=True)
    assert ns.sync(inode.id, after, NOW, length_hint=500).length == 500
    other, other_sid, _ = ns.create("/g", NOW, open_for_write=True)
    assert ns.sync(other.id, other_sid, NOW, length_hint=64).length == 64
    ns.close(inode.id, sid, NOW)
    ns.close(inode.id, after, NOW)


def test_a_failed_copy_leaves_no_destination_and_its_chunks_go_to_gc(ns, chunks, store):
    from fireflyfs.meta_service.gc import GarbageCollector

    src, sid, _ = ns.create("/src", NOW, open_for_write=True)
    write(chunks, src, 0, 100)
    ns.close(src.id, sid, NOW)
    ns.create("/dst", NOW)
    old_dst = ns.stat("/dst")[0]
    chunks.fail = True
    with pytest.raises(errors.Unavailable):
        ns.copy_file("/src", "/dst", NOW)
    with pytest.raises(errors.Unavailable):
        ns.copy_file("/src", "/new/dst", NOW, parents=True)
    chunks.fail = False
    assert ns.stat("/dst")[0] == old_dst, "the old destination is untouched"
    with pytest.raises(FileNotFoundError):
        ns.stat("/new/dst")
    with store.read() as txn:
        abandoned = [key for key, _ in txn.scan("gc")]
        assert len(abandoned) == 2 and txn.entries("sessions") == 0
    assert GarbageCollector(store, chunks).run_once(NOW) == 2


def test_copy_replaces_an_existing_file_in_one_step(ns, chunks, store):
    src, sid, _ = ns.create("/src", NOW, open_for_write=True)
    write(chunks, src, 0, 300)
    ns.close(src.id, sid, NOW)
    ns.create("/dst", NOW)
    old = ns.stat("/dst")[0]
    copied, path = ns.copy_file("/src", "/dst", NOW)
    assert path == "/dst" and copied.id != old.id and copied.length == 300 and copied.nlink == 1
    assert ns.stat("/dst")[0] == copied
    with store.read() as txn:
        assert txn.get_gc(old.id) is not None
    ns.symlink("/link", "/dst", NOW)
    through, path = ns.copy_file("/src", "/link", NOW)
    assert path == "/dst" and ns.stat("/link", follow_symlinks=False)[0].type == 3


def test_a_copy_interrupted_by_a_restart_is_reclaimed(ns, chunks, store):
    src, _, _ = ns.create("/src", NOW)
    write(chunks, src, 0, 100)
    _source, temp, _sid, _, _ = ns._copy_begin("/src", "/dst", NOW, False)   # then the process "dies"
    with store.read() as txn:
        assert txn.get_gc(temp.id).open_write_sessions == 1
    Namespace(store, chunks, rng=random.Random(5))
    with store.read() as txn:
        assert txn.get_gc(temp.id).open_write_sessions == 0 and txn.entries("sessions") == 0
    with pytest.raises(FileNotFoundError):
        ns.stat("/dst")


def test_stat_inodes(ns, store):
    live, _, _ = ns.create("/live", NOW)
    gone, _, _ = ns.create("/gone", NOW)
    ns.remove("/gone", NOW)
    states = ns.stat_inodes([live.id, gone.id, 999_999])
    assert [(s.inode_id, s.exists, s.gc_pending) for s in states] == [
        (live.id, True, False), (gone.id, False, True), (999_999, False, False)]
    assert [s.chunk_size for s in states] == [live.layout.chunk_size, gone.layout.chunk_size, 0]
    with pytest.raises(errors.TooLarge):
        ns.stat_inodes(list(range(20_000)))
