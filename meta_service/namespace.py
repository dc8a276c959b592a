"""The POSIX-like namespace: each operation is one LMDB transaction, no gRPC.

Operations take parsed arguments and ``now_ns`` and return protos. A write
operation runs in one write transaction, so any error (raised before the
commit) leaves the store exactly as it was. File data operations that need
storage (open/close/sync/truncate/copy) live in ``files.FileOps``; this class
adds the tree operations and the constructor.

Every mutation takes an optional ``request_id``: the first outcome is recorded
with the mutation (idempotency.py) and a retry with the same id gets it back.
"""

from __future__ import annotations

import random

from fireflyfs.common import auth, limits
from fireflyfs.common.errors import (AlreadyExists, DirectoryNotEmpty, InvalidArgument,
                                     InvalidPath, IsADirectory, NotADirectory, NotFound,
                                     PermissionDenied, TooLarge)
from fireflyfs.common.paths import path_components
from fireflyfs.proto import meta_pb2, types_pb2

from . import permissions
from .chunk_store import ChunkStore
from .copy import COPY_CLIENT_ID
from .files import FileOps
from .idempotency import IdemTable
from .inline import MOVE_CLIENT_ID
from .leases import LeaseTable, session_holders
from .layouts import root_layout
from .replies import ReplyBudget
from .inodes import check_mode, make_dirs, new_inode, release_link, touch_dir
from .resolve import DIR, FILE, ROOT_ID, SYMLINK, as_path, load_inode, resolve, resolve_parent
from .store import Store, Txn
from .trash import TRASH_ID, move_to_trash, trash_inode


class Namespace(FileOps):
    OWN_CLIENT_IDS = frozenset((COPY_CLIENT_ID, MOVE_CLIENT_ID))

    def __init__(self, store: Store, chunk_store: ChunkStore, rng: random.Random | None = None,
                 now_ns: int = 0, idem: IdemTable | None = None, leases: LeaseTable | None = None) -> None:
        """leases: the write-session lease table (leases.py); every client holding a stored
        session starts with a full lease."""
        self.store = store
        self.chunk_store = chunk_store
        self.rng = rng or random.Random()
        self.idem = idem or IdemTable()
        self.leases = leases or LeaseTable()
        self._ensure_root(now_ns)
        self._end_orphaned_copies(now_ns)
        self._end_orphaned_moves()
        self.leases.grant_all(session_holders(store, excluded=self.OWN_CLIENT_IDS))

    def _ensure_root(self, now_ns: int) -> None:
        def mutate(txn: Txn):
            if txn.get_inode(ROOT_ID) is None:
                txn.put_inode(types_pb2.Inode(id=ROOT_ID, type=DIR, mode=0o755, nlink=2, parent=ROOT_ID,
                                              atime_ns=now_ns, mtime_ns=now_ns, ctime_ns=now_ns,
                                              crtime_ns=now_ns, layout=root_layout()))
            if txn.get_inode(TRASH_ID) is None:     # stores made before the trash get it too
                txn.put_inode(trash_inode(now_ns))

        return self.store.transact(mutate)

    # -- reads -------------------------------------------------------------
    def stat(self, path: str, follow_symlinks: bool = True) -> tuple[types_pb2.Inode, str]:
        with self.store.read() as txn:
            inode, components = resolve(txn, path, follow_symlinks)
            return inode, as_path(components)

    def batch_stat(self, paths: list[str], follow_symlinks: bool = True, inline_ok: bool = False,
                   attrs_only: bool = False) -> tuple[list[meta_pb2.StatResult], bool]:
        """Per path its inode (and canonical path) or error. BatchStat hands out read handles, so an
        inline file's bytes come along (inline_ok) or first move to chunks (inline.py); attrs_only
        asks for plain stats (neither). (results, more): more when the reply's byte budget
        (replies.py) ended it before the last path; results answer the first len(results) paths."""
        if len(paths) > limits.batch_stat_paths_max:
            raise TooLarge(f"{len(paths)} paths in one BatchStat; at most {limits.batch_stat_paths_max}")
        return self.stat_results(paths, follow_symlinks, inline_ok, attrs_only)

    def stat_inodes(self, inode_ids: list[int]) -> list[meta_pb2.InodeState]:
        """Per id: linked in the namespace, or unlinked with chunks still due to GC (fsck asks)."""
        auth.require_admin("asking after inodes by id (fsck)")
        if len(inode_ids) > limits.stat_inodes_ids_max:
            raise TooLarge(f"{len(inode_ids)} ids in one StatInodes; at most {limits.stat_inodes_ids_max}")
        states = []
        with self.store.read() as txn:
            for inode_id in inode_ids:
                live, queued = txn.get_inode(inode_id), txn.get_gc(inode_id)
                inode = live or queued
                states.append(meta_pb2.InodeState(
                    inode_id=inode_id, exists=live is not None, gc_pending=queued is not None,
                    chunk_size=inode.layout.chunk_size if inode is not None else 0))
        return states

    def inode_for_capability(self, inode_id: int, write: bool) -> types_pb2.Inode:
        """The file inode_id, when the caller may read (or write) it by its mode, owner and group.

        By id, not path: the client opened the file by path before (search was checked then),
        as a Unix process keeps reading a file it opened after its directory was closed to it.
        """
        with self.store.read() as txn:
            inode = txn.get_inode(inode_id)
            if inode is None or inode.type != FILE:     # no hint to a guesser whether the id exists
                raise PermissionDenied(f"no capability for inode {inode_id}")
            permissions.require(inode, permissions.WRITE if write else permissions.READ, f"inode {inode_id}",
                                "a capability for")
            return inode

    def readlink(self, path: str) -> str:
        with self.store.read() as txn:
            inode, _ = resolve(txn, path, follow_last=False)
            if inode.type != SYMLINK:
                raise InvalidArgument(f"{path} is not a symbolic link")
            return inode.symlink_target

    def list(self, path: str, start_after: str = "", limit: int = 0,
             with_attrs: bool = False) -> tuple[list[meta_pb2.DirEntry], bool]:
        """One page of a directory's entries in name order; (entries, more)."""
        limit = min(limit or limits.list_page_entries_default, limits.list_page_entries_max)
        with self.store.read() as txn:
            directory, components = resolve(txn, path, True)
            if directory.type != DIR:
                raise NotADirectory(f"{path} is not a directory")
            permissions.require(directory, permissions.READ, as_path(components), "listing")
            entries = []
            budget = ReplyBudget()
            for entry in txn.scan_dentries(directory.id, start_after, after=True):
                if len(entries) == limit:
                    return entries, True
                if with_attrs:
                    entry.inode.CopyFrom(load_inode(txn, entry.inode_id))
                if not budget.admits(entry):
                    return entries, True
                entries.append(entry)
            return entries, False

    def find(self, path: str, maxdepth: int = 0, withdirs: bool = False, limit: int = 0,
             start_after: str = "") -> tuple[list[meta_pb2.FoundEntry], bool]:
        """One page of a depth-first, name-ordered walk below path; (entries, more).

        The page token is the path of the last entry returned; the walk resumes
        right after it with one range scan per level, so paging is O(page).
        """
        limit = min(limit or limits.list_page_entries_default, limits.list_page_entries_max)
        with self.store.read() as txn:
            top, top_components = resolve(txn, path, True)
            if top.type == DIR:
                permissions.require(top, permissions.READ | permissions.SEARCH, as_path(top_components), "finding in")
            if top.type != DIR:
                if start_after:
                    return [], False
                return [meta_pb2.FoundEntry(path=as_path(top_components), inode=top)], False
            resume: list[str] | None = None
            if start_after:
                after = path_components(start_after)
                if after[:len(top_components)] != top_components or len(after) == len(top_components):
                    raise InvalidArgument(f"start_after {start_after!r} is not below {path!r}")
                resume = after[len(top_components):]
            entries: list[meta_pb2.FoundEntry] = []
            budget = ReplyBudget()
            for found in self._walk_tree(txn, top.id, top_components, 1, maxdepth, withdirs, resume):
                if len(entries) == limit or not budget.admits(found):
                    return entries, True
                entries.append(found)
            return entries, False

    def _walk_tree(self, txn: Txn, dir_id: int, dir_components: list[str], depth: int,
                   maxdepth: int, withdirs: bool, resume: list[str] | None):
        for entry in txn.scan_dentries(dir_id, resume[0] if resume else ""):
            components = dir_components + [entry.name]
            inode = load_inode(txn, entry.inode_id)
            # As find(1), a directory the caller may not read and search is listed but not entered.
            descend = (inode.type == DIR and (maxdepth == 0 or depth < maxdepth)
                       and permissions.may_access(auth.caller(), inode, permissions.READ | permissions.SEARCH))
            if resume and entry.name == resume[0]:
                # Emitted on an earlier page (pre-order: a directory before its children).
                rest = resume[1:] or None
                if descend:
                    yield from self._walk_tree(txn, inode.id, components, depth + 1, maxdepth,
                                               withdirs, rest)
                resume = None
                continue
            resume = None
            if inode.type != DIR or withdirs:
                yield meta_pb2.FoundEntry(path=as_path(components), inode=inode)
            if descend:
                yield from self._walk_tree(txn, inode.id, components, depth + 1, maxdepth, withdirs, None)

    def statfs(self) -> meta_pb2.StatFsReply:
        """Inode and GC counts and the inode id counter; the servicer adds capacity from the cluster manager.

        next_inode_id peeks the counter inodes.py and files.py allocate from, so
        fsck can tell chunks of ids this store never handed out (a store older than the data).
        """
        with self.store.read() as txn:   # (the trash directory itself is not counted)
            return meta_pb2.StatFsReply(inodes=txn.entries("inodes") - 1, gc_pending=txn.entries("gc"),
                                        next_inode_id=txn.get_counter("next_inode", 2))

    # -- directory entries -------------------------------------------------
    def mkdirs(self, path: str, now_ns: int, mode: int = 0, parents: bool = False, exist_ok: bool = False,
               layout: types_pb2.Layout | None = None, request_id: str = "") -> tuple[types_pb2.Inode, str]:
        key = self.idem.key("Mkdirs", request_id, now_ns)

        def run():
            components = path_components(path)
            def mutate(txn: Txn):
                self.idem.check(txn, key)
                inode, done = make_dirs(txn, components, now_ns, check_mode(mode or 0o755), parents,
                                        exist_ok, layout, path)
                return self._recorded(txn, key, (inode, as_path(done)))

            return self.store.transact(mutate)

        return self._once(key, run)

    def symlink(self, path: str, target: str, now_ns: int,
                request_id: str = "") -> tuple[types_pb2.Inode, str]:
        key = self.idem.key("Symlink", request_id, now_ns)
        return self._once(key, lambda: self._symlink(path, target, now_ns, key))

    def _symlink(self, path, target, now_ns, key) -> tuple[types_pb2.Inode, str]:
        if not target or "\x00" in target:
            raise InvalidArgument(f"invalid symlink target {target!r}")
        if len(target.encode("utf-8", "surrogatepass")) > limits.symlink_target_bytes_max:
            raise InvalidArgument(f"symlink target longer than {limits.symlink_target_bytes_max} bytes")
        def mutate(txn: Txn) -> tuple[types_pb2.Inode, str]:
            self.idem.check(txn, key)
            parent, parent_components, name = resolve_parent(txn, path, "create a symlink at")
            if txn.get_dentry(parent.id, name) is not None:
                raise AlreadyExists(f"{path} already exists")
            permissions.require_entry_change(parent, as_path(parent_components), None, path, "creating a symlink at")
            inode = new_inode(txn, SYMLINK, 0o777, now_ns, parent, symlink_target=target,
                              length=len(target.encode("utf-8", "surrogatepass")))
            txn.put_inode(inode)
            txn.put_dentry(parent.id, name, inode.id, SYMLINK)
            touch_dir(txn, parent, now_ns)
            return self._recorded(txn, key, (inode, as_path(parent_components + [name])))

        return self.store.transact(mutate)

    def hardlink(self, src: str, dst: str, now_ns: int, request_id: str = "") -> tuple[types_pb2.Inode, str]:
        key = self.idem.key("HardLink", request_id, now_ns)
        return self._once(key, lambda: self._hardlink(src, dst, now_ns, key))

    def _hardlink(self, src, dst, now_ns, key) -> tuple[types_pb2.Inode, str]:
        def mutate(txn: Txn) -> tuple[types_pb2.Inode, str]:
            self.idem.check(txn, key)
            inode, _ = resolve(txn, src, follow_last=False)
            if inode.type == DIR:
                raise PermissionDenied(f"{src} is a directory; hard links to directories are not allowed")
            permissions.require_link_source(inode, src)
            parent, parent_components, name = resolve_parent(txn, dst, "link at")
            if txn.get_dentry(parent.id, name) is not None:
                raise AlreadyExists(f"{dst} already exists")
            permissions.require_entry_change(parent, as_path(parent_components), None, dst, "linking at")
            inode.nlink += 1
            inode.ctime_ns = now_ns
            txn.put_inode(inode)
            txn.put_dentry(parent.id, name, inode.id, inode.type)
            touch_dir(txn, parent, now_ns)
            return self._recorded(txn, key, (inode, as_path(parent_components + [name])))

        return self.store.transact(mutate)

    def remove(self, path: str, now_ns: int, recursive: bool = False, directory_only: bool = False,
               file_only: bool = False, request_id: str = "") -> None:
        """unlink / rmdir / rm -r, each one transaction; unlinked files go to the GC queue."""
        key = self.idem.key("Remove", request_id, now_ns)
        return self._once(key, lambda: self._remove(path, now_ns, recursive, directory_only, file_only, key))

    def _remove(self, path, now_ns, recursive, directory_only, file_only, key) -> None:
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            parent, parent_components, name = resolve_parent(txn, path, "remove")
            entry = txn.get_dentry(parent.id, name)
            if entry is None:
                raise NotFound(f"{path}: no such file or directory")
            inode = load_inode(txn, entry.inode_id)
            permissions.require_entry_change(parent, as_path(parent_components), inode, path, "removing")
            if inode.type == DIR:
                if file_only:
                    raise IsADirectory(f"{path} is a directory")
                if txn.has_children(inode.id):
                    if not recursive or directory_only:
                        raise DirectoryNotEmpty(f"{path} is not empty")
                    if permissions.checking():
                        self._require_removable_tree(txn, inode, as_path(parent_components + [name]))
                    # Bounded: the tree moves to the trash now; the GC pass empties it (trash.py).
                    move_to_trash(txn, parent.id, name, inode, now_ns)
                    touch_dir(txn, parent, now_ns)
                    self.idem.record(txn, key, None)
                    return
                txn.delete_inode(inode.id)
            else:
                if directory_only:
                    raise NotADirectory(f"{path} is not a directory")
                release_link(txn, inode, now_ns)
            txn.delete_dentry(parent.id, name)
            touch_dir(txn, parent, now_ns)
            self.idem.record(txn, key, None)

        return self.store.transact(mutate)

    def rename(self, src: str, dst: str, now_ns: int, no_replace: bool = False, request_id: str = "") -> None:
        """Atomic rename, POSIX rules for an existing target; one transaction."""
        key = self.idem.key("Rename", request_id, now_ns)
        return self._once(key, lambda: self._rename(src, dst, now_ns, no_replace, key))

    def _rename(self, src, dst, now_ns, no_replace, key) -> None:
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            src_parent, src_parent_components, src_name = resolve_parent(txn, src, "rename")
            dst_parent, dst_parent_components, dst_name = resolve_parent(txn, dst, "rename onto")
            entry = txn.get_dentry(src_parent.id, src_name)
            if entry is None:
                raise NotFound(f"{src}: no such file or directory")
            moved = load_inode(txn, entry.inode_id)
            permissions.require_entry_change(src_parent, as_path(src_parent_components), moved, src,
                                             "renaming out of")
            existing = txn.get_dentry(dst_parent.id, dst_name)
            permissions.require_entry_change(dst_parent, as_path(dst_parent_components),
                                             load_inode(txn, existing.inode_id) if existing else None, dst,
                                             "renaming into")
            if moved.type == DIR and src_parent.id != dst_parent.id:
                # Its '..' entry changes: write permission on the directory itself, as Linux wants.
                permissions.require(moved, permissions.WRITE, src, "moving a directory to another parent")
            if moved.type == DIR:
                self._check_not_descendant(txn, moved.id, dst_parent, src, dst)
            target_entry = txn.get_dentry(dst_parent.id, dst_name)
            if target_entry is not None:
                if target_entry.inode_id == moved.id:
                    self.idem.record(txn, key, None)
                    return  # same file (or hard links to it): POSIX says do nothing
                if no_replace:
                    raise AlreadyExists(f"{dst} already exists")
                target = load_inode(txn, target_entry.inode_id)
                if moved.type == DIR and target.type != DIR:
                    raise NotADirectory(f"cannot replace non-directory {dst} with directory {src}")
                if moved.type != DIR and target.type == DIR:
                    raise IsADirectory(f"cannot replace directory {dst} with non-directory {src}")
                if target.type == DIR:
                    if txn.has_children(target.id):
                        raise DirectoryNotEmpty(f"{dst} is not empty")
                    txn.delete_inode(target.id)
                else:
                    release_link(txn, target, now_ns)
            txn.delete_dentry(src_parent.id, src_name)
            txn.put_dentry(dst_parent.id, dst_name, moved.id, moved.type)
            moved.ctime_ns = now_ns
            if moved.type == DIR:
                moved.parent = dst_parent.id
            txn.put_inode(moved)
            if src_parent.id == dst_parent.id:
                touch_dir(txn, dst_parent, now_ns)
            else:
                touch_dir(txn, load_inode(txn, src_parent.id), now_ns)
                touch_dir(txn, load_inode(txn, dst_parent.id), now_ns)
            self.idem.record(txn, key, None)

        return self.store.transact(mutate)

    @staticmethod
    def _require_removable_tree(txn: Txn, top: types_pb2.Inode, top_path: str) -> None:
        """rm -r by a user: write and search on every directory of the tree (and the sticky
        rule at each level), as unlinking each entry in turn would need."""
        pending = [(top, top_path)]
        while pending:
            directory, path = pending.pop()
            for entry in txn.scan_dentries(directory.id):
                child = load_inode(txn, entry.inode_id)
                child_path = f"{path}/{entry.name}"
                permissions.require_entry_change(directory, path, child, child_path, "removing")
                if child.type == DIR:
                    pending.append((child, child_path))

    @staticmethod
    def _check_not_descendant(txn: Txn, dir_id: int, dst_parent: types_pb2.Inode, src: str, dst: str) -> None:
        """Walk dst's ancestors through `parent`; meeting dir_id means a loop."""
        current = dst_parent
        for _ in range(limits.path_depth_max + 2):
            if current.id == dir_id:
                raise InvalidArgument(f"cannot move {src} under itself ({dst})")
            if current.id == ROOT_ID:
                return
            current = load_inode(txn, current.parent)
        raise InvalidPath(f"{dst}: directory tree deeper than {limits.path_depth_max}")

    def setattr(self, path: str, now_ns: int, follow_symlinks: bool = True, mode: int | None = None,
                uid: int | None = None, gid: int | None = None, mtime_ns: int | None = None,
                atime_ns: int | None = None, request_id: str = "") -> tuple[types_pb2.Inode, str]:
        key = self.idem.key("SetAttr", request_id, now_ns)
        return self._once(key, lambda: self._setattr(path, now_ns, follow_symlinks, mode, uid, gid,
                                                     mtime_ns, atime_ns, key))

    def _setattr(self, path, now_ns, follow_symlinks, mode, uid, gid, mtime_ns, atime_ns,
                 key) -> tuple[types_pb2.Inode, str]:
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            inode, components = resolve(txn, path, follow_symlinks)
            shown = as_path(components)
            if mode is not None:
                inode.mode = permissions.checked_mode(inode, check_mode(mode), shown)
            if uid is not None or gid is not None:
                permissions.require_chown(inode, uid, gid, shown)
            if mtime_ns is not None or atime_ns is not None:
                permissions.require_times(inode, shown)
            if uid is not None:
                inode.uid = uid
            if gid is not None:
                inode.gid = gid
            if mtime_ns is not None:
                inode.mtime_ns = mtime_ns
            if atime_ns is not None:
                inode.atime_ns = atime_ns
            inode.ctime_ns = now_ns
            txn.put_inode(inode)
            return self._recorded(txn, key, (inode, as_path(components)))

        return self.store.transact(mutate)


__all__ = ["Namespace", "FILE", "DIR", "SYMLINK", "ROOT_ID"]
