"""Inline files (meta_service/inline.py): small files whose bytes live in the metadata store.

Method: drive Namespace over real LMDB with the fake chunk store, which also
keeps the bytes moves write, and check each rule of inline.py: created in one
transaction without storage, served by inline-aware read opens, moved to
chunks (bytes intact) before writers or chunk readers touch the file, cut in
place by truncates within the limit, copied with the record, dropped on unlink
without a GC pass (unless a move had started), refused where O_TRUNC cannot
replace the inode, and a move interrupted by a restart leaves the record ruling.
"""

from __future__ import annotations

import random
import threading

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.common.layout import Layout
from fireflyfs.meta_service.inline import MOVE_CLIENT_ID
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.inodes import inline_record, open_session, put_inline_record
from fireflyfs.proto import types_pb2

from .conftest import dump, install_chain_table
from .fakes import FakeChunkStore

NOW = 1_000


class BytesChunkStore(FakeChunkStore):
    """The fake chunk store, also keeping the bytes written (offset-addressed per inode)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[int, bytearray] = {}

    def write_bytes(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        super().write_bytes(inode_id, layout, offset, data)
        buffer = self.data.setdefault(inode_id, bytearray())
        buffer.extend(bytes(max(0, offset + len(data) - len(buffer))))
        buffer[offset:offset + len(data)] = data

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        super().truncate(inode_id, layout, new_length)
        if inode_id in self.data:
            del self.data[inode_id][new_length:]


@pytest.fixture
def chunks():
    return BytesChunkStore()


@pytest.fixture
def ns(store, chunks):
    install_chain_table(store)
    return Namespace(store, chunks, rng=random.Random(11))


def record(store, inode_id):
    with store.read() as txn:
        return inline_record(txn, inode_id)


def test_create_inline_is_one_transaction_without_storage(ns, store, chunks):
    inode, path, inline = ns.create_inline("/d/small", b"hello", NOW, parents=True)
    assert inline and path == "/d/small" and inode.length == 5 and inode.open_write_sessions == 0
    assert record(store, inode.id) == (b"hello", False)
    assert chunks.calls == []
    stat, _ = ns.stat("/d/small")
    assert stat.length == 5 and stat.id == inode.id
    opened, opened_path, data = ns.open_inline("/d/small")
    assert (opened.id, opened_path, data) == (inode.id, "/d/small", b"hello")
    assert chunks.calls == []


def test_open_inline_of_a_chunk_file_has_no_bytes(ns):
    ns.create("/big", NOW)
    inode, _, data = ns.open_inline("/big")
    assert data == b"" and inode.length == 0
    with pytest.raises(IsADirectoryError):
        ns.open_inline("/")


def test_limits_and_bad_arguments_change_nothing(ns, store):
    ns.create_inline("/f", b"x", NOW)
    before = dump(store)
    with pytest.raises(errors.TooLarge):
        ns.create_inline("/g", b"y" * (limits.inline_data_bytes_max + 1), NOW)
    with pytest.raises(errors.TooLarge):
        ns.create_inline("/g", b"", NOW)
    with pytest.raises(FileExistsError):
        ns.create_inline("/f", b"z", NOW, exclusive=True)
    with pytest.raises(FileNotFoundError):
        ns.create_inline("/missing/g", b"z", NOW)
    with pytest.raises(IsADirectoryError):
        ns.create_inline("/", b"z", NOW)
    assert dump(store) == before


def test_replacing_a_chunk_file_sends_the_old_inode_to_gc(ns, store, chunks):
    old, sid, _ = ns.create("/f", NOW, open_for_write=True)
    chunks.write(old.id, Layout.from_proto(old.layout), 0, 5000)
    ns.close(old.id, sid, NOW, length_hint=5000)
    new, _, inline = ns.create_inline("/f", b"new", NOW + 1)
    assert inline and new.id != old.id and new.length == 3
    with store.read() as txn:
        assert txn.get_gc(old.id) is not None and txn.get_inode(old.id) is None


def test_replacing_an_inline_file_needs_no_gc_pass(ns, store):
    first, _, _ = ns.create_inline("/f", b"one", NOW)
    second, _, _ = ns.create_inline("/f", b"second", NOW + 1)
    assert second.id != first.id
    assert record(store, first.id) is None and record(store, second.id) == (b"second", False)
    with store.read() as txn:
        assert txn.get_gc(first.id) is None and txn.entries("gc") == 0
    ns.remove("/f", NOW + 2)
    with store.read() as txn:
        assert txn.entries("inline") == 0 and txn.entries("gc") == 0


def test_refused_where_o_trunc_cannot_replace(ns, store):
    """Hard links or open writers: nothing changes and the caller writes through storage."""
    ns.create("/linked", NOW)
    ns.hardlink("/linked", "/other", NOW)
    writer, sid, _ = ns.create("/busy", NOW, open_for_write=True)
    before = dump(store)
    assert ns.create_inline("/linked", b"data", NOW) == (None, "/linked", False)
    assert ns.create_inline("/busy", b"data", NOW, parents=True) == (None, "/busy", False)
    assert dump(store) == before


def test_a_write_open_moves_the_bytes_to_chunks_first(ns, store, chunks):
    inode, _, _ = ns.create_inline("/f", b"abcdef", NOW)
    opened, sid, _ = ns.open("/f", NOW, write=True, client_id="w")
    assert opened.id == inode.id and sid
    assert record(store, inode.id) is None
    assert bytes(chunks.data[inode.id]) == b"abcdef"
    closed = ns.close(inode.id, sid, NOW, length_hint=6, client_id="w")
    assert closed.length == 6 and closed.open_write_sessions == 0
    # Appending (create without O_TRUNC, opening for write) moves too.
    other, _, _ = ns.create_inline("/g", b"xyz", NOW)
    _, sid, _ = ns.create("/g", NOW, open_for_write=True, truncate=False)
    assert record(store, other.id) is None and bytes(chunks.data[other.id]) == b"xyz"


def test_a_read_open_without_inline_ok_moves_the_bytes(ns, store, chunks):
    """Chunk readers that predate inline files read the right bytes."""
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    opened, sid, _ = ns.open("/f", NOW)
    assert sid == 0 and opened.length == 3
    assert record(store, inode.id) is None and bytes(chunks.data[inode.id]) == b"abc"
    with store.read() as txn:
        assert txn.entries("sessions") == 0
        assert txn.get_inode(inode.id).open_write_sessions == 0


def test_batch_stat_brings_bytes_or_moves_them(ns, store, chunks):
    a, _, _ = ns.create_inline("/a", b"aaa", NOW)
    b, _, _ = ns.create_inline("/b", b"bb", NOW)
    ns.create("/c", NOW)
    results, more = ns.batch_stat(["/a", "/b", "/c", "/missing"], inline_ok=True)
    assert not more
    assert [r.inline_data for r in results] == [b"aaa", b"bb", b"", b""]
    assert results[3].error == "NotFound"
    assert chunks.calls == []
    results, _ = ns.batch_stat(["/a", "/c"])
    assert [r.inline_data for r in results] == [b"", b""] and results[0].inode.length == 3
    assert record(store, a.id) is None and bytes(chunks.data[a.id]) == b"aaa"
    assert record(store, b.id) == (b"bb", False)


@pytest.mark.parametrize("length, expected", [(3, b"abc"), (9, b"abcdef\0\0\0"), (0, None)])
def test_truncate_within_the_limit_edits_the_record(ns, store, chunks, length, expected):
    inode, _, _ = ns.create_inline("/f", b"abcdef", NOW)
    cut, _ = ns.truncate("/f", length, NOW + 1)
    assert cut.length == length and cut.truncate_version == inode.truncate_version + 1
    assert record(store, inode.id) == (None if expected is None else (expected, False))
    assert chunks.calls == []


def test_truncate_past_the_limit_moves_then_extends(ns, store, chunks):
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    length = limits.inline_data_bytes_max + 1
    cut, _ = ns.truncate("/f", length, NOW + 1)
    assert cut.length == length and record(store, inode.id) is None
    assert bytes(chunks.data[inode.id]) == b"abc"


def test_o_trunc_open_of_a_linked_inline_file(ns, store):
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    ns.hardlink("/f", "/g", NOW)
    opened, sid, _ = ns.open("/g", NOW, write=True, truncate=True, client_id="w")
    assert opened.id == inode.id and opened.length == 0 and sid
    assert record(store, inode.id) is None


def test_copy_of_an_inline_file_copies_the_record(ns, store, chunks):
    source, _, _ = ns.create_inline("/src", b"payload", NOW)
    copied, path = ns.copy_file("/src", "/dst", NOW)
    assert path == "/dst" and copied.id != source.id and copied.length == 7
    assert record(store, copied.id) == (b"payload", False)
    assert ns.open_inline("/dst")[2] == b"payload"
    assert [c for c in chunks.calls if c[0] in ("copy", "write")] == []
    with store.read() as txn:
        assert txn.entries("sessions") == 0


def test_hard_links_share_the_record_until_the_last_goes(ns, store):
    inode, _, _ = ns.create_inline("/f", b"shared", NOW)
    ns.hardlink("/f", "/g", NOW)
    ns.remove("/f", NOW)
    assert ns.open_inline("/g")[2] == b"shared"
    ns.remove("/g", NOW)
    assert record(store, inode.id) is None
    with store.read() as txn:
        assert txn.entries("gc") == 0


def test_sync_of_an_inline_file_needs_a_session_and_changes_nothing(ns, store, chunks):
    """An inline file has no client write session (a write open moves it to chunks first), so
    no sync or close reaches its record."""
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    before = dump(store)
    with pytest.raises(errors.InvalidArgument, match="session"):
        ns.sync(inode.id, 0, NOW, length_hint=1000)
    with pytest.raises(errors.NotFound):
        ns.sync(inode.id, 12345, NOW, length_hint=1000)
    assert dump(store) == before and record(store, inode.id) == (b"abc", False)
    assert [c for c in chunks.calls if c[0] == "length"] == []


def test_a_failed_move_leaves_the_record_ruling(ns, store, chunks):
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    chunks.fail = True
    with pytest.raises(errors.Unavailable):
        ns.open("/f", NOW, write=True)
    assert record(store, inode.id) == (b"abc", True)      # MOVING: chunks may exist
    with store.read() as txn:
        assert txn.entries("sessions") == 0 and txn.get_inode(inode.id).open_write_sessions == 0
    assert ns.open_inline("/f")[2] == b"abc"
    # A MOVING record moves before a truncate, and its unlink goes through GC.
    chunks.fail = False
    ns.truncate("/f", 2, NOW)
    assert record(store, inode.id) is None and bytes(chunks.data[inode.id]) == b"ab"
    other, _, _ = ns.create_inline("/g", b"xyz", NOW)
    store.transact(lambda txn: put_inline_record(txn, other.id, b"xyz", moving=True))
    ns.remove("/g", NOW)
    with store.read() as txn:
        assert txn.get_gc(other.id) is not None and txn.entries("inline") == 0


def test_a_move_interrupted_by_a_restart(ns, store, chunks):
    inode, _, _ = ns.create_inline("/f", b"abc", NOW)
    def first_step_of_a_move(txn):   # the move's first transaction, then the process "dies"
        put_inline_record(txn, inode.id, b"abc", moving=True)
        stored = txn.get_inode(inode.id)
        open_session(txn, stored, MOVE_CLIENT_ID, 0)
        txn.put_inode(stored)

    store.transact(first_step_of_a_move)
    chunks.write_bytes(inode.id, Layout.from_proto(inode.layout), 0, b"stale bytes")
    restarted = Namespace(store, chunks, rng=random.Random(5))
    with store.read() as txn:
        assert txn.entries("sessions") == 0 and txn.get_inode(inode.id).open_write_sessions == 0
    assert restarted.open_inline("/f")[2] == b"abc"
    restarted.open("/f", NOW)   # a chunk reader: the move runs again, cutting the stale chunk
    assert bytes(chunks.data[inode.id]) == b"abc" and record(store, inode.id) is None


def test_create_inline_retried_with_its_request_id_replays(ns, store):
    first = ns.create_inline("/f", b"abc", NOW, exclusive=True, request_id="r1")
    again = ns.create_inline("/f", b"abc", NOW + 1, exclusive=True, request_id="r1")
    assert again == first
    with pytest.raises(FileExistsError):
        ns.create_inline("/f", b"abc", NOW + 1, exclusive=True, request_id="r2")


def test_concurrent_moves_and_truncates_keep_the_bytes(ns, store, chunks):
    """Writers opening, readers moving, truncates cutting the same inline files from threads."""
    paths = [f"/f{i}" for i in range(8)]
    for path in paths:
        ns.create_inline(path, b"0123456789", NOW)
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30):
                path = rng.choice(paths)
                choice = rng.random()
                for _attempt in range(20):     # retryable answers are retried, as clients do
                    try:
                        if choice < 0.3:
                            ns.open(path, NOW)
                        elif choice < 0.6:
                            ns.truncate(path, rng.randrange(1, 10), NOW)
                        else:
                            ns.batch_stat([path], inline_ok=True)
                        break
                    except errors.Retryable:
                        continue
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for path in paths:
        inode, _ = ns.stat(path)
        held = record(store, inode.id)
        if held is not None:
            content = held[0]
        else:   # bytes past the chunk's end are a hole: zeros
            stored = bytes(chunks.data[inode.id][:inode.length])
            content = stored + bytes(inode.length - len(stored))
        # Truncates cut and zero-extend: a prefix of the original, then zeros.
        kept = content.rstrip(b"\0")
        assert len(content) == inode.length and kept == b"0123456789"[:len(kept)]
        assert inode.open_write_sessions == 0


def test_inline_files_are_files_everywhere_else(ns):
    ns.create_inline("/dir/f", b"abc", NOW, parents=True)
    entries, _ = ns.list("/dir", with_attrs=True)
    assert [(e.name, e.inode.length, e.type) for e in entries] == [("f", 3, types_pb2.INODE_FILE)]
    found, _ = ns.find("/")
    assert [(f.path, f.inode.length) for f in found] == [("/dir/f", 3)]
    ns.rename("/dir/f", "/g", NOW)
    assert ns.open_inline("/g")[2] == b"abc"
