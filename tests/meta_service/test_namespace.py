"""Namespace operations against a real LMDB store and the fake chunk store.

Goal: every operation's result and every documented error; each bad input
must leave every DB byte-for-byte unchanged (checked with ``dump``).
"""

from __future__ import annotations

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.meta_service.trash import empty_trash
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.proto import types_pb2

from .conftest import dump

NOW = 1_000


def test_root_exists_and_is_a_directory(ns):
    root, path = ns.stat("/")
    assert (root.id, root.type, root.mode, path) == (1, types_pb2.INODE_DIRECTORY, 0o755, "/")
    assert root.layout.chunk_size == limits.chunk_size_default


def test_root_survives_reopen(store, chunks):
    first = Namespace(store, chunks, now_ns=5)
    second = Namespace(store, chunks, now_ns=9)
    assert first.stat("/")[0].crtime_ns == second.stat("/")[0].crtime_ns == 5


def test_mkdirs_parents_and_exist_ok(ns):
    inode, path = ns.mkdirs("/a/b/c", NOW, parents=True)
    assert path == "/a/b/c" and inode.type == types_pb2.INODE_DIRECTORY
    assert ns.stat("/a/b")[0].id == inode.parent
    again, _ = ns.mkdirs("/a/b/c", NOW, parents=True, exist_ok=True)
    assert again.id == inode.id
    with pytest.raises(errors.AlreadyExists):
        ns.mkdirs("/a/b/c", NOW)
    with pytest.raises(errors.NotFound):
        ns.mkdirs("/x/y", NOW)


def test_create_stat_list_with_attrs(ns):
    ns.mkdirs("/d", NOW)
    for name in ("b", "a", "c"):
        ns.create(f"/d/{name}", NOW)
    entries, more = ns.list("/d", with_attrs=True)
    assert [e.name for e in entries] == ["a", "b", "c"] and not more
    assert all(e.inode.type == types_pb2.INODE_FILE and e.inode.id == e.inode_id for e in entries)
    page, more = ns.list("/d", limit=2)
    assert [e.name for e in page] == ["a", "b"] and more
    page, more = ns.list("/d", start_after="b", limit=2)
    assert [e.name for e in page] == ["c"] and not more


def test_parent_mtime_updated_on_entry_changes(ns):
    """At most once per limits.dir_times_granularity_ns (inodes.touch_dir)."""
    step = limits.dir_times_granularity_ns
    ns.mkdirs("/d", NOW)
    ns.create("/d/f", NOW + step)
    assert ns.stat("/d")[0].mtime_ns == ns.stat("/d")[0].ctime_ns == NOW + step
    ns.create("/d/g", NOW + step + 5)                 # within the granularity: not rewritten
    assert ns.stat("/d")[0].mtime_ns == NOW + step
    ns.remove("/d/f", NOW + 2 * step + 9)
    assert ns.stat("/d")[0].mtime_ns == NOW + 2 * step + 9


def test_create_exclusive_and_existing(ns):
    first, sid, _ = ns.create("/f", NOW)
    assert sid == 0
    with pytest.raises(errors.AlreadyExists):
        ns.create("/f", NOW, exclusive=True)
    again, _, _ = ns.create("/f", NOW)
    assert again.id == first.id
    ns.mkdirs("/d", NOW)
    with pytest.raises(errors.IsADirectory):
        ns.create("/d", NOW)


def test_create_with_parents(ns):
    inode, _, path = ns.create("/p/q/f", NOW, parents=True)
    assert path == "/p/q/f" and ns.stat("/p/q")[0].type == types_pb2.INODE_DIRECTORY


@pytest.mark.parametrize("bad", ["", "a/../..", "/a/\x00b", "/" + "x" * 256, "/a//b", "/..", "relative/.."])
def test_invalid_paths_change_nothing(ns, store, bad):
    ns.mkdirs("/a", NOW)
    before = dump(store)
    with pytest.raises(errors.FfsError):
        if bad in ("", "relative/.."):
            ns.create(bad, NOW)  # "" and "relative/.." both name the root: not a file
        else:
            ns.mkdirs(bad, NOW, parents=True)
    assert dump(store) == before


def test_bad_inputs_leave_store_unchanged(ns, store):
    ns.mkdirs("/d", NOW)
    ns.create("/d/f", NOW)
    ns.mkdirs("/full/sub", NOW, parents=True)
    before = dump(store)
    cases = [
        (errors.NotADirectory, lambda: ns.remove("/d/f", NOW, directory_only=True)),
        (errors.NotADirectory, lambda: ns.list("/d/f")),
        (errors.NotADirectory, lambda: ns.create("/d/f/g", NOW)),
        (errors.NotADirectory, lambda: ns.create("/d/f/g", NOW, parents=True)),  # as open(2): ENOTDIR
        (errors.NotADirectory, lambda: ns.create("/d/f/g/h", NOW, parents=True)),
        (errors.NotADirectory, lambda: ns.mkdirs("/d/f/g", NOW, parents=True)),
        (errors.IsADirectory, lambda: ns.remove("/d", NOW, file_only=True)),
        (errors.DirectoryNotEmpty, lambda: ns.remove("/full", NOW)),
        (errors.DirectoryNotEmpty, lambda: ns.remove("/full", NOW, recursive=True, directory_only=True)),
        (errors.InvalidArgument, lambda: ns.mkdirs("/n", NOW, layout=types_pb2.Layout(chunk_size=3000))),
        (errors.InvalidArgument, lambda: ns.create("/n", NOW, layout=types_pb2.Layout(chunk_size=1 << 40 >> 10 | 1))),
        (errors.InvalidArgument, lambda: ns.create("/n", NOW, layout=types_pb2.Layout(chain_table_id=99))),
        (errors.InvalidArgument, lambda: ns.mkdirs("/n", NOW, mode=0o17777)),
        (errors.InvalidPath, lambda: ns.remove("/", NOW, recursive=True)),
        (errors.InvalidPath, lambda: ns.rename("/", "/x", NOW)),
        (errors.NotFound, lambda: ns.remove("/nope", NOW)),
        (errors.NotFound, lambda: ns.rename("/nope", "/x", NOW)),
        (errors.AlreadyExists, lambda: ns.symlink("/d/f", "/x", NOW)),
        (errors.InvalidArgument, lambda: ns.symlink("/s", "", NOW)),
        (errors.InvalidArgument, lambda: ns.readlink("/d/f")),
        (errors.PermissionDenied, lambda: ns.hardlink("/d", "/d2", NOW)),
        (errors.AlreadyExists, lambda: ns.hardlink("/d/f", "/d/f", NOW)),
        (errors.InvalidArgument, lambda: ns.setattr("/d/f", NOW, mode=0o200000)),
        (errors.IsADirectory, lambda: ns.truncate("/d", 0, NOW)),
        (errors.IsADirectory, lambda: ns.open("/d", NOW, write=True)),
        (errors.AlreadyExists, lambda: ns.rename("/d", "/full", NOW, no_replace=True)),
        (errors.InvalidArgument, lambda: ns.find("/d", start_after="/elsewhere/x")),
    ]
    for expected, call in cases:
        with pytest.raises(expected):
            call()
        assert dump(store) == before, expected


def test_no_chain_table_is_a_clear_error(store, chunks):
    ns = Namespace(store, chunks)
    before = dump(store)
    with pytest.raises(errors.NoChainTable, match="chain table 1"):
        ns.create("/f", NOW)
    assert dump(store) == before


def test_symlinks_resolve_intermediate_and_last(ns):
    ns.mkdirs("/real/dir", NOW, parents=True)
    ns.create("/real/dir/f", NOW)
    ns.symlink("/ln", "/real", NOW)
    ns.symlink("/real/rel", "dir/f", NOW)
    assert ns.stat("/ln/dir/f")[1] == "/real/dir/f"
    assert ns.stat("/real/rel")[0].type == types_pb2.INODE_FILE
    link, _ = ns.stat("/real/rel", follow_symlinks=False)
    assert link.type == types_pb2.INODE_SYMLINK and ns.readlink("/real/rel") == "dir/f"
    ns.symlink("/up", "../real/dir", NOW)  # '..' at the root stays at the root
    assert ns.stat("/up/f")[1] == "/real/dir/f"


def test_symlink_loop_is_limited(ns):
    ns.symlink("/a", "/b", NOW)
    ns.symlink("/b", "/a", NOW)
    with pytest.raises(errors.InvalidArgument, match="symbolic links"):
        ns.stat("/a")
    with pytest.raises(errors.NotFound):
        ns.symlink("/dangling", "/nowhere", NOW) and ns.stat("/dangling")
    with pytest.raises(errors.NotFound):
        ns.stat("/dangling")


def test_hardlink_and_unlink_counts(ns, store):
    f, _, _ = ns.create("/f", NOW)
    linked, path = ns.hardlink("/f", "/g", NOW)
    assert linked.id == f.id and linked.nlink == 2 and path == "/g"
    ns.remove("/f", NOW)
    assert ns.stat("/g")[0].nlink == 1
    with store.read() as txn:
        assert txn.entries("gc") == 0
    ns.remove("/g", NOW)
    with store.read() as txn:
        assert txn.get_gc(f.id).nlink == 0 and txn.get_inode(f.id) is None


def test_setattr(ns):
    ns.create("/f", NOW)
    inode, _ = ns.setattr("/f", NOW + 1, mode=0o600, uid=7, gid=8, mtime_ns=42, atime_ns=43)
    assert (inode.mode, inode.uid, inode.gid, inode.mtime_ns, inode.atime_ns, inode.ctime_ns) == (
        0o600, 7, 8, 42, 43, NOW + 1)
    assert ns.stat("/f")[0].mode == 0o600


def test_rmdir_and_unlink(ns):
    ns.mkdirs("/d", NOW)
    ns.remove("/d", NOW, directory_only=True)
    with pytest.raises(errors.NotFound):
        ns.stat("/d")


def test_recursive_remove_queues_files_for_gc(ns, store):
    ids = [ns.create(p, NOW, parents=True)[0].id for p in ("/t/a", "/t/s/b", "/t/s/deeper/c")]
    ns.hardlink("/t/a", "/keep", NOW)  # a link outside the tree keeps a alive
    ns.symlink("/t/link", "/t/a", NOW)
    ns.remove("/t", NOW, recursive=True)
    with pytest.raises(FileNotFoundError):
        ns.stat("/t")                  # gone at once: the tree waits in the trash (trash.py)
    ns.mkdirs("/t", NOW)               # and its name is free
    assert empty_trash(store, NOW) == 7    # t, s, deeper, a, b, c, link
    with store.read() as txn:
        gc_ids = {int.from_bytes(k, "big") for k, _ in txn.scan("gc")}
        assert gc_ids == set(ids[1:])
        assert txn.entries("inodes") == 4  # root + trash + a (via /keep) + the new /t
        assert txn.entries("dentries") == 2
    assert empty_trash(store, NOW) == 0
    assert ns.stat("/keep")[0].nlink == 1


def test_find_pages_resume_in_order(ns):
    for path in ("/r/a/x", "/r/a/y", "/r/a-b", "/r/b/c/d", "/r/e"):
        ns.create(path, NOW, parents=True)
    every, more = ns.find("/r")
    assert not more
    assert [e.path for e in every] == ["/r/a/x", "/r/a/y", "/r/a-b", "/r/b/c/d", "/r/e"]
    with_dirs, _ = ns.find("/r", withdirs=True)
    assert [e.path for e in with_dirs] == ["/r/a", "/r/a/x", "/r/a/y", "/r/a-b", "/r/b", "/r/b/c",
                                          "/r/b/c/d", "/r/e"]
    for page_size in (1, 2, 3):
        for dirs in (False, True):
            seen, token = [], ""
            while True:
                page, more = ns.find("/r", withdirs=dirs, limit=page_size, start_after=token)
                seen += [e.path for e in page]
                if not more:
                    break
                token = page[-1].path
            assert seen == [e.path for e in (with_dirs if dirs else every)]
    shallow, _ = ns.find("/r", maxdepth=1, withdirs=True)
    assert [e.path for e in shallow] == ["/r/a", "/r/a-b", "/r/b", "/r/e"]
    assert [e.path for e in ns.find("/r/e")[0]] == ["/r/e"]


def test_batch_stat_reports_per_item_errors(ns):
    ns.create("/f", NOW)
    results, more = ns.batch_stat(["/f", "/missing", "/f/x", "bad\x00"])
    assert not more
    assert results[0].inode.type == types_pb2.INODE_FILE and not results[0].error
    assert [r.error for r in results[1:]] == ["NotFound", "NotADirectory", "InvalidPath"]
    assert all(r.message for r in results[1:])


def test_statfs_counts(ns, store):
    ns.create("/f", NOW)
    g = ns.create("/g", NOW)[0]
    ns.remove("/g", NOW)
    reply = ns.statfs()
    assert (reply.inodes, reply.gc_pending) == (2, 1)
    # Above every id meta gave (fsck relies on it); exactly the next one on LMDB, the end of the
    # range this server reserved on etcd.
    assert reply.next_inode_id > g.id, "the next id meta hands out, above every id it gave (fsck)"
    if store.engine == "lmdb":
        assert reply.next_inode_id == g.id + 1
