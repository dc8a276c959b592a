"""File operations that involve write sessions or storage: create, open, close,
sync, truncate, copy.

Write sessions belong to a client id (the holder): only the holder closes or
syncs one, and it keeps them while it renews its lease (leases.py); the
sessions of a client that stopped renewing are ended as its Close would.

File length (3FS's rule): while a file is open for writing its stored length
is a hint. On close of the last write session, and on sync, the service asks
storage for the extent of the last chunk and stores
``max(stored length, storage extent, client hint)``. A truncate bumps
``truncate_version``; a session opened before a truncate has its hint ignored
(it may describe bytes the truncate cut away). Storage is asked outside the
write lock; the write transaction then re-checks ``truncate_version`` and
retries when a truncate slipped in between.

O_TRUNC on a file with nlink == 1 and no write session replaces the inode
(new id under the same dentry, old inode to the GC queue) in one transaction,
so it is O(1) whatever the file size; otherwise storage is truncated first and
the open retried.

Operations that talk to storage span several transactions; each checks for a
recorded outcome of its ``request_id`` first and records its own in the last
transaction (``_once``, idempotency.py), so the storage steps of a retried
call are not repeated once the call has completed.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Callable, TypeVar

from fireflyfs.common import limits
from fireflyfs.common.errors import (AlreadyExists, FfsError, InvalidArgument, IsADirectory,
                                     TooLarge, Unavailable)
from fireflyfs.common.layout import Layout
from fireflyfs.common.paths import path_components
from fireflyfs.proto import types_pb2

from . import permissions
from .chunk_store import ChunkStore
from .copy import CopyOps
from .idempotency import IdemKey, IdemTable, Replayed, replay
from .inline import AGAIN, MOVE_ATTEMPTS_MAX, InlineOps, NeedsMove
from .layouts import allocate_file_layout
from .leases import LeaseTable
from .inodes import (check_mode, close_session, held_session, inline_data, inline_record, load_file_any,
                      make_parent_dirs, new_inode, open_session, release_link, store_file_any, touch_dir)
from .resolve import DIR, FILE, as_path, resolve, resolve_parent, walk
from .store import Store, Txn

log = logging.getLogger(__name__)

LENGTH_SETTLE_ATTEMPTS_MAX = 3
CHUNK_INDEX_MAX = (1 << 32) - 1

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _NeedsTruncate:
    inode_id: int


def layout_of(inode: types_pb2.Inode) -> Layout:
    return Layout.from_proto(inode.layout)


def check_length(length: int, inode: types_pb2.Inode, what: str) -> int:
    """A file length (truncate target, close/sync hint) the inode's layout can hold."""
    if length < 0:
        raise InvalidArgument(f"negative {what} {length}")
    if inode.layout.chunk_size and length // inode.layout.chunk_size > CHUNK_INDEX_MAX:
        raise TooLarge(f"{what} {length} exceeds the largest file of this layout "
                       f"({(CHUNK_INDEX_MAX + 1) * inode.layout.chunk_size} bytes)")
    return length


class FileOps(CopyOps, InlineOps):
    store: Store
    chunk_store: ChunkStore
    rng: random.Random
    idem: IdemTable
    leases: LeaseTable
    OWN_CLIENT_IDS: frozenset[str]   # the meta process's own session holders (copies, moves)

    def _renew_lease(self, client_id: str) -> None:
        """client_id renews, or a write open is about to record its session: its lease runs from
        now on (renewed before the session exists, so the reaper never sees it under an old one)."""
        if client_id in self.OWN_CLIENT_IDS:
            raise InvalidArgument(f"client id {client_id!r} is reserved for the metadata service")
        self.leases.renew(client_id)

    def renew_sessions(self, client_id: str, sessions: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Renew client_id's lease; of the (inode, session) pairs it believes it holds, those gone."""
        if len(sessions) > limits.renew_sessions_refs_max:
            raise TooLarge(f"{len(sessions)} sessions in one RenewSessions; "
                           f"at most {limits.renew_sessions_refs_max}")
        self._renew_lease(client_id)
        with self.store.read() as txn:
            return [(inode_id, session_id) for inode_id, session_id in sessions
                    if not self._holds(txn, inode_id, session_id, client_id)]

    @staticmethod
    def _holds(txn: Txn, inode_id: int, session_id: int, client_id: str) -> bool:
        try:
            held_session(txn, inode_id, session_id, client_id)
        except FfsError:
            return False
        return True

    # -- idempotency -----------------------------------------------------------
    def _once(self, key: IdemKey | None, run: Callable[[], T], look_first: bool = True) -> T:
        """Run a mutation unless key's request already ran; record a failure that would repeat.

        look_first=False skips the lookup before running: for a mutation whose
        first transaction checks the key itself before any storage step.
        """
        if key is None:
            return run()
        if look_first:
            with self.store.read() as txn:
                record = self.idem.lookup(txn, key)
            if record is not None:
                return replay(record)
        try:
            return run()
        except Replayed as done:   # a concurrent duplicate committed first
            return replay(done.record)
        except FfsError as exc:
            if key is not None:
                # A duplicate (the client's retry after a lost reply, maybe on another meta server)
                # may have committed between the lookup above and the failure: its outcome counts.
                with self.store.read() as txn:
                    record = self.idem.lookup(txn, key)
                if record is not None:
                    return replay(record)
            self.idem.record_failure(self.store, key, exc)
            raise

    def _recorded(self, txn: Txn, key: IdemKey | None, result: T) -> T:
        """Record result in txn (the mutation's own) and return it."""
        self.idem.record(txn, key, result)
        return result

    # -- create / open -------------------------------------------------------
    def create(self, path: str, now_ns: int, mode: int = 0, exclusive: bool = False, truncate: bool = False,
               parents: bool = False, open_for_write: bool = False, client_id: str = "",
               layout: types_pb2.Layout | None = None, request_id: str = "") -> tuple[types_pb2.Inode, int, str]:
        """Create (or open an existing) file; (inode, write session id or 0, canonical path)."""
        key = self.idem.key("Create", request_id, now_ns)
        if open_for_write:
            self._renew_lease(client_id)
        args = (path, now_ns, check_mode(mode or 0o644), exclusive, parents, open_for_write, client_id, layout,
                key)

        def run():
            return self._moving_inline(lambda: self._create_or_truncate(args, truncate, now_ns))

        # _create_txn checks the key before a truncate or move can touch storage.
        return self._once(key, run, look_first=False)

    def _create_or_truncate(self, args, truncate, now_ns):
        result = self._create_txn(*args, truncate)
        if isinstance(result, _NeedsTruncate):
            self._truncate_inode(result.inode_id, 0, now_ns)
            result = self._create_txn(*args, False)
        return result

    def _moving_inline(self, operation: Callable[[], T]) -> T:
        """Run operation; when it meets an inline file that must be in chunks, move it and run again."""
        for _ in range(MOVE_ATTEMPTS_MAX):
            try:
                return operation()
            except NeedsMove as needs:
                self._move_inline_to_chunks(needs.inode_id)
        raise Unavailable("files kept turning inline while this operation moved them to chunks; retry")

    def _create_txn(self, path, now_ns, mode, exclusive, parents, open_for_write, client_id, layout, key,
                    truncate):
        components = path_components(path)
        if not components:
            raise IsADirectory("/ is a directory")
        name = components[-1]
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            if parents:
                parent, parent_components = make_parent_dirs(txn, components[:-1], now_ns, path)
            else:
                parent, parent_components, _ = resolve_parent(txn, path, "create")
            if txn.get_dentry(parent.id, name, likely_absent=True) is not None:
                if exclusive:
                    raise AlreadyExists(f"{path} already exists")
                inode, resolved = walk(txn, parent_components + [name], True, path)
                result = self._open_existing(txn, inode, resolved, open_for_write, truncate, client_id,
                                             now_ns, path)
                return result if isinstance(result, _NeedsTruncate) else self._recorded(txn, key, result)
            permissions.require_entry_change(parent, as_path(parent_components), None, path, "creating")
            inode = new_inode(txn, FILE, mode, now_ns, parent,
                              layout=allocate_file_layout(txn, parent.layout, layout, self.rng))
            session_id = open_session(txn, inode, client_id, now_ns) if open_for_write else 0
            txn.put_inode(inode)
            txn.put_dentry(parent.id, name, inode.id, FILE)
            touch_dir(txn, parent, now_ns)
            return self._recorded(txn, key, (inode, session_id, as_path(parent_components + [name])))

        return self.store.transact(mutate)

    def open(self, path: str, now_ns: int, write: bool = False, truncate: bool = False,
             client_id: str = "", request_id: str = "") -> tuple[types_pb2.Inode, int, str]:
        """Open a file; a write open records a session. (inode, session id or 0, path)."""
        key = self.idem.key("Open", request_id, now_ns) if (write or truncate) else None
        if write:
            self._renew_lease(client_id)

        def attempt():
            result = self._open_txn(path, now_ns, write, truncate, client_id, key)
            if isinstance(result, _NeedsTruncate):
                self._truncate_inode(result.inode_id, 0, now_ns)
                result = self._open_txn(path, now_ns, write, False, client_id, key)
            return result

        return self._once(key, lambda: self._moving_inline(attempt))

    def _open_txn(self, path, now_ns, write, truncate, client_id, key):
        if not (write or truncate):
            with self.store.read() as txn:
                inode, components = resolve(txn, path, True)
                self._check_file(inode, path)
                permissions.require(inode, permissions.READ, as_path(components), "opening for reading")
                if inline_data(txn, inode) is not None:
                    raise NeedsMove(inode.id)   # this reader reads chunks (open_inline serves the bytes)
                return inode, 0, as_path(components)
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            inode, components = resolve(txn, path, True)
            result = self._open_existing(txn, inode, components, write, truncate, client_id, now_ns, path)
            return result if isinstance(result, _NeedsTruncate) else self._recorded(txn, key, result)

        return self.store.transact(mutate)

    def _open_existing(self, txn: Txn, inode, components, write, truncate, client_id, now_ns, path):
        self._check_file(inode, path)
        if write or truncate:
            permissions.require(inode, permissions.WRITE, as_path(components), "opening for writing")
        if truncate and (inode.length or inode.open_write_sessions):
            if inode.nlink != 1 or inode.open_write_sessions:
                return _NeedsTruncate(inode.id)
            inode = self._replace_inode(txn, inode, components, now_ns)
        session_id = 0
        if write:
            if inline_record(txn, inode.id) is not None:
                raise NeedsMove(inode.id)       # writers write chunks: the bytes go there first
            session_id = open_session(txn, inode, client_id, now_ns)
            txn.put_inode(inode)
        return inode, session_id, as_path(components)

    @staticmethod
    def _check_file(inode: types_pb2.Inode, path: str) -> None:
        if inode.type == DIR:
            raise IsADirectory(f"{path} is a directory")
        if inode.type != FILE:
            raise InvalidArgument(f"{path} is not a regular file")

    @staticmethod
    def _replace_inode(txn: Txn, old: types_pb2.Inode, components: list[str], now_ns: int) -> types_pb2.Inode:
        """O(1) O_TRUNC: a fresh empty inode under the same name; the old one goes to GC."""
        parent, _ = walk(txn, components[:-1], True)
        new = types_pb2.Inode()
        new.CopyFrom(old)
        new.id = txn.next_id("next_inode", 2)
        new.length = 0
        new.truncate_version = old.truncate_version + 1
        new.mtime_ns = new.ctime_ns = now_ns
        new.open_write_sessions = 0
        txn.put_inode(new)
        txn.put_dentry(parent.id, components[-1], new.id, FILE)
        release_link(txn, old, now_ns)
        log.debug("O_TRUNC replaced inode %d by %d", old.id, new.id)
        return new

    # -- close / sync ------------------------------------------------------
    def close(self, inode_id: int, session_id: int, now_ns: int, length_hint: int = 0,
              update_mtime: bool = False, request_id: str = "", client_id: str = "") -> types_pb2.Inode:
        """End client_id's write session; the last one makes the length exact (asks storage)."""
        key = self.idem.key("Close", request_id, now_ns)
        if session_id == 0:
            raise InvalidArgument("close needs the write session id (read-only opens are not tracked)")
        return self._once(key, lambda: self._settle_length(inode_id, session_id, client_id, now_ns, length_hint,
                                                           update_mtime, True, key))

    def sync(self, inode_id: int, session_id: int, now_ns: int, length_hint: int = 0,
             update_mtime: bool = False, client_id: str = "") -> types_pb2.Inode:
        """fsync of client_id's write session: make the stored length exact from storage, keep the
        session open. The hint counts unless the file was truncated since the session opened."""
        if session_id == 0:
            raise InvalidArgument("sync needs the write session id: only a file open for writing syncs")
        return self._settle_length(inode_id, session_id, client_id, now_ns, length_hint, update_mtime, False,
                                   None)

    def _settle_length(self, inode_id, session_id, client_id, now_ns, length_hint, update_mtime, ending,
                       key) -> types_pb2.Inode:
        """The hint counts when it was measured at the inode's current truncate version (the
        session's). ending: the session closes (only the last writer asks storage)."""
        for _ in range(LENGTH_SETTLE_ATTEMPTS_MAX):
            with self.store.read() as txn:
                seen, _ = load_file_any(txn, inode_id)
                if seen.type != FILE:
                    raise InvalidArgument(f"inode {inode_id} is not a regular file")
                held_session(txn, inode_id, session_id, client_id)
                check_length(length_hint, seen, "length hint")
                inline = inline_record(txn, inode_id) is not None
            last_writer = not ending or seen.open_write_sessions <= 1
            extent = (self.chunk_store.file_length_from_chunks(inode_id, layout_of(seen))
                      if last_writer and not inline else 0)
            def mutate(txn: Txn):
                self.idem.check(txn, key)
                inode, where = load_file_any(txn, inode_id)
                if inode.truncate_version != seen.truncate_version:
                    return AGAIN  # a truncate raced with the storage query: ask again
                if (inline_record(txn, inode_id) is not None) != inline:
                    return AGAIN  # it moved to chunks meanwhile: ask storage
                session = held_session(txn, inode_id, session_id, client_id)
                if ending:
                    close_session(txn, inode, session_id)
                # An inline file's length is its record's: no hint or extent changes it.
                hint_valid = session.truncate_version == inode.truncate_version and not inline
                inode.length = max(inode.length, extent, length_hint if hint_valid else 0)
                if update_mtime:
                    inode.mtime_ns = inode.ctime_ns = now_ns
                store_file_any(txn, inode, where)
                return self._recorded(txn, key, inode)

            settled = self.store.transact(mutate)
            if settled is not AGAIN:
                return settled
        raise Unavailable(f"inode {inode_id} was truncated concurrently; retry")

    # -- truncate / copy ---------------------------------------------------
    def truncate(self, path: str, length: int, now_ns: int, request_id: str = "") -> tuple[types_pb2.Inode, str]:
        key = self.idem.key("Truncate", request_id, now_ns)

        def run():
            with self.store.read() as txn:
                inode, components = resolve(txn, path, True)
                self._check_file(inode, path)
                permissions.require(inode, permissions.WRITE, as_path(components), "truncating")
            path_shown = as_path(components)
            return self._truncate_inode(inode.id, length, now_ns, key, lambda i: (i, path_shown))

        return self._once(key, run)

    def _truncate_inode(self, inode_id: int, length: int, now_ns: int, key: IdemKey | None = None,
                        result_of=lambda inode: inode):
        """Storage first (cut the chunk at length, drop later ones), then the inode.

        An inline file within the limit is cut in its record alone (inline.py).
        """
        with self.store.read() as txn:
            inode, _ = load_file_any(txn, inode_id)
        check_length(length, inode, "length")
        result = self._truncate_inline(inode_id, length, now_ns, key, result_of)
        if result is not None:
            return result
        self.chunk_store.truncate(inode_id, layout_of(inode), length)
        def mutate(txn: Txn):
            self.idem.check(txn, key)
            if inline_record(txn, inode_id) is not None:
                raise Unavailable(f"inode {inode_id} turned inline during truncate; retry")
            inode, where = load_file_any(txn, inode_id)
            inode.length = length
            inode.truncate_version += 1
            inode.mtime_ns = inode.ctime_ns = now_ns
            store_file_any(txn, inode, where)
            return self._recorded(txn, key, result_of(inode))

        return self.store.transact(mutate)
