"""Rename: POSIX replacement rules, loop rejection, atomicity (one txn)."""

from __future__ import annotations

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.proto import types_pb2

from .conftest import dump

NOW = 1_000


def test_rename_file_and_directory(ns):
    ns.create("/a/f", NOW, parents=True)
    ns.mkdirs("/b", NOW)
    ns.rename("/a/f", "/b/g", NOW + 1)
    assert ns.stat("/b/g")[0].type == types_pb2.INODE_FILE
    with pytest.raises(errors.NotFound):
        ns.stat("/a/f")
    ns.rename("/a", "/b/a2", NOW + limits.dir_times_granularity_ns)
    moved, _ = ns.stat("/b/a2")
    assert moved.parent == ns.stat("/b")[0].id and moved.ctime_ns == NOW + limits.dir_times_granularity_ns
    assert ns.stat("/b")[0].mtime_ns == NOW + limits.dir_times_granularity_ns


def test_rename_into_own_descendant_is_rejected(ns, store):
    ns.mkdirs("/a/b/c", NOW, parents=True)
    before = dump(store)
    for dst in ("/a/b/c/a", "/a/x", "/a/b/x"):
        with pytest.raises(errors.InvalidArgument, match="under itself"):
            ns.rename("/a", dst, NOW)
    ns.symlink("/via", "/a/b", NOW)
    before = dump(store)
    with pytest.raises(errors.InvalidArgument):
        ns.rename("/a", "/via/inside", NOW)  # the loop hides behind a symlink
    assert dump(store) == before


def test_rename_replaces_file_target_and_queues_it(ns, store):
    src, _, _ = ns.create("/src", NOW)
    dst, _, _ = ns.create("/dst", NOW)
    ns.rename("/src", "/dst", NOW)
    assert ns.stat("/dst")[0].id == src.id
    with store.read() as txn:
        assert txn.get_gc(dst.id) is not None and txn.get_inode(dst.id) is None


def test_rename_over_hard_link_of_itself_is_a_no_op(ns, store):
    ns.create("/f", NOW)
    ns.hardlink("/f", "/g", NOW)
    before = dump(store)
    ns.rename("/f", "/g", NOW + 5)
    assert dump(store) == before


def test_rename_type_mismatch_and_non_empty(ns, store):
    ns.mkdirs("/d1", NOW)
    ns.mkdirs("/d2/x", NOW, parents=True)
    ns.mkdirs("/empty", NOW)
    ns.create("/f", NOW)
    before = dump(store)
    with pytest.raises(errors.DirectoryNotEmpty):
        ns.rename("/d1", "/d2", NOW)
    with pytest.raises(errors.IsADirectory):
        ns.rename("/f", "/empty", NOW)
    with pytest.raises(errors.NotADirectory):
        ns.rename("/d1", "/f", NOW)
    with pytest.raises(errors.AlreadyExists):
        ns.rename("/f", "/d1", NOW, no_replace=True)
    assert dump(store) == before
    ns.rename("/d1", "/empty", NOW)  # a directory may replace an empty directory
    assert ns.stat("/empty")[0].id != 0
    with pytest.raises(errors.NotFound):
        ns.stat("/d1")


def test_rename_is_atomic_on_failure(ns, store, monkeypatch):
    """An error after the first writes of the txn rolls all of them back."""
    ns.create("/a", NOW)
    ns.mkdirs("/b", NOW)
    before = dump(store)
    from fireflyfs.meta_service import namespace as namespace_module

    def broken_touch(txn, directory, now_ns):
        raise RuntimeError("crash in the middle of rename")

    monkeypatch.setattr(namespace_module, "touch_dir", broken_touch)
    with pytest.raises(RuntimeError):
        ns.rename("/a", "/b/a", NOW)
    assert dump(store) == before
