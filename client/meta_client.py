"""A thin wrapper over the Meta stub: one call path for errors and retries.

Every RPC goes through ``_call``, which maps gRPC failures to FfsError (the
built-ins users catch) and retries ``Unavailable`` (and deadlines) with
bounded backoff, so a metadata service restart looks like a pause rather than
an error.

Retrying a mutation is safe because every mutation carries a ``request_id``
chosen here once per call and kept across its retries: the service records
each mutation's outcome under it, so a retry whose first attempt did commit
(the reply was lost to a crash) gets that outcome back instead of
AlreadyExists or NotFound.

Concurrent independent calls share RPCs (``Coalescer``): stats, read opens
and creates that threads of one process issue while ``inflight_max`` such
RPCs are already out wait and leave together in one BatchStat / BatchCreate.
Why: on this 2-core VM one small gRPC call costs ~0.2 ms of client CPU and
~0.35 ms of server CPU in the gRPC Python stack alone, whatever the handler
does (a 64-byte echo runs ~2,000-2,500/s), so 16 threads doing one call each
are CPU-bound at about the echo rate; batching the calls that are waiting
anyway spends that cost once per batch. A lone caller never waits: with
nothing in flight its call goes out at once, as a plain Stat/Open/Create.
Each create in a batch keeps its own request_id and outcome.

Replies that list many items stop at a byte budget and say ``more``
(meta_service/replies.py); ``batch_stat`` asks again for the rest, so callers
always get one result per path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Sequence

import grpc

from fireflyfs.common import limits
from fireflyfs.common.errors import Conflict, FfsError, InvalidArgument, Unavailable, error_from_name
from fireflyfs.common.rpc import error_from_rpc
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, types_pb2
from .channels import ChannelPool, shared_pool
from .config import ClientConfig
from .meta_servers import MetaServers
from .retry import RetryBudget

log = logging.getLogger(__name__)


def new_request_id() -> str:
    """A fresh idempotency key: unique across clients and restarts."""
    return uuid.uuid4().hex


coalesce_inflight_max_default = 2   # RPCs of one kind in flight before callers start to batch


# Modes of new files and directories before the umask, and the umask (as a shell's default).
FILE_MODE_DEFAULT = 0o666
DIR_MODE_DEFAULT = 0o777
UMASK_DEFAULT = 0o022

class _Slot:
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class Coalescer:
    """Callers of ``call(item)`` share RPCs: at most inflight_max go out at once; items that
    arrive meanwhile queue and the next free caller sends them as one batch.

    send(items) -> one result or exception per item (an exception raised by
    send itself becomes every item's). A caller finding a free RPC slot sends
    its own item alone (batch of one), so a single thread sees no added latency.
    """

    def __init__(self, send: Callable[[list], Sequence[Any]], inflight_max: int = coalesce_inflight_max_default,
                 batch_max: int = 256) -> None:
        if inflight_max < 1 or batch_max < 1:
            raise ValueError("inflight_max and batch_max must be at least 1")
        self._send = send
        self.inflight_max = inflight_max
        self.batch_max = batch_max
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Slot] = []
        self._inflight = 0

    def call(self, item):
        if self._pid != os.getpid():
            self._reset()   # a forked child: the parent's waiters and lock are not ours
        cond = self._cond
        with cond:   # fast path: nothing in flight and nobody waiting -> send alone, at once
            alone = self._inflight == 0 and not self._queue
            if alone:
                self._inflight = 1
        if alone:
            try:
                outcome = self._send([item])[0]
            finally:
                with cond:
                    self._inflight -= 1
                    if self._queue:
                        cond.notify_all()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        slot = _Slot(item)
        with cond:
            self._queue.append(slot)
            while not slot.done:
                if self._inflight < self.inflight_max:
                    batch = self._queue[:self.batch_max]
                    del self._queue[:len(batch)]
                    self._inflight += 1
                    cond.release()
                    try:
                        self._run(batch)
                    finally:
                        cond.acquire()
                        self._inflight -= 1
                        cond.notify_all()
                else:
                    cond.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, batch: list[_Slot]) -> None:
        try:
            outcomes = self._send([slot.item for slot in batch])
            if len(outcomes) != len(batch):
                raise Unavailable(f"batch of {len(batch)} got {len(outcomes)} results")
        except BaseException as exc:  # noqa: BLE001 - every waiter gets it
            outcomes = [exc] * len(batch)
        for slot, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                slot.error = outcome
            else:
                slot.result = outcome
            slot.done = True


class MetaClient:
    """Calls the Meta service at address; methods take and return protobuf messages.

    coalesce: share RPCs between concurrent stats, read opens and creates (module docstring).
    """

    def __init__(self, address: "str | MetaServers", pool: ChannelPool | None = None,
                 config: ClientConfig | None = None, unavailable_retry_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, coalesce: bool = True,
                 coalesce_inflight_max: int = coalesce_inflight_max_default, token: str | None = None,
                 umask: int = UMASK_DEFAULT) -> None:
        if not 0 <= umask <= 0o777:
            raise InvalidArgument(f"umask {umask:#o} is not in 0..0o777")
        self.umask = umask
        config = config or ClientConfig.from_env()
        if unavailable_retry_s is not None:
            config = dataclasses.replace(config, meta_retry_time_s=unavailable_retry_s)
        self.servers = address if isinstance(address, MetaServers) else MetaServers(address)
        self.address = ",".join(self.servers.configured)
        self.config = config
        self._pool = pool or shared_pool(token)
        self._sleep = sleep
        self._clock = clock
        self.coalesce = coalesce
        self._stats = Coalescer(self._send_stats, coalesce_inflight_max, limits.list_page_entries_default)
        self._read_opens = Coalescer(self._send_read_opens, coalesce_inflight_max,
                                     limits.list_page_entries_default)
        self._creates = Coalescer(self._send_creates, coalesce_inflight_max, 256)

    def _call(self, method: str, request, retry: bool = True, timeout_s: float | None = None):
        """One Meta RPC, retried while the service is unreachable (same request, same request_id);
        retry=False: one attempt (a caller on a schedule of its own, such as lease renewal).
        timeout_s: this call's deadline (default: the config's meta_timeout_s)."""
        if hasattr(request, "request_id") and not request.request_id:
            request.request_id = new_request_id()
        budget = None   # made on the first failure: the common path costs nothing for it
        while True:
            address = self.servers.pick()
            stub = self._pool.stub(address, meta_pb2_grpc.MetaStub)
            try:
                try:
                    return getattr(stub, method)(request, timeout=timeout_s or self.config.meta_timeout_s)
                except grpc.RpcError as rpc_error:   # as rpc_errors_mapped, without a generator per call
                    raise error_from_rpc(rpc_error) from rpc_error
            except (Unavailable, Conflict) as exc:
                if not retry:
                    raise
                log.info("Meta.%s at %s: %s; retrying", method, address, exc)
                if budget is None:
                    budget = RetryBudget(f"Meta.{method} at {self.address}", self.config,
                                         total_s=self.config.meta_retry_time_s, clock=self._clock,
                                         sleep=self._sleep)
                if isinstance(exc, Unavailable):
                    self.servers.failed(address)
                    if self.servers.alive():
                        budget.pause(exc)        # another server is up: go there at once
                        continue
                budget.backoff(exc)

    def stat(self, path: str, follow_symlinks: bool = True) -> meta_pb2.InodeReply:
        if self.coalesce and follow_symlinks:
            return self._stats.call(path)
        return self._call("Stat", meta_pb2.StatRequest(path=path, follow_symlinks=follow_symlinks))

    # ---- coalesced sends: a batch of one is the plain RPC ------------------

    def _send_stats(self, paths: list[str]) -> list:
        if len(paths) == 1:
            return [self._call("Stat", meta_pb2.StatRequest(path=paths[0], follow_symlinks=True))]
        reply = self.batch_stat(paths, attrs_only=True)
        return [error_from_name(r.error, r.message) if r.error else meta_pb2.InodeReply(inode=r.inode, path=r.path)
                for r in reply.results]

    def _send_read_opens(self, paths: list[str]) -> list:
        if len(paths) == 1:
            return [self._call("Open", meta_pb2.OpenRequest(path=paths[0], inline_ok=True))]
        reply = self.batch_stat(paths, inline_ok=True)
        out: list = []
        for r in reply.results:
            if r.error:
                out.append(error_from_name(r.error, r.message))
            elif r.inode.type == types_pb2.INODE_DIRECTORY:
                out.append(error_from_name("IsADirectory", f"{r.path} is a directory"))
            elif r.inode.type != types_pb2.INODE_FILE:
                out.append(error_from_name("InvalidArgument", f"{r.path} is not a regular file"))
            else:
                out.append(meta_pb2.OpenReply(inode=r.inode, path=r.path, inline=bool(r.inline_data),
                                              inline_data=r.inline_data, capability=r.capability))
        return out

    def _send_creates(self, requests: list[meta_pb2.CreateRequest]) -> list:
        if len(requests) == 1:
            return [self._call("Create", requests[0])]
        reply = self._call("BatchCreate", meta_pb2.BatchCreateRequest(requests=requests))
        return [error_from_name(r.error, r.message) if r.error else r.reply for r in reply.results]

    def batch_stat(self, paths: list[str], follow_symlinks: bool = True,
                   inline_ok: bool = False, attrs_only: bool = False) -> meta_pb2.BatchStatReply:
        """inline_ok: the caller serves reads of inline files from StatResult.inline_data (else the
        service first moves such files' bytes to chunks). attrs_only: plain stats (no bytes, no
        moves), as Stat answers. One result per path: a reply that stopped at its byte budget is
        followed by another for the remaining paths."""
        results: list[meta_pb2.StatResult] = []
        while True:
            reply = self._call("BatchStat", meta_pb2.BatchStatRequest(
                paths=paths[len(results):], follow_symlinks=follow_symlinks, inline_ok=inline_ok,
                attrs_only=attrs_only))
            results.extend(reply.results)
            if not reply.more or len(results) >= len(paths):
                return meta_pb2.BatchStatReply(results=results)
            if not reply.results:
                raise Unavailable("BatchStat answered no path and asked for more")

    def mkdirs(self, path: str, mode: int = 0, parents: bool = False, exist_ok: bool = False,
               layout: types_pb2.Layout | None = None) -> meta_pb2.InodeReply:
        return self._call("Mkdirs", meta_pb2.MkdirsRequest(
            path=path, mode=mode or DIR_MODE_DEFAULT & ~self.umask, parents=parents, exist_ok=exist_ok,
            layout=layout))

    def create(self, request: meta_pb2.CreateRequest) -> meta_pb2.OpenReply:
        if not request.mode:        # new files get the default mode less the umask, as open(2) does
            request.mode = FILE_MODE_DEFAULT & ~self.umask
        if not self.coalesce:
            return self._call("Create", request)
        if not request.request_id:
            request.request_id = new_request_id()   # before queueing: a resent batch keeps it
        return self._creates.call(request)

    def create_many(self, requests: list[meta_pb2.CreateRequest]) -> list:
        """Independent creates a caller already holds together (the asyncio face's LoopCoalescer):
        one Create for one, else one BatchCreate per ``limits.batch_create_requests_max``. Per
        request its OpenReply or its error; each keeps its own request_id across retries."""
        for request in requests:
            if not request.mode:
                request.mode = FILE_MODE_DEFAULT & ~self.umask
            if not request.request_id:
                request.request_id = new_request_id()
        out: list = []
        for start in range(0, len(requests), limits.batch_create_requests_max):
            part = requests[start:start + limits.batch_create_requests_max]
            try:
                out.extend(self._send_creates(part))
            except FfsError as exc:       # the whole batch failed: each of its creates says so
                out.extend([exc] * len(part))
        return out

    def open(self, path: str, write: bool = False, truncate: bool = False,
             client_id: str = "", inline_ok: bool = False) -> meta_pb2.OpenReply:
        """inline_ok (read opens): an inline file's bytes come in OpenReply.inline_data and the
        caller serves its reads from them (else the service first moves them to chunks)."""
        if self.coalesce and inline_ok and not (write or truncate):
            return self._read_opens.call(path)
        return self._call("Open", meta_pb2.OpenRequest(
            path=path, write=write, truncate=truncate, client_id=client_id, inline_ok=inline_ok))

    def create_inline(self, path: str, data: bytes, exclusive: bool = False, parents: bool = True,
                      mode: int = 0, layout: types_pb2.Layout | None = None) -> meta_pb2.OpenReply:
        """A whole small file in one call (meta_service/inline.py). reply.inline is False when the
        existing file cannot take it (hard links, open writers): nothing changed, write via storage."""
        return self.create(meta_pb2.CreateRequest(
            path=path, inline_data=data, inline=True, exclusive=exclusive, truncate=True,
            parents=parents, mode=mode, layout=layout))

    def close(self, inode_id: int, session_id: int, client_id: str, length_hint: int,
              update_mtime: bool = True) -> meta_pb2.InodeReply:
        """End the write session client_id holds."""
        return self._call("Close", meta_pb2.CloseRequest(
            inode_id=inode_id, session_id=session_id, client_id=client_id, length_hint=length_hint,
            update_mtime=update_mtime))

    def sync(self, inode_id: int, session_id: int, client_id: str, length_hint: int,
             update_mtime: bool = True) -> meta_pb2.InodeReply:
        """fsync through the write session client_id holds."""
        return self._call("Sync", meta_pb2.SyncRequest(
            inode_id=inode_id, session_id=session_id, client_id=client_id, length_hint=length_hint,
            update_mtime=update_mtime))

    def renew_sessions(self, client_id: str, sessions: list[tuple[int, int]],
                       timeout_s: float | None = None) -> meta_pb2.RenewSessionsReply:
        """Renew client_id's lease (one attempt within timeout_s: the renewer keeps its own
        schedule, shorter than the lease); the reply names the (inode, session) pairs that no
        longer exist."""
        request = meta_pb2.RenewSessionsRequest(
            client_id=client_id,
            sessions=[meta_pb2.SessionRef(inode_id=inode_id, session_id=session_id)
                      for inode_id, session_id in sessions])
        # Every meta server hears it: whichever is (or becomes) the mgmtd primary reaps.
        replies, failures = [], []
        for address in self.servers.known:
            try:
                replies.append(self._call_at(address, "RenewSessions", request, timeout_s))
            except FfsError as exc:
                failures.append(exc)
        if not replies:
            raise failures[0]
        return replies[0]

    def _call_at(self, address: str, method: str, request, timeout_s: float | None):
        """One attempt at one server."""
        stub = self._pool.stub(address, meta_pb2_grpc.MetaStub)
        try:
            return getattr(stub, method)(request, timeout=timeout_s or self.config.meta_timeout_s)
        except grpc.RpcError as rpc_error:
            raise error_from_rpc(rpc_error) from rpc_error

    def stat_inodes(self, inode_ids: list[int]) -> list[meta_pb2.InodeState]:
        return list(self._call("StatInodes", meta_pb2.StatInodesRequest(inode_ids=inode_ids)).states)

    def list_page(self, path: str, start_after: str = "", limit: int = 0,
                  with_attrs: bool = True) -> meta_pb2.ListReply:
        return self._call("List", meta_pb2.ListRequest(
            path=path, start_after=start_after, limit=limit, with_attrs=with_attrs))

    def find_page(self, path: str, maxdepth: int = 0, withdirs: bool = False,
                  start_after: str = "", limit: int = 0) -> meta_pb2.FindReply:
        return self._call("Find", meta_pb2.FindRequest(
            path=path, maxdepth=maxdepth, withdirs=withdirs, start_after=start_after,
            limit=limit))

    def rename(self, src: str, dst: str, no_replace: bool = False) -> None:
        self._call("Rename", meta_pb2.RenameRequest(src=src, dst=dst, no_replace=no_replace))

    def remove(self, path: str, recursive: bool = False, directory_only: bool = False,
               file_only: bool = False) -> None:
        self._call("Remove", meta_pb2.RemoveRequest(
            path=path, recursive=recursive, directory_only=directory_only, file_only=file_only))

    def symlink(self, path: str, target: str) -> meta_pb2.InodeReply:
        return self._call("Symlink", meta_pb2.SymlinkRequest(path=path, target=target))

    def readlink(self, path: str) -> str:
        return self._call("ReadLink", meta_pb2.ReadLinkRequest(path=path)).target

    def hard_link(self, src: str, dst: str) -> meta_pb2.InodeReply:
        return self._call("HardLink", meta_pb2.HardLinkRequest(src=src, dst=dst))

    def set_attr(self, request: meta_pb2.SetAttrRequest) -> meta_pb2.InodeReply:
        return self._call("SetAttr", request)

    def truncate(self, path: str, length: int) -> meta_pb2.InodeReply:
        return self._call("Truncate", meta_pb2.TruncateRequest(path=path, length=length))

    def statfs(self) -> meta_pb2.StatFsReply:
        return self._call("StatFs", types_pb2.Empty())

    def copy_file(self, src: str, dst: str, parents: bool = True) -> meta_pb2.InodeReply:
        return self._call("CopyFile", meta_pb2.CopyFileRequest(src=src, dst=dst, parents=parents))

    # ---- users and node keys (admins; whoami: anyone) ------------------------

    def user_add(self, name: str, uid: int | None = None, gids: list[int] | None = None,
                 admin: bool = False) -> meta_pb2.UserTokenReply:
        request = meta_pb2.UserAddRequest(name=name, gids=gids or [], admin=admin)
        if uid is not None:
            request.uid = uid
        return self._call("UserAdd", request)

    def user_list(self) -> list[meta_pb2.User]:
        return list(self._call("UserList", types_pb2.Empty()).users)

    def user_remove(self, name: str) -> None:
        self._call("UserRemove", meta_pb2.UserNameRequest(name=name))

    def user_rotate_token(self, name: str) -> meta_pb2.UserTokenReply:
        return self._call("UserRotateToken", meta_pb2.UserNameRequest(name=name))

    def whoami(self) -> meta_pb2.WhoAmIReply:
        return self._call("WhoAmI", types_pb2.Empty())

    def get_capability(self, inode_id: int, write: bool = False, previous: bytes = b"") -> bytes:
        return self._call("GetCapability", meta_pb2.GetCapabilityRequest(
            inode_id=inode_id, write=write, previous=previous)).capability

    def node_key(self, node_id: int) -> str:
        return self._call("NodeKey", meta_pb2.NodeKeyRequest(node_id=node_id)).token
