"""Server-side file copy that never leaves a half-written destination.

Why not "create dst, copy chunks, close": a copy failing (or the meta process
dying) mid-way would leave dst present with part of the data. Instead the copy
goes into a fresh *unlinked* inode: it is born in the GC queue with a write
session held by the copier (so GC leaves it alone and fsck sees it as
gc-pending, not orphaned), the chunks are copied into it, and one final
transaction links it at dst (replacing a file there, as rename would) and ends
the session. On failure the session is closed and GC reclaims the chunks. A
meta process that died mid-copy leaves such sessions behind; the next start
ends them (``end_orphaned_copies``), so GC reclaims those too.

Missing parent directories (``parents``) are made up front, as ``mkdir -p``
would; only the file itself appears atomically. Copying onto an existing file
replaces its name's inode (the old one goes to GC) rather than writing into it,
so other hard links of the old file keep the old bytes.
"""

from __future__ import annotations

import logging

from fireflyfs.common.errors import Internal, InvalidArgument, IsADirectory
from fireflyfs.common.layout import Layout
from fireflyfs.common.paths import path_components
from fireflyfs.proto import meta_pb2, types_pb2

from . import permissions
from .idempotency import IdemKey
from .layouts import allocate_file_layout
from .inodes import (close_session, end_sessions_of_client, inline_data, make_parent_dirs, new_inode, open_session,
                      put_inline_record, release_link, touch_dir)
from .resolve import DIR, FILE, as_path, load_inode, resolve, resolve_parent, walk
from .store import Txn, session_key, u64_key

log = logging.getLogger(__name__)

COPY_CLIENT_ID = "meta-copy"   # the write-session owner of in-flight copies


class CopyOps:
    """Mixed into Namespace (uses its store, chunk_store, rng, idem, _once, _recorded, _check_file)."""

    def copy_file(self, src: str, dst: str, now_ns: int, parents: bool = False,
                  request_id: str = "") -> tuple[types_pb2.Inode, str]:
        """Copy src's bytes into a new file at dst (replacing a file there); (inode, path)."""
        key = self.idem.key("CopyFile", request_id, now_ns)
        return self._once(key, lambda: self._copy(src, dst, now_ns, parents, key))

    def _copy(self, src: str, dst: str, now_ns: int, parents: bool, key: IdemKey | None):
        source, temp, session_id, dst_components, inline = self._copy_begin(src, dst, now_ns, parents)
        try:
            if inline is None:
                layout = Layout.from_proto(source.layout)
                # Past the source's last stored chunk is one hole: reading it would fetch zeros for
                # nothing (a file truncated up to 1 TiB held a meta worker for hours). dst's length
                # is still source.length (_copy_link).
                end = min(source.length, self.chunk_store.file_length_from_chunks(source.id, layout))
                self.chunk_store.copy_file_chunks(source.id, layout, end, temp.id,
                                                  Layout.from_proto(temp.layout))
            return self._copy_link(temp.id, session_id, source, dst_components, now_ns, key, inline)
        except BaseException:
            self._copy_abandon(temp.id, session_id)
            raise

    def _copy_begin(self, src: str, dst: str, now_ns: int, parents: bool):
        """Validate, make parents, and create the unlinked target inode with a session.

        An inline source's bytes are read here, in the same snapshot as its inode.
        """
        components = path_components(dst)
        if not components:
            raise IsADirectory("/ is a directory")
        def mutate(txn: Txn):
            source, source_components = resolve(txn, src, True)
            self._check_file(source, src)
            permissions.require(source, permissions.READ, as_path(source_components), "copying")
            if parents:
                parent, parent_components = make_parent_dirs(txn, components[:-1], now_ns, dst)
            else:
                parent, parent_components, _ = resolve_parent(txn, dst, "copy to")
            dst_components = parent_components + [components[-1]]
            existing = None
            if txn.get_dentry(parent.id, components[-1]) is not None:
                existing, dst_components = walk(txn, dst_components, True, dst)   # through a symlink
                self._check_replaceable(existing, source, src, dst)
                parent, _ = walk(txn, dst_components[:-1], True, dst)
            permissions.require_entry_change(parent, as_path(dst_components[:-1]), existing, dst, "copying to")
            temp = new_inode(txn, FILE, source.mode & 0o777, now_ns, parent,
                             layout=allocate_file_layout(txn, parent.layout, None, self.rng))
            temp.nlink = 0
            session_id = open_session(txn, temp, COPY_CLIENT_ID, now_ns)
            txn.put_msg("gc", u64_key(temp.id), temp)
            return source, temp, session_id, dst_components, inline_data(txn, source)

        return self.store.transact(mutate)

    @staticmethod
    def _check_replaceable(existing: types_pb2.Inode, source: types_pb2.Inode, src: str, dst: str) -> None:
        if existing.type == DIR:
            raise IsADirectory(f"{dst} is a directory")
        if existing.id == source.id:
            raise InvalidArgument(f"{src} and {dst} are the same file")

    def _copy_link(self, temp_id: int, session_id: int, source: types_pb2.Inode, dst_components: list[str],
                   now_ns: int, key: IdemKey | None, inline: bytes | None = None) -> tuple[types_pb2.Inode, str]:
        """One transaction: the finished copy takes dst's name (with the inline bytes of an inline
        source); the session ends."""
        dst = as_path(dst_components)
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            temp = txn.get_gc(temp_id)
            if temp is None:
                raise Internal(f"copy target inode {temp_id} vanished from the GC queue")
            parent, parent_components, name = resolve_parent(txn, dst, "copy to")
            entry = txn.get_dentry(parent.id, name)
            if entry is not None:
                existing = load_inode(txn, entry.inode_id)
                self._check_replaceable(existing, source, as_path(dst_components), dst)
                release_link(txn, existing, now_ns)
            close_session(txn, temp, session_id)
            txn.delete("gc", u64_key(temp.id))
            temp.nlink = 1
            temp.length = source.length
            temp.mtime_ns = temp.ctime_ns = now_ns
            if inline is not None:
                put_inline_record(txn, temp.id, inline)
            txn.put_inode(temp)
            txn.put_dentry(parent.id, name, temp.id, FILE)
            touch_dir(txn, parent, now_ns)
            return self._recorded(txn, key, (temp, as_path(parent_components + [name])))

        return self.store.transact(mutate)

    def _copy_abandon(self, temp_id: int, session_id: int) -> None:
        """After a failed copy: end the session so GC reclaims the partial chunks."""
        try:
            def mutate(txn: Txn):
                temp = txn.get_gc(temp_id)
                if temp is not None and txn.get_msg("sessions", session_key(temp_id, session_id),
                                                    meta_pb2.FileSession) is not None:
                    close_session(txn, temp, session_id)
                    txn.put_msg("gc", u64_key(temp_id), temp)

            return self.store.transact(mutate)
        except Exception:  # the copy's own error is the one to report
            log.exception("ending the session of abandoned copy inode %d", temp_id)

    def _end_orphaned_copies(self, now_ns: int) -> int:
        """At start: copies whose meta process died hold sessions forever; end them (GC then reclaims)."""
        ended = end_sessions_of_client(self.store, COPY_CLIENT_ID)
        if ended:
            log.info("ended %d write sessions of copies interrupted by a restart", ended)
        return ended

