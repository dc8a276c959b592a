"""Inline files: a small file's whole content kept in the metadata store.

Why: through storage, writing a 1 KiB file costs Meta.Create, Storage.Write and
Meta.Close (and Close asks storage for the last chunk): three client round
trips and a fourth from the meta process. An inline file is one Meta.Create
whose bytes go into the ``inline`` DB in the create's own LMDB transaction, so
the write is exactly as durable as any other metadata commit (fdatasync'd
before the reply by default, docs/durability.md). A read open
that says ``inline_ok`` gets the bytes in its reply: reading costs no storage
RPC either. The limit is ``limits.inline_data_bytes_max``.

Rules, which keep "a file's bytes are exactly its inline record, or else its
chunks" true at every commit:

- A file is inline when an ``inline`` record exists for its inode. The record
  is never empty and ``inode.length`` equals its data length; empty files are
  never inline. A record's first byte is its state: ``PURE`` (no chunk of
  this inode was ever written) or ``MOVING`` (a move to chunks started, so
  chunks may exist; the record stays authoritative until the move commits).
- Only Create(inline) makes one, on a fresh inode id (a new file, or an
  existing file replaced as O_TRUNC does), so a new inline file has no chunks.
  A file that cannot be replaced in O(1) (hard links, open writers) is refused
  and the client writes it through storage.
- Before anything writes or reads chunks of an inline file, its bytes move to
  chunks (``_move_inline_to_chunks``): a write open, a truncate past the
  limit, and a read open or BatchStat from a client that does not serve
  inline bytes (``inline_ok`` unset: chunk readers that predate inline files
  still read the right bytes). The move: one transaction marks the record
  MOVING and opens a write session owned by ``MOVE_CLIENT_ID`` (so GC defers,
  as for copies); the bytes are written to chunks (after cutting storage to 0
  when the record was already MOVING: a move cut short may have left chunks); one transaction drops the record
  and ends the session, if the record still holds those bytes (else it goes
  again). Moves of one inode are serialized by a lock in this process (the
  only writer of the store); a restart ends the sessions of moves it
  interrupted (``_end_orphaned_moves``), and the record, still MOVING, is
  moved again by the next operation that needs chunks.
- Truncate within the limit edits a PURE record (zero-extended; to 0 drops
  it). Unlink drops the record with the inode: a PURE one needs no GC pass, a
  MOVING one goes to the GC queue like any file with chunks. Copy copies the
  record. Close/sync never change an inline file's length.
"""

from __future__ import annotations

import logging
import threading

from fireflyfs.common import capability, limits
from fireflyfs.common.errors import AlreadyExists, FfsError, IsADirectory, TooLarge, Unavailable, error_name
from fireflyfs.common.layout import Layout
from fireflyfs.common.paths import path_components
from fireflyfs.proto import meta_pb2, types_pb2

from . import permissions
from .idempotency import IdemKey
from .layouts import allocate_file_layout
from .replies import ReplyBudget
from .inodes import (check_mode, close_session, end_sessions_of_client, inline_data, inline_record,
                      load_file_any, make_parent_dirs, new_inode, open_session, put_inline_record, store_file_any,
                      touch_dir)
from .resolve import FILE, as_path, resolve, resolve_parent, walk
from .store import Txn, session_key

log = logging.getLogger(__name__)

MOVE_CLIENT_ID = "meta-inline-move"   # the write-session owner of in-flight moves to chunks
AGAIN = object()      # a mutate that found the state moved under it: look again (nothing written)
MOVE_ATTEMPTS_MAX = 8                   # a move retried this often lost to concurrent truncates
_MOVE_LOCKS = 64


CAPABILITY_BYTES = capability.SIZE + 2     # the field's tag and length

class _InlineRefused(Exception):
    """Raised inside Create(inline)'s transaction to abort it: the file cannot take inline data."""


class NeedsMove(Exception):
    """An operation met an inline file that must first move to chunks (caller moves, then retries)."""

    def __init__(self, inode_id: int) -> None:
        super().__init__(inode_id)
        self.inode_id = inode_id


class InlineOps:
    """Mixed into Namespace (uses its store, chunk_store, rng, idem, _once, _recorded, _check_file,
    _replace_inode)."""

    _move_locks = [threading.Lock() for _ in range(_MOVE_LOCKS)]

    # -- create ------------------------------------------------------------
    def create_inline(self, path: str, data: bytes, now_ns: int, mode: int = 0, exclusive: bool = False,
                      parents: bool = False, layout: types_pb2.Layout | None = None,
                      request_id: str = "") -> tuple[types_pb2.Inode | None, str, bool]:
        """Create (or replace, as O_TRUNC) path with content data in one transaction.

        Returns (inode, canonical path, True), or (None, path, False) when the
        existing file cannot be replaced in O(1) (hard links or open writers):
        then nothing changed and the caller writes through storage.
        """
        if not data:
            raise TooLarge("inline data must not be empty (an empty file needs none)")
        if len(data) > limits.inline_data_bytes_max:
            raise TooLarge(f"{len(data)} bytes of inline data; at most {limits.inline_data_bytes_max}")
        key = self.idem.key("CreateInline", request_id, now_ns)
        mode = check_mode(mode or 0o644)
        return self._once(key, lambda: self._create_inline_txn(path, bytes(data), now_ns, mode, exclusive,
                                                               parents, layout, key), look_first=False)

    def _create_inline_txn(self, path, data, now_ns, mode, exclusive, parents, layout, key):
        components = path_components(path)
        if not components:
            raise IsADirectory("/ is a directory")
        name = components[-1]
        try:
            def mutate(txn: Txn):
                self.idem.check(txn, key)
                if parents:
                    parent, parent_components = make_parent_dirs(txn, components[:-1], now_ns, path)
                else:
                    parent, parent_components, _ = resolve_parent(txn, path, "create")
                if txn.get_dentry(parent.id, name, likely_absent=True) is not None:
                    if exclusive:
                        raise AlreadyExists(f"{path} already exists")
                    existing, resolved = walk(txn, parent_components + [name], True, path)
                    self._check_file(existing, path)
                    permissions.require(existing, permissions.WRITE, as_path(resolved), "replacing")
                    if existing.nlink != 1 or existing.open_write_sessions:
                        raise _InlineRefused()
                    inode = self._replace_inode(txn, existing, resolved, now_ns)
                    shown = as_path(resolved)
                else:
                    permissions.require_entry_change(parent, as_path(parent_components), None, path, "creating")
                    inode = new_inode(txn, FILE, mode, now_ns, parent,
                                      layout=allocate_file_layout(txn, parent.layout, layout, self.rng))
                    txn.put_dentry(parent.id, name, inode.id, FILE)
                    touch_dir(txn, parent, now_ns)
                    shown = as_path(parent_components + [name])
                inode.length = len(data)
                inode.mtime_ns = inode.ctime_ns = now_ns
                txn.put_inode(inode)
                put_inline_record(txn, inode.id, data)
                return self._recorded(txn, key, (inode, shown, True))

            return self.store.transact(mutate)
        except _InlineRefused:
            return None, path, False

    # -- reads ---------------------------------------------------------------
    def open_inline(self, path: str, follow_symlinks: bool = True
                    ) -> tuple[types_pb2.Inode, str, bytes]:
        """A read open for a client that serves inline bytes: (inode, path, inline bytes or b"")."""
        with self.store.read() as txn:
            inode, components = resolve(txn, path, follow_symlinks)
            self._check_file(inode, path)
            permissions.require(inode, permissions.READ, as_path(components), "opening for reading")
            return inode, as_path(components), inline_data(txn, inode) or b""

    def stat_results(self, paths: list[str], follow_symlinks: bool, inline_ok: bool,
                     attrs_only: bool = False) -> tuple[list[meta_pb2.StatResult], bool]:
        """BatchStat: an inline file's bytes come along (inline_ok) or move to chunks first
        (neither with attrs_only). (results, more): results stop at the reply byte budget
        (limits.meta_reply_bytes_max) and answer the first len(results) paths."""
        for _ in range(MOVE_ATTEMPTS_MAX):
            results, to_move = self._stat_results_once(paths, follow_symlinks, inline_ok, attrs_only)
            if not to_move:
                return results, len(results) < len(paths)
            for inode_id in to_move:
                self._move_inline_to_chunks(inode_id)
        raise Unavailable("inline files kept changing while BatchStat moved them to chunks; retry")

    def _stat_results_once(self, paths, follow_symlinks, inline_ok, attrs_only):
        results, to_move = [], []
        budget = ReplyBudget()
        with self.store.read() as txn:
            for path in paths:
                try:
                    inode, components = resolve(txn, path, follow_symlinks)
                    if not attrs_only and inode.type == FILE:    # a read handle: read permission
                        permissions.require(inode, permissions.READ, as_path(components), "opening for reading")
                    data = None if attrs_only else inline_data(txn, inode)
                    result = meta_pb2.StatResult(inode=inode, path=as_path(components),
                                                 inline_data=data if inline_ok else None)
                except FfsError as exc:
                    data, result = None, meta_pb2.StatResult(error=error_name(exc), message=str(exc))
                # A read handle gets a capability in the servicer (common/capability.py): count it now.
                handle = not attrs_only and not result.error and result.inode.type == FILE
                if not budget.admits(result, CAPABILITY_BYTES if handle else 0):
                    break   # the reply is full: the client asks again for the rest
                if data is not None and not inline_ok:
                    to_move.append(inode.id)
                results.append(result)
        return results, to_move

    # -- the move to chunks -------------------------------------------------
    def _move_lock(self, inode_id: int) -> threading.Lock:
        return self._move_locks[inode_id % _MOVE_LOCKS]

    def _move_inline_to_chunks(self, inode_id: int) -> bool:
        """Put an inline file's bytes into its chunks and drop the record; False if it was not inline."""
        with self._move_lock(inode_id):
            for _ in range(MOVE_ATTEMPTS_MAX):
                def begin(txn: Txn):
                    try:
                        inode, where = load_file_any(txn, inode_id)
                    except FileNotFoundError:
                        return None
                    record = inline_record(txn, inode_id)
                    if record is None:
                        return None
                    data, was_moving = record
                    put_inline_record(txn, inode_id, data, moving=True)
                    session_id = open_session(txn, inode, MOVE_CLIENT_ID, 0)
                    store_file_any(txn, inode, where)
                    return inode, data, was_moving, session_id

                begun = self.store.transact(begin)
                if begun is None:
                    return False
                inode, data, was_moving, session_id = begun
                layout = Layout.from_proto(inode.layout)
                try:
                    if was_moving:   # an earlier move was cut short: its chunks may hold other bytes
                        self.chunk_store.truncate(inode_id, layout, 0)
                    self.chunk_store.write_bytes(inode_id, layout, 0, data)
                except BaseException:
                    self._end_move_session(inode_id, session_id)
                    raise

                def finish(txn: Txn):
                    inode, where = load_file_any(txn, inode_id)
                    close_session(txn, inode, session_id)
                    record = inline_record(txn, inode_id)
                    done = record is not None and record[0] == data
                    if done:
                        txn.delete_inline(inode_id)
                    store_file_any(txn, inode, where)
                    return done or record is None

                if self.store.transact(finish):
                    log.debug("inline file %d moved to chunks (%d bytes)", inode_id, len(data))
                    return True
            raise Unavailable(f"inline file {inode_id} kept changing while it moved to chunks; retry")

    def _end_move_session(self, inode_id: int, session_id: int) -> None:
        try:
            def mutate(txn: Txn):
                if txn.get_msg("sessions", session_key(inode_id, session_id), meta_pb2.FileSession) is None:
                    return
                inode, where = load_file_any(txn, inode_id)
                close_session(txn, inode, session_id)
                store_file_any(txn, inode, where)

            self.store.transact(mutate)
        except Exception:  # the move's own error is the one to report
            log.exception("ending the move session of inline file %d", inode_id)

    def _end_orphaned_moves(self) -> int:
        """At start: moves a restart interrupted hold sessions forever; end them (records stay MOVING)."""
        ended = end_sessions_of_client(self.store, MOVE_CLIENT_ID)
        if ended:
            log.info("ended %d sessions of inline-to-chunk moves interrupted by a restart", ended)
        return ended

    # -- truncate ------------------------------------------------------------
    def _truncate_inline(self, inode_id: int, length: int, now_ns: int, key: IdemKey | None, result_of):
        """Truncate of an inline file within the limit: edit the record. None when the file is not
        (or no longer) a PURE inline file or length is past the limit (then it moved to chunks)."""
        for _ in range(MOVE_ATTEMPTS_MAX):
            with self.store.read() as txn:
                record = inline_record(txn, inode_id)
            if record is None:
                return None
            data, moving = record
            if moving or length > limits.inline_data_bytes_max:
                self._move_inline_to_chunks(inode_id)
                return None
            def mutate(txn: Txn):
                self.idem.check(txn, key)
                if inline_record(txn, inode_id) != record:
                    return AGAIN   # a move or another truncate slipped in: look again
                inode, where = load_file_any(txn, inode_id)
                cut = data[:length] + bytes(max(0, length - len(data)))
                if cut:
                    put_inline_record(txn, inode_id, cut)
                else:
                    txn.delete_inline(inode_id)
                inode.length = length
                inode.truncate_version += 1
                inode.mtime_ns = inode.ctime_ns = now_ns
                store_file_any(txn, inode, where)
                return self._recorded(txn, key, result_of(inode))

            result = self.store.transact(mutate)
            if result is not AGAIN:
                return result
        raise Unavailable(f"inline file {inode_id} kept changing during truncate; retry")
