"""Idempotency records: a retried mutation gets its first outcome back instead of running twice.

Why: a client whose call failed in transit (the meta process SIGKILLed after its
commit, a reply lost, a deadline hit) retries. Re-running ``create(exclusive)``
would then answer AlreadyExists and ``rename`` NotFound to the very client whose
first attempt succeeded. 3FS keeps IDEM records (30 min TTL) for this; so do we.

The client picks a ``request_id`` per call and keeps it across retries. The
outcome is recorded under it in the ``idem`` DB **in the same LMDB transaction
as the mutation**, so "done" and "recorded" are one fact that survives a crash
together. A failed mutation changed nothing (every mutation is one all-or-nothing
transaction), so its error is recorded in a transaction of its own; only errors
that a re-run would repeat are recorded, never Retryable ones (storage down: a
retry should run again).

Records expire after ``ttl_ns``; an ``idem_expiry`` index (created_ns BE +
request_id) lets the GC pass (gc.py) prune a bounded number of expired records
per transaction with one range scan, so the table holds about one TTL window of
mutations. Not each mutation: on the etcd engine every mutation's scan of the
index's head would make concurrent mutations conflict.

Replies are stored as the RPC's reply message; ``CODECS`` maps each method to
it and back to the namespace's return value, so Namespace stays free of gRPC.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Callable

from fireflyfs.common.errors import (FfsError, Internal, InvalidArgument, NoSpace, Retryable,
                                     error_from_name, error_name)
from fireflyfs.proto import meta_pb2

from .store import Store, Txn

IDEM_TTL_NS_DEFAULT = 30 * 60 * 1_000_000_000      # as 3FS: 30 minutes
IDEM_PRUNE_PER_TXN_MAX = 16                        # > 1, so pruning outpaces recording
REQUEST_ID_BYTES_MAX = 128

_I64 = struct.Struct(">q")


def _inode_path(result) -> meta_pb2.InodeReply:
    inode, path = result
    return meta_pb2.InodeReply(inode=inode, path=path)


def _open(result) -> meta_pb2.OpenReply:
    inode, session_id, path = result
    return meta_pb2.OpenReply(inode=inode, session_id=session_id, path=path)


@dataclasses.dataclass(frozen=True, slots=True)
class Codec:
    """How one method's namespace result is stored and given back."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _reply_codec(to_reply: Callable[[Any], Any], reply_cls, from_reply: Callable[[Any], Any]) -> Codec:
    def decode(data: bytes):
        reply = reply_cls()
        reply.ParseFromString(data)
        return from_reply(reply)
    return Codec(lambda result: to_reply(result).SerializeToString(), decode)


_INODE_PATH = _reply_codec(_inode_path, meta_pb2.InodeReply, lambda r: (r.inode, r.path))
_OPEN = _reply_codec(_open, meta_pb2.OpenReply, lambda r: (r.inode, r.session_id, r.path))
_CREATE_INLINE = _reply_codec(lambda r: meta_pb2.OpenReply(inode=r[0], path=r[1], inline=r[2]),
                              meta_pb2.OpenReply, lambda r: (r.inode, r.path, r.inline))
_INODE = _reply_codec(lambda inode: meta_pb2.InodeReply(inode=inode), meta_pb2.InodeReply, lambda r: r.inode)
_NOTHING = Codec(lambda _result: b"", lambda _data: None)

CODECS: dict[str, Codec] = {
    "Mkdirs": _INODE_PATH, "Symlink": _INODE_PATH, "HardLink": _INODE_PATH, "SetAttr": _INODE_PATH,
    "Truncate": _INODE_PATH, "CopyFile": _INODE_PATH,
    "Create": _OPEN, "Open": _OPEN, "CreateInline": _CREATE_INLINE,
    "Close": _INODE,
    "Rename": _NOTHING, "Remove": _NOTHING,
}


def is_recordable(exc: BaseException) -> bool:
    """Errors a re-run would repeat: record them. Transient ones: let the retry run again."""
    return isinstance(exc, FfsError) and not isinstance(exc, (Retryable, NoSpace, Internal))


@dataclasses.dataclass(frozen=True, slots=True)
class IdemKey:
    """One mutation call: which method, under which client-chosen id, at what time."""

    method: str
    request_id: str
    now_ns: int


class Replayed(Exception):
    """Raised inside a write transaction to abort it: the request already ran (see ``outcome``)."""

    def __init__(self, record: meta_pb2.IdemRecord) -> None:
        super().__init__(record.method)
        self.record = record


def replay(record: meta_pb2.IdemRecord):
    """The recorded result, or the recorded error raised again."""
    if record.error:
        raise error_from_name(record.error, record.message)
    return CODECS[record.method].decode(record.reply)


class IdemTable:
    """Lookups, records and pruning of the ``idem`` DB, always inside a caller's transaction."""

    def __init__(self, ttl_ns: int = IDEM_TTL_NS_DEFAULT) -> None:
        if ttl_ns <= 0:
            raise InvalidArgument("idempotency TTL must be positive")
        self.ttl_ns = ttl_ns

    @staticmethod
    def key(method: str, request_id: str, now_ns: int) -> IdemKey | None:
        """An IdemKey for a call, None when the client asked for no idempotency."""
        if not request_id:
            return None
        if len(request_id.encode()) > REQUEST_ID_BYTES_MAX:
            raise InvalidArgument(f"request_id longer than {REQUEST_ID_BYTES_MAX} bytes")
        if method not in CODECS:
            raise Internal(f"{method} has no idempotency codec")
        return IdemKey(method, request_id, now_ns)

    def lookup(self, txn: Txn, key: IdemKey) -> meta_pb2.IdemRecord | None:
        """The live record of key's request id (None if absent or expired)."""
        record = txn.get_msg("idem", key.request_id.encode(), meta_pb2.IdemRecord)
        if record is None or key.now_ns - record.created_ns > self.ttl_ns:
            return None
        if record.method != key.method:
            raise InvalidArgument(f"request_id {key.request_id!r} was used for {record.method}, "
                                  f"not {key.method}")
        return record

    def check(self, txn: Txn, key: IdemKey | None) -> None:
        """Raise Replayed when key's request already ran (call first in the final transaction)."""
        if key is not None:
            record = self.lookup(txn, key)
            if record is not None:
                raise Replayed(record)

    def record(self, txn: Txn, key: IdemKey | None, result) -> None:
        """Store result under key in txn (the mutation's own transaction)."""
        if key is None:
            return
        self._put(txn, key, meta_pb2.IdemRecord(method=key.method, created_ns=key.now_ns,
                                                reply=CODECS[key.method].encode(result)))

    def record_failure(self, store: Store, key: IdemKey | None, exc: BaseException) -> None:
        """Remember a failed mutation's error (its own transaction: the failure changed nothing)."""
        if key is None or not is_recordable(exc):
            return

        def mutate(txn: Txn) -> None:
            if self.lookup(txn, key) is None:
                self._put(txn, key, meta_pb2.IdemRecord(method=key.method, created_ns=key.now_ns,
                                                        error=error_name(exc), message=str(exc)))

        store.transact(mutate)

    def _put(self, txn: Txn, key: IdemKey, record: meta_pb2.IdemRecord) -> None:
        old = txn.get_msg("idem", key.request_id.encode(), meta_pb2.IdemRecord)
        if old is not None:   # an expired record under the same id
            txn.delete("idem_expiry", _I64.pack(old.created_ns) + key.request_id.encode())
        txn.put_msg("idem", key.request_id.encode(), record)
        txn.kv.put("idem_expiry", _I64.pack(record.created_ns) + key.request_id.encode(), b"")

    def prune_expired(self, store: Store, now_ns: int, batches_max: int = 4) -> int:
        """Prune expired records in up to batches_max bounded transactions; how many went."""
        pruned = 0
        for _ in range(batches_max):
            went = store.transact(lambda txn: self.prune(txn, now_ns))
            pruned += went
            if went < IDEM_PRUNE_PER_TXN_MAX:
                break
        return pruned

    def prune(self, txn: Txn, now_ns: int, count_max: int = IDEM_PRUNE_PER_TXN_MAX) -> int:
        """Delete up to count_max records older than the TTL; returns how many went."""
        cutoff = now_ns - self.ttl_ns
        expired = []
        for index_key, _ in txn.scan("idem_expiry"):
            if len(expired) == count_max or _I64.unpack(index_key[:8])[0] >= cutoff:
                break
            expired.append(index_key)
        for index_key in expired:
            txn.delete("idem_expiry", index_key)
            txn.delete("idem", index_key[8:])
        return len(expired)

    def count(self, txn: Txn) -> int:
        return txn.entries("idem")
