"""A thin synchronous etcd v3 client over the generated stubs: KV, Txn and leases.

It lives next to the stubs (like bulk_io.py next to bulk_wire.py) rather than in
common/, which sits below proto and may not import it, so both the meta engine and
mgmtd (meta_service) and the launchers (deploy) can use it.

Failover: the client talks to one endpoint at a time. When a call finds it
unreachable (gRPC UNAVAILABLE or a deadline), the client moves to the next
endpoint. A read is then retried there, once per endpoint. A write is not: etcd
may have applied it before the reply was lost (UNAVAILABLE also covers "request
timed out" and "leader changed"), and a blind retry could apply it twice or
make a successful compare look failed. The write raises ``Unavailable`` and the
caller re-reads and retries: the next call goes to the next endpoint.

Errors are common/errors.py types: ``Unavailable`` (transport, no leader),
``TooLarge`` (over ``--max-request-bytes`` or ``--max-txn-ops``; checked here
first against common/limits.py), ``Retryable`` for a compacted revision (restart
the scan at the current revision), ``NotFound`` for an unknown lease,
``InvalidArgument`` for a malformed request; anything else maps as in common/rpc.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import grpc

from fireflyfs.common import errors, limits
from fireflyfs.common.rpc import error_from_rpc, make_channel
from fireflyfs.proto.etcd import rpc_pb2, rpc_pb2_grpc

log = logging.getLogger(__name__)

call_timeout_s_default = 5.0
T = TypeVar("T")

Compare = rpc_pb2.Compare
RequestOp = rpc_pb2.RequestOp


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease_id: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    """One page of a range: its keys, the revision it was read at, and where to go on.

    ``continue_from`` is the start key of the next page (None when this was the last);
    pass it back with ``revision=result.revision`` to read every page at one snapshot.
    """
    kvs: list[KeyValue]
    revision: int
    count: int
    continue_from: bytes | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``responses`` hold, per op of the branch taken: a RangeResult for a get,
    the revision for a put, the number of deleted keys for a delete."""
    succeeded: bool
    revision: int
    responses: list[RangeResult | int]


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that covers every key starting with prefix (etcd's GetPrefixRangeEnd)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"                            # every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _range_end(key: bytes, prefix: bool) -> bytes:
    return prefix_end(key) if prefix else b""


# Compares and ops for txn(): etcd's messages, built by name.

def compare_mod_revision(key: bytes, result: str, revision: int) -> Compare:
    """key's mod_revision <result> revision; result is one of = != < >."""
    return Compare(key=key, target=Compare.MOD, result=_RESULTS[result], mod_revision=revision)


def compare_create_revision(key: bytes, result: str, revision: int) -> Compare:
    """key's create_revision <result> revision (0: the key does not exist)."""
    return Compare(key=key, target=Compare.CREATE, result=_RESULTS[result], create_revision=revision)


def compare_version(key: bytes, result: str, version: int) -> Compare:
    return Compare(key=key, target=Compare.VERSION, result=_RESULTS[result], version=version)


def compare_value(key: bytes, result: str, value: bytes) -> Compare:
    return Compare(key=key, target=Compare.VALUE, result=_RESULTS[result], value=value)


_RESULTS = {"=": Compare.EQUAL, "!=": Compare.NOT_EQUAL, "<": Compare.LESS, ">": Compare.GREATER}


def op_get(key: bytes, prefix: bool = False, limit: int = 0) -> RequestOp:
    return RequestOp(request_range=rpc_pb2.RangeRequest(key=key, range_end=_range_end(key, prefix), limit=limit))


def op_put(key: bytes, value: bytes, lease_id: int = 0) -> RequestOp:
    return RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease_id))


def op_delete(key: bytes, prefix: bool = False) -> RequestOp:
    return RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=_range_end(key, prefix)))


def _error_of(rpc_error: grpc.RpcError) -> errors.FfsError:
    """The FfsError for a failed etcd call (etcd's messages are stable: see its rpctypes)."""
    code, details = rpc_error.code(), rpc_error.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Unavailable(f"etcd: {code.name}: {details}")
    if "too many operations in txn" in details or "request is too large" in details:
        return errors.TooLarge(f"etcd refused the request: {details}")
    if "future revision" in details:       # a serializable read moved to a member that lags
        return errors.Unavailable(f"etcd: {details}; retry")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return errors.Retryable(f"etcd: {details}; restart the scan at the current revision")
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(f"etcd: {details}")
    return error_from_rpc(rpc_error)


class EtcdClient:
    """Synchronous etcd v3 client over a list of ``host:port`` endpoints (one used at a time)."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = call_timeout_s_default) -> None:
        if not endpoints:
            raise errors.InvalidArgument("etcd client needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._index = 0
        self._channel: grpc.Channel | None = None
        self._stubs: tuple[rpc_pb2_grpc.KVStub, rpc_pb2_grpc.LeaseStub] | None = None
        self._keepalives: dict[int, _KeepAlive] = {}
        self._retired: list[grpc.Channel] = []     # channels of endpoints failed over from

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to now."""
        return self.endpoints[self._index]

    def _current(self) -> tuple[int, rpc_pb2_grpc.KVStub, rpc_pb2_grpc.LeaseStub]:
        with self._lock:
            if self._stubs is None:
                self._channel = make_channel(self.endpoints[self._index], token=None, credentials=None)
                self._stubs = (rpc_pb2_grpc.KVStub(self._channel), rpc_pb2_grpc.LeaseStub(self._channel))
            return (self._index, *self._stubs)

    def _fail_over(self, index: int, error: errors.FfsError) -> None:
        """Move on from endpoint index (unless another thread already did)."""
        with self._lock:
            if index != self._index:
                return
            log.warning("etcd endpoint %s unavailable (%s); trying %s", self.endpoints[index], error,
                        self.endpoints[(index + 1) % len(self.endpoints)])
            if self._channel is not None:
                # Not closed now: calls of other threads may still be in flight on it (closing
                # would cancel them mid-answer); close() ends it with the client.
                self._retired.append(self._channel)
            self._channel, self._stubs = None, None
            self._index = (index + 1) % len(self.endpoints)

    def _call(self, call: Callable[[rpc_pb2_grpc.KVStub, rpc_pb2_grpc.LeaseStub], T], retry: bool) -> T:
        """Run call on the current endpoint; fail over on Unavailable (retrying reads on each endpoint)."""
        attempts = len(self.endpoints) if retry else 1
        for attempt in range(attempts):
            index, kv, lease = self._current()
            try:
                return call(kv, lease)
            except grpc.RpcError as rpc_error:
                error = _error_of(rpc_error)
                if not isinstance(error, errors.Unavailable):
                    raise error from rpc_error
                self._fail_over(index, error)
                if attempt == attempts - 1:
                    raise error from rpc_error
        raise errors.Internal("unreachable")

    # KV

    def range(self, key: bytes, *, prefix: bool = False, revision: int = 0, limit: int = 0,
              continue_from: bytes | None = None, serializable: bool = False) -> RangeResult:
        """Keys equal to key (or starting with it), at revision (0: latest), at most limit (0: all).

        serializable: answered by the member we talk to from its own state, without a round
        through the leader (cheaper; may lag the newest commit: for reads a later compare checks)."""
        request = rpc_pb2.RangeRequest(key=continue_from if continue_from is not None else key,
                                       range_end=_range_end(key, prefix), revision=revision, limit=limit,
                                       serializable=serializable)
        reply = self._call(lambda kv, _: kv.Range(request, timeout=self.timeout_s), retry=True)
        return _range_result(reply, request.range_end, revision)

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        found = self.range(key, revision=revision).kvs
        return found[0] if found else None

    def scan_prefix(self, prefix: bytes, page_limit: int) -> Iterator[KeyValue]:
        """Every key under prefix, page by page, all pages at the first page's revision."""
        result = self.range(prefix, prefix=True, limit=page_limit)
        yield from result.kvs
        while result.continue_from is not None:
            result = self.range(prefix, prefix=True, limit=page_limit, revision=result.revision,
                                continue_from=result.continue_from)
            yield from result.kvs

    def put(self, key: bytes, value: bytes, lease_id: int = 0) -> int:
        """Store value under key (attached to lease_id if nonzero); returns the new revision."""
        _check_request_bytes(len(key) + len(value))
        request = rpc_pb2.PutRequest(key=key, value=value, lease=lease_id)
        return self._call(lambda kv, _: kv.Put(request, timeout=self.timeout_s), retry=False).header.revision

    def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete key (or every key under it); returns how many were deleted."""
        request = rpc_pb2.DeleteRangeRequest(key=key, range_end=_range_end(key, prefix))
        return self._call(lambda kv, _: kv.DeleteRange(request, timeout=self.timeout_s), retry=False).deleted

    def txn(self, compares: Sequence[Compare], success: Sequence[RequestOp],
            failure: Sequence[RequestOp] = ()) -> TxnResult:
        """If every compare holds, apply success, else failure; atomically, at one revision."""
        request = rpc_pb2.TxnRequest(compare=compares, success=success, failure=failure)
        ops = max(len(success), len(failure))
        if ops > limits.etcd_txn_ops_max:
            raise errors.TooLarge(f"etcd txn of {ops} ops exceeds etcd_txn_ops_max={limits.etcd_txn_ops_max}")
        _check_request_bytes(request.ByteSize())
        reply = self._call(lambda kv, _: kv.Txn(request, timeout=self.timeout_s), retry=False)
        ops_taken = success if reply.succeeded else failure
        revision = reply.header.revision
        responses = [_op_result(op, response, revision) for op, response in zip(ops_taken, reply.responses)]
        return TxnResult(reply.succeeded, revision, responses)

    # Leases

    def lease_grant(self, ttl_s: int) -> int:
        """A new lease of ttl_s seconds; returns its id."""
        request = rpc_pb2.LeaseGrantRequest(TTL=ttl_s)
        reply = self._call(lambda _, lease: lease.LeaseGrant(request, timeout=self.timeout_s), retry=False)
        if reply.error:
            raise errors.Unavailable(f"etcd lease grant failed: {reply.error}")
        return reply.ID

    def lease_keepalive_once(self, lease_id: int) -> int:
        """Renew lease_id once; returns its new TTL in seconds (NotFound once it expired)."""
        def renew(_, lease: rpc_pb2_grpc.LeaseStub) -> int:
            replies = lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
                                           timeout=self.timeout_s)
            try:
                return next(replies).TTL
            finally:
                replies.cancel()                    # one renewal per stream: end it now
        ttl_s = self._call(renew, retry=True)        # renewing twice is harmless
        if ttl_s <= 0:
            raise errors.NotFound(f"etcd lease {lease_id:x} expired")
        return ttl_s

    def lease_keepalive(self, lease_id: int, interval_s: float,
                        on_lost: Callable[[errors.FfsError], None] | None = None) -> None:
        """Renew lease_id every interval_s on a background thread until lease_revoke or close.

        The thread stops when the lease is gone (expired or revoked elsewhere) and
        calls on_lost with the reason; a transient Unavailable is retried at the
        next interval (the lease survives while its TTL lasts).
        """
        with self._lock:
            if lease_id in self._keepalives:
                return
            keepalive = _KeepAlive(self, lease_id, interval_s, on_lost)
            self._keepalives[lease_id] = keepalive
        keepalive.start()

    def lease_revoke(self, lease_id: int) -> None:
        """End lease_id now, deleting every key attached to it (a lease already gone is fine)."""
        self._stop_keepalive(lease_id)
        request = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        with contextlib.suppress(errors.NotFound):   # retried after failover, or expired meanwhile
            self._call(lambda _, lease: lease.LeaseRevoke(request, timeout=self.timeout_s), retry=True)

    def lease_ttl_s(self, lease_id: int) -> int:
        """Seconds left on lease_id (-1: no such lease)."""
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id)
        return self._call(lambda _, lease: lease.LeaseTimeToLive(request, timeout=self.timeout_s),
                          retry=True).TTL

    def _stop_keepalive(self, lease_id: int) -> None:
        with self._lock:
            keepalive = self._keepalives.pop(lease_id, None)
        if keepalive is not None:
            keepalive.stop()

    def close(self) -> None:
        for lease_id in list(self._keepalives):
            self._stop_keepalive(lease_id)
        with self._lock:
            for channel in [self._channel, *self._retired]:
                if channel is not None:
                    channel.close()
            self._channel, self._stubs, self._retired = None, None, []

    def __enter__(self) -> "EtcdClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _KeepAlive:
    """The background renewal of one lease."""

    def __init__(self, client: EtcdClient, lease_id: int, interval_s: float,
                 on_lost: Callable[[errors.FfsError], None] | None) -> None:
        self.client, self.lease_id, self.interval_s, self.on_lost = client, lease_id, interval_s, on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"etcd-lease-{lease_id:x}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.client.lease_keepalive_once(self.lease_id)
            except errors.NotFound as lost:
                log.warning("etcd lease %x lost: %s", self.lease_id, lost)
                with self.client._lock:
                    self.client._keepalives.pop(self.lease_id, None)
                if self.on_lost is not None:
                    self.on_lost(lost)
                return
            except errors.FfsError as transient:
                log.warning("etcd lease %x not renewed (will retry): %s", self.lease_id, transient)


def _check_request_bytes(size_bytes: int) -> None:
    if size_bytes > limits.etcd_request_bytes_max:
        raise errors.TooLarge(f"etcd request of {size_bytes} bytes exceeds "
                              f"etcd_request_bytes_max={limits.etcd_request_bytes_max}")


def _key_value(kv) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _range_result(reply: rpc_pb2.RangeResponse, range_end: bytes, revision: int) -> RangeResult:
    """The page, at the revision asked for: etcd's header always carries the newest one."""
    kvs = [_key_value(kv) for kv in reply.kvs]
    more = reply.more and bool(kvs) and bool(range_end)
    return RangeResult(kvs, revision or reply.header.revision, reply.count,
                       kvs[-1].key + b"\0" if more else None)


def _op_result(op: RequestOp, response: rpc_pb2.ResponseOp, txn_revision: int) -> RangeResult | int:
    kind = response.WhichOneof("response")
    if kind == "response_range":
        return _range_result(response.response_range, op.request_range.range_end, txn_revision)
    if kind == "response_put":
        return txn_revision                       # every write of a txn shares its revision
    if kind == "response_delete_range":
        return response.response_delete_range.deleted
    raise errors.Internal(f"etcd txn response of unexpected kind {kind}")
