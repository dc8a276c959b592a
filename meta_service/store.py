"""The metadata service's LMDB store: one environment, named DBs, one writer.

Key layout (as 3FS keeps its KV schema, minus the FDB prefixes: each kind of
record lives in its own named DB instead):

    inodes        inode id (8 B big-endian)           -> types.Inode
    dentries      parent id (8 B BE) + name (utf-8)   -> meta.DirEntry{inode_id, type}
    sessions      inode id (8 B BE) + session id (8 B) -> meta.FileSession
    gc            inode id (8 B BE)                   -> types.Inode (unlinked, chunks still on storage)
    counters      ascii name                          -> 8 B BE unsigned
    nodes         node id (4 B BE)                    -> types.NodeInfo
    targets       target id (8 B BE)                  -> types.TargetInfo
    chains        chain id (4 B BE)                   -> types.ChainInfo
    chain_tables  table id (4 B BE)                   -> types.ChainTable
    idem          request id (utf-8)                  -> meta.IdemRecord (idempotency.py)
    idem_expiry   created_ns (8 B BE) + request id    -> empty (TTL index of idem)
    inline        inode id (8 B BE)                   -> the whole content of a small file (inline.py)
    meta_servers  node id (4 B BE)                    -> types.NodeInfo of a live meta server (etcd engine:
                                                         under that server's lease; membership.py)
    moves         chain id (4 B BE) + target leaving  -> types.ChainMove under way (mgmtd/chain_moves.py)

Big-endian ids keep a directory's entries (and an inode's sessions) in one
contiguous key range, so a listing is one prefix range scan.

Every mutation runs in exactly one write transaction, one at a time, so a
mutation is all-or-nothing and mutations are serialized.

Durability (docs/durability.md): by default (``fsync=True``) LMDB runs with
``sync=True, metasync=True`` and ``write()`` returns only after the commit
covering it reached the disk (fdatasync), so no reply precedes durability and
a host power loss keeps every acknowledged mutation. Group commit
(common/lmdb_commit.py) lets the writes that arrive during one fdatasync share
the next. ``fsync=False`` (``--no-fsync``) commits without sync: a committed
transaction survives SIGKILL of this process (the kernel owns its pages) but a
power loss may lose it or corrupt the database. ``python bench/meta_commit_rate.py``
prints the commit rates of each mode.
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import Callable, Iterator, TypeVar

import lmdb

from fireflyfs.common import limits
from fireflyfs.common.errors import Unavailable
from fireflyfs.common.lmdb_env import GrowingEnv, MapUsage, no_space_error
from fireflyfs.proto import meta_pb2, types_pb2

from .kv import KvTxn
from .lmdb_kv import LmdbTxn

DB_NAMES = ("inodes", "dentries", "sessions", "gc", "counters",
            "nodes", "targets", "chains", "chain_tables", "idem", "idem_expiry", "inline", "meta_servers",
            "users", "secrets", "moves")

# Address space reserved for the map, not disk: data.mdb grows only as pages are used.
MAP_SIZE_BYTES_DEFAULT = limits.meta_map_bytes_default
MAP_SIZE_BYTES_MAX_DEFAULT = limits.meta_map_bytes_max_default

T = TypeVar("T")

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def u64_key(value: int) -> bytes:
    return _U64.pack(value)


def u32_key(value: int) -> bytes:
    return _U32.pack(value)


def dentry_key(parent_id: int, name: str) -> bytes:
    return _U64.pack(parent_id) + name.encode("utf-8", "surrogatepass")


def session_key(inode_id: int, session_id: int) -> bytes:
    return _U64.pack(inode_id) + _U64.pack(session_id)


class Txn:
    """Typed accessors for each kind of record, over one engine transaction (kv.KvTxn).

    The namespace and mgmtd code use only these (and kv's five calls through
    ``kv``), never the engine: that keeps them engine-neutral.
    """

    def __init__(self, kv: KvTxn) -> None:
        self.kv = kv

    # -- generic ---------------------------------------------------------
    def get_msg(self, db: str, key: bytes, message_cls):
        value = self.kv.get(db, key)
        if value is None:
            return None
        message = message_cls()
        message.ParseFromString(value)
        return message

    def put_msg(self, db: str, key: bytes, message) -> None:
        self.kv.put(db, key, message.SerializeToString())

    def delete(self, db: str, key: bytes) -> bool:
        return self.kv.delete(db, key)

    def scan(self, db: str, prefix: bytes = b"", start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with prefix, from start (inclusive) on."""
        return self.kv.scan(db, prefix, start)

    def entries(self, db: str) -> int:
        return self.kv.count(db)

    # -- counters ----------------------------------------------------------
    def get_counter(self, name: str, default: int = 0) -> int:
        value = self.kv.get("counters", name.encode())
        return default if value is None else _U64.unpack(value)[0]

    def set_counter(self, name: str, value: int) -> None:
        self.kv.put("counters", name.encode(), _U64.pack(value))

    def next_id(self, name: str, first: int) -> int:
        """Hand out the next id of a counter that starts at first.

        An engine with a ``next_id`` of its own (etcd: ranges reserved per
        store, so creates do not all conflict on one key) hands it out;
        otherwise the counter is read and advanced in this transaction."""
        allocate = getattr(self.kv, "next_id", None)
        if allocate is not None:
            return allocate(name, first)
        value = self.get_counter(name, first)
        self.set_counter(name, value + 1)
        return value

    # -- namespace records -------------------------------------------------
    def get_inode(self, inode_id: int) -> types_pb2.Inode | None:
        return self.get_msg("inodes", u64_key(inode_id), types_pb2.Inode)

    def put_inode(self, inode: types_pb2.Inode) -> None:
        self.put_msg("inodes", u64_key(inode.id), inode)

    def delete_inode(self, inode_id: int) -> None:
        self.delete("inodes", u64_key(inode_id))

    def get_dentry(self, parent_id: int, name: str, likely_absent: bool = False) -> meta_pb2.DirEntry | None:
        """likely_absent: a name about to be created (kv.KvTxn.get)."""
        raw = self.kv.get("dentries", dentry_key(parent_id, name), likely_absent)
        if raw is None:
            return None
        entry = meta_pb2.DirEntry()
        entry.ParseFromString(raw)
        entry.name = name
        return entry

    def put_dentry(self, parent_id: int, name: str, inode_id: int, inode_type: int) -> None:
        self.put_msg("dentries", dentry_key(parent_id, name),
                     meta_pb2.DirEntry(inode_id=inode_id, type=inode_type))

    def delete_dentry(self, parent_id: int, name: str) -> None:
        self.delete("dentries", dentry_key(parent_id, name))

    def scan_dentries(self, parent_id: int, start_at: str = "", after: bool = False
                      ) -> Iterator[meta_pb2.DirEntry]:
        """Entries of a directory in name-byte order, from start_at (exclusive when after)."""
        prefix = _U64.pack(parent_id)
        start = prefix + start_at.encode("utf-8", "surrogatepass")
        for key, value in self.scan("dentries", prefix, start):
            name = key[8:].decode("utf-8", "surrogatepass")
            if after and name == start_at:
                continue
            entry = meta_pb2.DirEntry()
            entry.ParseFromString(value)
            entry.name = name
            yield entry

    def has_children(self, dir_id: int) -> bool:
        return next(self.scan_dentries(dir_id), None) is not None

    def get_inline(self, inode_id: int) -> bytes | None:
        """The content of an inline file (None: its bytes, if any, are in storage chunks)."""
        return self.kv.get("inline", _U64.pack(inode_id))

    def put_inline(self, inode_id: int, data: bytes) -> None:
        self.kv.put("inline", _U64.pack(inode_id), data)

    def delete_inline(self, inode_id: int) -> bool:
        return self.kv.delete("inline", _U64.pack(inode_id))

    def get_gc(self, inode_id: int) -> types_pb2.Inode | None:
        return self.get_msg("gc", u64_key(inode_id), types_pb2.Inode)

    def sessions_of(self, inode_id: int) -> list[meta_pb2.FileSession]:
        out = []
        for _key, value in self.scan("sessions", _U64.pack(inode_id)):
            session = meta_pb2.FileSession()
            session.ParseFromString(value)
            out.append(session)
        return out


class Store:
    """The LMDB environment at data_dir/meta.lmdb, with one writer at a time.

    The map grows on its own (common/lmdb_env.py) up to map_size_bytes_max: a
    write that finds it full is aborted, the map doubles under the write lock,
    and the write answers Unavailable, which clients retry (nothing of it was
    applied). At the max, and on a full disk, writes answer NoSpace.

    fsync: each write durable before ``write()`` returns (the default; see the module doc).
    """

    def __init__(self, path: str, fsync: bool = True,
                 map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT,
                 map_size_bytes_max: int = MAP_SIZE_BYTES_MAX_DEFAULT) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = GrowingEnv(path, map_bytes=map_size_bytes,
                              map_bytes_max=max(map_size_bytes, map_size_bytes_max),
                              what="metadata store", max_dbs=len(DB_NAMES) + 2,
                              sync=fsync, metasync=fsync, max_readers=256)
        self.dbs = {name: self.env.open_db(name.encode()) for name in DB_NAMES}

    @contextlib.contextmanager
    def write(self) -> Iterator[Txn]:
        """One write transaction: committed (durably, with fsync) when the block ends, aborted on
        any exception. A write() inside a write body joins the enclosing one."""
        map_bytes_seen = self.env.map_bytes
        try:
            with self.env.writer.write() as txn:
                yield Txn(LmdbTxn(txn, self.dbs))
        except lmdb.MapFullError as exc:
            # Aborted (with its whole batch, if the commit failed); this thread holds no transaction.
            if not self.env.grow_after_full(map_bytes_seen):
                raise self.env.full_error(exc) from exc
            raise Unavailable(f"metadata store {self.path} was full at {map_bytes_seen} bytes and "
                              f"grew to {self.env.map_bytes}; nothing was applied, retry") from exc
        except lmdb.Error as exc:
            error = no_space_error(exc, f"metadata store {self.path}")
            if error is None:
                raise
            raise error from exc

    engine = "lmdb"

    def describe(self) -> str:
        return self.path

    def transact(self, mutate: Callable[[Txn], T], guard: object = None) -> T:
        """mutate(txn) in one write transaction, committed; its result.

        The form every mutation will take (issue 11): an engine with
        optimistic transactions (etcd) runs mutate again when another writer
        changed what it read, so mutate must touch nothing but txn (no
        outside state, no storage calls) and may run more than once. On LMDB
        it runs once, under the group commit (``write()``). No guard: one
        process owns an LMDB store, there is no other primary to fence off.
        """
        if guard is not None:
            raise ValueError("the LMDB engine has one process; a guard is for etcd (kv.MetaStore)")
        with self.write() as txn:
            return mutate(txn)

    @contextlib.contextmanager
    def read(self) -> Iterator[Txn]:
        with self.env.begin(write=False) as txn:
            yield Txn(LmdbTxn(txn, self.dbs))

    @property
    def writer(self):
        """The group commit of this store's writes (its counters: tests, benchmarks)."""
        return self.env.writer

    def map_usage(self) -> MapUsage:
        return self.env.usage()

    def close(self) -> None:
        self.env.close()
