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
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Callable

from ..common.errors import Unavailable, rpc_errors_mapped
from ..proto import meta_pb2, meta_pb2_grpc, types_pb2
from .channels import ChannelPool, shared_pool
from .config import ClientConfig
from .retry import RetryBudget

log = logging.getLogger(__name__)


def new_request_id() -> str:
    """A fresh idempotency key: unique across clients and restarts."""
    return uuid.uuid4().hex


class MetaClient:
    """Calls the Meta service at address; methods take and return protobuf messages."""

    def __init__(self, address: str, pool: ChannelPool | None = None,
                 config: ClientConfig | None = None, unavailable_retry_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        config = config or ClientConfig.from_env()
        if unavailable_retry_s is not None:
            config = dataclasses.replace(config, meta_retry_time_s=unavailable_retry_s)
        self.address = address
        self.config = config
        self._pool = pool or shared_pool()
        self._sleep = sleep
        self._clock = clock

    def _call(self, method: str, request):
        """One Meta RPC, retried while the service is unreachable (same request, same request_id)."""
        if hasattr(request, "request_id") and not request.request_id:
            request.request_id = new_request_id()
        budget = RetryBudget(f"Meta.{method} at {self.address}", self.config,
                             total_s=self.config.meta_retry_time_s, clock=self._clock, sleep=self._sleep)
        while True:
            stub = self._pool.stub(self.address, meta_pb2_grpc.MetaStub)
            try:
                with rpc_errors_mapped():
                    return getattr(stub, method)(request, timeout=self.config.meta_timeout_s)
            except Unavailable as exc:
                log.info("Meta.%s: %s; retrying", method, exc)
                budget.backoff(exc)

    def stat(self, path: str, follow_symlinks: bool = True) -> meta_pb2.InodeReply:
        return self._call("Stat", meta_pb2.StatRequest(path=path, follow_symlinks=follow_symlinks))

    def batch_stat(self, paths: list[str], follow_symlinks: bool = True) -> meta_pb2.BatchStatReply:
        return self._call("BatchStat", meta_pb2.BatchStatRequest(
            paths=paths, follow_symlinks=follow_symlinks))

    def mkdirs(self, path: str, mode: int = 0, parents: bool = False, exist_ok: bool = False,
               layout: types_pb2.Layout | None = None) -> meta_pb2.InodeReply:
        return self._call("Mkdirs", meta_pb2.MkdirsRequest(
            path=path, mode=mode, parents=parents, exist_ok=exist_ok, layout=layout))

    def create(self, request: meta_pb2.CreateRequest) -> meta_pb2.OpenReply:
        return self._call("Create", request)

    def open(self, path: str, write: bool = False, truncate: bool = False,
             client_id: str = "") -> meta_pb2.OpenReply:
        return self._call("Open", meta_pb2.OpenRequest(
            path=path, write=write, truncate=truncate, client_id=client_id))

    def close(self, inode_id: int, session_id: int, length_hint: int,
              update_mtime: bool = True) -> meta_pb2.InodeReply:
        return self._call("Close", meta_pb2.CloseRequest(
            inode_id=inode_id, session_id=session_id, length_hint=length_hint,
            update_mtime=update_mtime))

    def sync(self, inode_id: int, length_hint: int, update_mtime: bool = True,
             truncate_version: int | None = None) -> meta_pb2.InodeReply:
        """truncate_version: the file's, as seen when the hint's bytes were written."""
        return self._call("Sync", meta_pb2.SyncRequest(
            inode_id=inode_id, length_hint=length_hint, update_mtime=update_mtime,
            truncate_version=truncate_version))

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
