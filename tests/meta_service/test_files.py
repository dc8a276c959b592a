"""Write sessions, the file-length rule, O_TRUNC, truncate, copy, layouts and GC.

Storage is the in-memory FakeChunkStore (pure-logic unit tests); a test
"writes" by recording chunk extents the way a client write would.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.common.layout import Layout
from fireflyfs.common.limits import MiB
from fireflyfs.meta_service.gc import GarbageCollector
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.store import session_key
from fireflyfs.proto import types_pb2

from .conftest import dump, install_chain_table

NOW = 1_000


def write(chunks, inode, offset, length):
    chunks.write(inode.id, Layout.from_proto(inode.layout), offset, length)


def test_sessions_are_recorded_and_closed(ns, store):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True, client_id="c1")
    assert sid and ns.stat("/f")[0].open_write_sessions == 1
    _, sid2, _ = ns.open("/f", NOW, write=True, client_id="c2")
    assert sid2 != sid and ns.stat("/f")[0].open_write_sessions == 2
    with store.read() as txn:
        assert {s.client_id for s in txn.sessions_of(inode.id)} == {"c1", "c2"}
    with pytest.raises(errors.PermissionDenied, match="held by another client"):
        ns.close(inode.id, sid, NOW, client_id="c2")
    ns.close(inode.id, sid, NOW, client_id="c1")
    ns.close(inode.id, sid2, NOW, client_id="c2")
    assert ns.stat("/f")[0].open_write_sessions == 0
    with store.read() as txn:
        assert txn.sessions_of(inode.id) == []
    with pytest.raises(errors.NotFound):
        ns.close(inode.id, sid, NOW, client_id="c1")
    _, read_sid, _ = ns.open("/f", NOW)
    assert read_sid == 0


def test_close_length_is_max_of_meta_storage_and_hint(ns, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 5 * MiB + 3)
    closed = ns.close(inode.id, sid, NOW + 1, length_hint=100, update_mtime=True)
    assert closed.length == 5 * MiB + 3 and closed.mtime_ns == NOW + 1
    _, sid, _ = ns.open("/f", NOW, write=True)
    assert ns.close(inode.id, sid, NOW, length_hint=9 * MiB).length == 9 * MiB  # sparse tail


def test_only_the_last_writer_asks_storage(ns, chunks):
    inode, sid1, _ = ns.create("/f", NOW, open_for_write=True)
    _, sid2, _ = ns.open("/f", NOW, write=True)
    write(chunks, inode, 0, 10)
    chunks.calls.clear()
    assert ns.close(inode.id, sid1, NOW, length_hint=7).length == 7  # still a hint
    assert chunks.calls == []
    assert ns.close(inode.id, sid2, NOW).length == 10
    assert chunks.calls == [("length", inode.id)]


def test_sync_makes_length_exact_and_keeps_the_session(ns, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 4096)
    assert ns.sync(inode.id, sid, NOW).length == 4096
    assert ns.stat("/f")[0].open_write_sessions == 1
    ns.close(inode.id, sid, NOW)


def test_sync_and_close_refuse_a_hint_no_file_of_the_layout_can_reach(ns, store):
    """Found by tests/system/test_fuzz_rpc.py's classes of values: Sync(length_hint=2**64-1) made the
    length 2**64-1 (Truncate refuses it), and a CopyFile of that file then ran for ever."""
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    largest = (1 << 32) * inode.layout.chunk_size - 1
    before = dump(store)
    for hint in (largest + 1, 2**63, 2**64 - 1):
        with pytest.raises(errors.TooLarge, match="largest file"):
            ns.sync(inode.id, sid, NOW, length_hint=hint)
        with pytest.raises(errors.TooLarge, match="largest file"):
            ns.close(inode.id, sid, NOW, length_hint=hint)
    assert dump(store) == before, "a refused hint changes nothing, the session stays open"
    assert ns.sync(inode.id, sid, NOW, length_hint=largest).length == largest


def test_copy_reads_only_up_to_the_last_stored_chunk(ns, chunks, monkeypatch):
    """A file truncated up to 1 TiB is one hole past its data: CopyFile copied every byte of it
    (found with the RPC fuzzer's value classes: Truncate length 2**40, then CopyFile past its deadline)."""
    inode, sid, _ = ns.create("/sparse", NOW, open_for_write=True)
    write(chunks, inode, 0, 3 * MiB + 5)
    ns.close(inode.id, sid, NOW)
    ns.truncate("/sparse", 2**40, NOW)
    lengths = []
    copy = chunks.copy_file_chunks
    monkeypatch.setattr(chunks, "copy_file_chunks", lambda src, layout, length, *rest: (
        lengths.append(length), copy(src, layout, length, *rest))[1])
    copied, _ = ns.copy_file("/sparse", "/copy", NOW)
    assert lengths == [3 * MiB + 5]
    assert copied.length == 2**40
    assert chunks.file_length_from_chunks(copied.id, Layout.from_proto(copied.layout)) == 3 * MiB + 5


def test_truncate_wins_over_a_stale_hint(ns, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 8 * MiB)
    ns.sync(inode.id, sid, NOW)
    truncated, _ = ns.truncate("/f", 100, NOW + 1)
    assert (truncated.length, truncated.truncate_version) == (100, 1)
    assert chunks.file_length_from_chunks(inode.id, Layout.from_proto(inode.layout)) == 100
    # The session opened before the truncate reports its old high-water mark.
    assert ns.close(inode.id, sid, NOW + 2, length_hint=8 * MiB).length == 100


def test_truncate_extends_sparsely(ns, chunks):
    inode, _, _ = ns.create("/f", NOW)
    assert ns.truncate("/f", 3 * MiB, NOW)[0].length == 3 * MiB


def test_close_fails_cleanly_when_storage_is_down(ns, chunks, store):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    chunks.fail = True
    before = dump(store)
    with pytest.raises(errors.Unavailable):
        ns.close(inode.id, sid, NOW)
    assert dump(store) == before
    chunks.fail = False
    ns.close(inode.id, sid, NOW)


def test_o_trunc_replaces_the_inode_when_alone(ns, chunks, store):
    old, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, old, 0, 3 * MiB)
    ns.close(old.id, sid, NOW)
    chunks.calls.clear()
    new, sid, path = ns.open("/f", NOW + 1, write=True, truncate=True)
    assert new.id != old.id and new.length == 0 and new.truncate_version == 1 and path == "/f"
    assert chunks.calls == []  # O(1): storage untouched on the request path
    with store.read() as txn:
        assert txn.get_gc(old.id) is not None
    assert ns.stat("/f")[0].id == new.id
    ns.close(new.id, sid, NOW)


def test_o_trunc_with_a_hard_link_truncates_in_place(ns, chunks):
    old, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, old, 0, 3 * MiB)
    ns.close(old.id, sid, NOW)
    ns.hardlink("/f", "/g", NOW)
    same, sid, _ = ns.create("/f", NOW, truncate=True, open_for_write=True)
    assert same.id == old.id and same.length == 0
    assert ("truncate", old.id, 0) in chunks.calls
    assert ns.stat("/g")[0].length == 0
    ns.close(same.id, sid, NOW)


def test_unlink_while_open_defers_gc_until_close(ns, chunks, store):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True)
    write(chunks, inode, 0, 10)
    ns.remove("/f", NOW)
    gc = GarbageCollector(store, chunks)
    assert gc.run_once(NOW) == 0 and inode.id in chunks.chunks
    closed = ns.close(inode.id, sid, NOW, length_hint=10)  # the session can still close
    assert closed.length == 10 and closed.open_write_sessions == 0
    assert gc.run_once(NOW) == 1
    assert inode.id not in chunks.chunks
    with store.read() as txn:
        assert txn.entries("gc") == 0


def test_gc_retries_after_storage_failure_and_honours_delay(ns, chunks, store):
    inode, _, _ = ns.create("/f", NOW)
    write(chunks, inode, 0, 10)
    ns.remove("/f", NOW)
    gc = GarbageCollector(store, chunks, delay_ms=1)
    assert gc.run_once(NOW) == 0  # too young
    chunks.fail = True
    assert gc.run_once(NOW + 2_000_000) == 0
    chunks.fail = False
    assert gc.run_once(NOW + 2_000_001) == 0  # backing off
    assert gc.run_once(NOW + 10_000_000_000) == 1


def test_copy_file(ns, chunks):
    src, sid, _ = ns.create("/src", NOW, open_for_write=True, mode=0o600)
    write(chunks, src, 0, 5 * MiB)
    ns.close(src.id, sid, NOW)
    copy, path = ns.copy_file("/src", "/out/dst", NOW, parents=True)
    assert path == "/out/dst" and copy.length == 5 * MiB and copy.mode == 0o600
    assert copy.id != src.id and copy.open_write_sessions == 0
    with pytest.raises(errors.InvalidArgument, match="same file"):
        ns.copy_file("/src", "/src", NOW)
    ns.mkdirs("/dir", NOW)
    with pytest.raises(errors.IsADirectory):
        ns.copy_file("/dir", "/x", NOW)


def test_layout_inherited_from_parent_and_stripe_clamped(ns, store):
    ns.mkdirs("/big", NOW, layout=types_pb2.Layout(chunk_size=MiB, stripe_size=4))
    ns.mkdirs("/big/sub", NOW)
    inode, _, _ = ns.create("/big/sub/f", NOW)
    assert (inode.layout.chunk_size, inode.layout.stripe_size) == (MiB, 4)
    assert inode.layout.chain_table_id == 1 and inode.layout.chain_table_version == 1
    root_file, _, _ = ns.create("/r", NOW)
    assert root_file.layout.chunk_size == limits.chunk_size_default
    assert root_file.layout.stripe_size == 6  # default 16 clamped to the 6 chains


def test_chain_allocator_round_robin_is_persisted(store, chunks):
    install_chain_table(store, chain_count=8)
    ns = Namespace(store, chunks, rng=random.Random(3))
    ns.mkdirs("/s", NOW, layout=types_pb2.Layout(stripe_size=2))
    bases = [ns.create(f"/s/f{i}", NOW)[0].layout.chain_base for i in range(4)]
    assert len(set(bases)) == 4 and all((b - bases[0]) % 2 == 0 for b in bases)
    again = Namespace(store, chunks, rng=random.Random(99))  # counter survives a restart
    nxt = again.create("/s/f4", NOW)[0].layout.chain_base
    assert nxt == (bases[-1] - 1 + 2) % 8 + 1
    seeds = {ns.stat(f"/s/f{i}")[0].layout.seed for i in range(4)}
    assert len(seeds) == 4


def test_session_key_layout_groups_by_inode():
    assert session_key(1, 2) < session_key(1, 3) < session_key(2, 0)


def test_startup_sweep_ends_only_the_named_clients_sessions(ns, store):
    """The sessions the meta process holds itself (copies, inline moves) are ended at start;
    users' sessions on the same file stay."""
    from fireflyfs.meta_service.inodes import end_sessions_of_client

    ns.create("/swept", NOW, open_for_write=True, client_id="meta-internal")
    ns.create("/swept", NOW, open_for_write=True, client_id="user")
    assert ns.stat("/swept")[0].open_write_sessions == 2
    assert end_sessions_of_client(store, "meta-internal") == 1
    assert ns.stat("/swept")[0].open_write_sessions == 1
    assert end_sessions_of_client(store, "meta-internal") == 0
    with store.read() as txn:
        clients = [value for _key, value in txn.scan("sessions")]
    assert len(clients) == 1 and b"user" in clients[0]
