"""Small record-level helpers shared by the namespace operations (all inside a txn)."""

from __future__ import annotations

import secrets

from fireflyfs.common import limits
from fireflyfs.common.errors import AlreadyExists, InvalidArgument, NotADirectory, NotFound, PermissionDenied
from fireflyfs.proto import meta_pb2, types_pb2

from . import permissions
from .layouts import merge_layout
from .resolve import DIR, FILE, ROOT_ID, as_path, load_inode, walk
from .store import Txn, session_key, u64_key

MODE_BITS = 0o7777

# Inline files (inline.py): the record's first byte is its state.
INLINE_PURE = b"\x00"      # no chunk of the inode was ever written
INLINE_MOVING = b"\x01"    # a move to chunks started: chunks may exist, the record still rules


def check_mode(mode: int) -> int:
    if mode < 0 or mode & ~MODE_BITS:
        raise InvalidArgument(f"mode {mode:#o} has bits outside {MODE_BITS:#o}")
    return mode


def new_inode(txn: Txn, inode_type: int, mode: int, now_ns: int, in_dir: types_pb2.Inode,
              **fields) -> types_pb2.Inode:
    """A fresh inode with the next 64-bit id (ids start at 2: 1 is the root), owned by the caller
    as a new entry of directory in_dir (permissions.set_owner)."""
    inode = types_pb2.Inode(id=txn.next_id("next_inode", 2), type=inode_type, mode=check_mode(mode),
                            nlink=2 if inode_type == DIR else 1, atime_ns=now_ns, mtime_ns=now_ns,
                            ctime_ns=now_ns, crtime_ns=now_ns, **fields)
    permissions.set_owner(inode, in_dir)
    return inode


def touch_dir(txn: Txn, directory: types_pb2.Inode, now_ns: int) -> None:
    """An entry of directory changed: bump its mtime and ctime, at most once per
    limits.dir_times_granularity_ns (as relatime does for atime). Rewriting the directory's
    inode on every create made all creates in one directory conflict on the etcd engine;
    within the granularity the times stay where they are, so they may lag by up to it."""
    if 0 <= now_ns - directory.mtime_ns < limits.dir_times_granularity_ns:
        return
    directory.mtime_ns = directory.ctime_ns = now_ns
    txn.put_inode(directory)


def release_link(txn: Txn, inode: types_pb2.Inode, now_ns: int) -> None:
    """Drop one link to a non-directory; a file whose nlink hits 0 moves to the GC queue."""
    inode.nlink = max(0, inode.nlink - 1)
    inode.ctime_ns = now_ns
    if inode.nlink > 0:
        txn.put_inode(inode)
        return
    txn.delete_inode(inode.id)
    if inode.type == FILE and drop_inline_record(txn, inode.id):
        txn.put_msg("gc", u64_key(inode.id), inode)   # a PURE inline file has no chunks: no GC pass


def inline_record(txn: Txn, inode_id: int) -> tuple[bytes, bool] | None:
    """(data, moving) of an inline file, None when its bytes are in chunks."""
    raw = txn.get_inline(inode_id)
    if raw is None:
        return None
    return raw[1:], raw[:1] == INLINE_MOVING


def inline_data(txn: Txn, inode: types_pb2.Inode) -> bytes | None:
    """An inline file's bytes (cheap for every other inode: no lookup unless it could be inline)."""
    if inode.type != FILE or not 0 < inode.length <= limits.inline_data_bytes_max:
        return None
    record = inline_record(txn, inode.id)
    return None if record is None else record[0]


def put_inline_record(txn: Txn, inode_id: int, data: bytes, moving: bool = False) -> None:
    if not data:
        raise AssertionError("an inline record is never empty")
    txn.put_inline(inode_id, (INLINE_MOVING if moving else INLINE_PURE) + bytes(data))


def drop_inline_record(txn: Txn, inode_id: int) -> bool:
    """Drop the record of an inode leaving the namespace; True when chunks may exist (GC needed)."""
    raw = txn.get_inline(inode_id)
    if raw is None:
        return True
    txn.delete_inline(inode_id)
    return raw[:1] == INLINE_MOVING


def load_file_any(txn: Txn, inode_id: int) -> tuple[types_pb2.Inode, str]:
    """A file inode by id, linked ("inodes") or unlinked and awaiting GC ("gc")."""
    inode = txn.get_inode(inode_id)
    if inode is not None:
        return inode, "inodes"
    inode = txn.get_gc(inode_id)
    if inode is not None:
        return inode, "gc"
    raise NotFound(f"inode {inode_id} does not exist")


def store_file_any(txn: Txn, inode: types_pb2.Inode, where: str) -> None:
    txn.put_msg(where, u64_key(inode.id), inode)


SESSION_ID_DRAWS_MAX = 8


def open_session(txn: Txn, inode: types_pb2.Inode, client_id: str, now_ns: int) -> int:
    """Record a write session on inode (caller stores the inode); return its id.

    Ids are random 64-bit numbers from the OS's CSPRNG, not a counter (nor a
    seeded rng): a session id seen once tells nothing about anyone else's.
    Closing or syncing also needs the holder's client id (``held_session``).
    """
    if len(client_id.encode()) > limits.name_bytes_max:
        raise InvalidArgument("client id longer than 255 bytes")
    for _ in range(SESSION_ID_DRAWS_MAX):
        session_id = secrets.randbits(64)
        if session_id and txn.get_msg("sessions", session_key(inode.id, session_id),
                                      meta_pb2.FileSession) is None:
            break
    else:
        raise AssertionError("no free random session id in 8 draws of 64 bits")
    txn.put_msg("sessions", session_key(inode.id, session_id),
                meta_pb2.FileSession(inode_id=inode.id, session_id=session_id, client_id=client_id,
                                     created_ns=now_ns, truncate_version=inode.truncate_version))
    inode.open_write_sessions += 1
    return session_id


def held_session(txn: Txn, inode_id: int, session_id: int, client_id: str) -> meta_pb2.FileSession:
    """The write session, when client_id holds it: only the holder closes or syncs a session."""
    session = txn.get_msg("sessions", session_key(inode_id, session_id), meta_pb2.FileSession)
    if session is None:
        raise NotFound(f"no write session {session_id} on inode {inode_id} (closed, or ended when its "
                       "client stopped renewing its lease)")
    if session.client_id != client_id:
        raise PermissionDenied(f"write session {session_id} on inode {inode_id} is held by another client; "
                               f"only its holder may close or sync it (request from client {client_id!r})")
    return session


def close_session(txn: Txn, inode: types_pb2.Inode, session_id: int) -> None:
    txn.delete("sessions", session_key(inode.id, session_id))
    inode.open_write_sessions = max(0, inode.open_write_sessions - 1)


def end_sessions_of_client(store, client_id: str) -> int:
    """End every write session client_id holds; returns how many.

    The meta process itself holds sessions (copies, inline-to-chunk moves) under
    fixed client ids; a restart leaves them open forever, blocking GC, so
    startup ends them here.
    """
    def mutate(txn: Txn) -> int:
        # The scan that decides is on txn, so a re-run sees the fresher sessions.
        orphaned = []
        for _key, value in txn.scan("sessions"):
            session = meta_pb2.FileSession()
            session.ParseFromString(value)
            if session.client_id == client_id:
                orphaned.append(session)
        for session in orphaned:
            txn.delete("sessions", session_key(session.inode_id, session.session_id))
            try:
                inode, where = load_file_any(txn, session.inode_id)
            except NotFound:
                continue
            inode.open_write_sessions = max(0, inode.open_write_sessions - 1)
            store_file_any(txn, inode, where)
        return len(orphaned)

    return store.transact(mutate)


def make_dirs(txn: Txn, components: list[str], now_ns: int, mode: int, parents: bool, exist_ok: bool,
              layout: types_pb2.Layout | None, shown_path: str) -> tuple[types_pb2.Inode, list[str]]:
    """mkdir (-p) inside txn; (directory inode, canonical components).

    The new directory's default layout is its parent's, overridden by the
    non-zero fields of layout; missing ancestors (parents=True) inherit
    plainly. An existing directory keeps its layout.
    """
    current, done = load_inode(txn, ROOT_ID), []
    if not components:
        if exist_ok:
            return current, done
        raise AlreadyExists("/ already exists")
    for index, name in enumerate(components):
        last = index == len(components) - 1
        permissions.require(current, permissions.SEARCH, as_path(done), shown_path)
        entry = txn.get_dentry(current.id, name, likely_absent=last and not exist_ok)
        if entry is not None:
            if entry.type == DIR:   # the common case: one step down, no walk from the root
                child, child_components = load_inode(txn, entry.inode_id), done + [name]
            else:                   # a symlink (followed) or a file
                child, child_components = walk(txn, done + [name], True, shown_path)
            if last:
                if child.type == DIR and exist_ok:
                    return child, child_components
                raise AlreadyExists(f"{shown_path} already exists")
            if child.type != DIR:
                raise NotADirectory(f"{shown_path}: {as_path(child_components)} is not a directory")
            current, done = child, child_components
            continue
        if not last and not parents:
            raise NotFound(f"{shown_path}: parent {as_path(done + [name])} does not exist")
        permissions.require(current, permissions.WRITE | permissions.SEARCH, as_path(done),
                            f"creating {as_path(done + [name])}")
        child = new_inode(txn, DIR, mode if last else 0o755, now_ns, current, parent=current.id,
                          layout=merge_layout(current.layout, layout if last else None, txn))
        txn.put_inode(child)
        txn.put_dentry(current.id, name, child.id, DIR)
        touch_dir(txn, current, now_ns)
        current, done = child, done + [name]
    return current, done


def make_parent_dirs(txn: Txn, components: list[str], now_ns: int,
                     shown_path: str) -> tuple[types_pb2.Inode, list[str]]:
    """The directories a new file at shown_path goes in (components), made where missing; a file
    anywhere on the way is NotADirectory, as open(2) and rename(2) say (ENOTDIR)."""
    try:
        return make_dirs(txn, components, now_ns, 0o755, True, True, None, shown_path)
    except AlreadyExists:
        raise NotADirectory(f"{shown_path}: {as_path(components)} is not a directory") from None
