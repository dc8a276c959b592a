"""FfsClient: the public Python API of FireflyFS.

It joins the metadata client (namespace, sessions) and the storage client
(chunk IO, routed locally). Connections are opened lazily and belong to the
process that opened them: after ``os.fork()`` the first call notices the new
pid and builds fresh clients (with a fresh exactly-once client id) instead of
touching the parent's gRPC channels. A client pickles as its address.

Write sessions belong to the client id that opened them: only it closes or
syncs them, and the process's renewer keeps them alive while they are open
(session_lease.py). A forked child therefore neither renews nor closes its
parent's sessions; close write handles before ``close_connections``.

Returned metadata is the wire ``Inode`` message (fireflyfs.proto.types_pb2).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import uuid
from typing import Iterator

from fireflyfs.common import auth, tls
from fireflyfs.common.errors import FfsError, InvalidArgument, IsADirectory, NotADirectory, error_from_name
from fireflyfs.common.layout import Layout
from fireflyfs.common.paths import canonical_path
from fireflyfs.proto import meta_pb2, types_pb2
from .batch_read import BatchReadResult, byte_view, check_requests
from .buffers import ReadRequest, request_size
from .capabilities import Capabilities
from .config import ClientConfig
from .meta_client import UMASK_DEFAULT, MetaClient
from .meta_servers import MetaServers
from .routing import RoutingCache
from .session_lease import SessionLeases
from .storage_client import StorageClient


@dataclasses.dataclass(frozen=True, slots=True)
class FileHandle:
    """An open file: what the data path needs, so reads cost no metadata RPC."""

    path: str
    inode: types_pb2.Inode
    layout: Layout | None
    length: int                  # readable length when opened (writers track their own)
    session_id: int = 0          # write session; 0 for read-only handles

    @property
    def inode_id(self) -> int:
        return self.inode.id

    @property
    def writable(self) -> bool:
        return self.session_id != 0


def new_client_id() -> str:
    """Unique per process and client: exactly-once state must never be shared."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _layout_defaults(chunk_size: int, stripe_size: int,
                     chain_table_id: int) -> types_pb2.Layout | None:
    """A layout carrying only defaults (base and seed are the service's to pick)."""
    if not (chunk_size or stripe_size or chain_table_id):
        return None
    return types_pb2.Layout(chunk_size=chunk_size, stripe_size=stripe_size,
                            chain_table_id=chain_table_id)


class _Connections:
    """The per-process half of a client: rebuilt whole when the pid changes."""

    def __init__(self, address: str, config: ClientConfig, token: str | None,
                 capabilities: Capabilities, umask: int) -> None:
        self.pid = os.getpid()
        self.client_id = new_client_id()
        servers = MetaServers(address)      # one or several meta servers, shared by both
        self.meta = MetaClient(servers, config=config, token=token, umask=umask)
        self.routing = RoutingCache.for_mgmtd(servers, timeout_s=config.mgmtd_timeout_s, token=token)
        capabilities.set_fetch(self.meta.get_capability)
        self.storage = StorageClient(self.routing, self.client_id, config=config, capabilities=capabilities)
        self.leases = SessionLeases(self.meta, self.client_id, config.session_renew_interval_s)


class FfsClient:
    """A FireflyFS client for the cluster whose metadata service listens at address
    ("host:port", or several meta servers as "h1:p1,h2:p2": client/meta_servers.py).

    config: deadlines and retry budgets (default: ClientConfig.from_env()).
    token: the user's token (default: FFS_TOKEN, else the token file: common/auth.client_token).
    umask: taken from the mode of new files (0o666) and directories (0o777), as a shell's is.
    tls_ca: the cluster CA's certificate (default FFS_TLS_CA); without one, plaintext (--insecure clusters).
    """

    def __init__(self, address: str, config: ClientConfig | None = None, token: str | None = None,
                 umask: int = UMASK_DEFAULT, tls_ca: str | None = None) -> None:
        tls.configure_client_from_env(tls_ca)    # the cluster CA: tls_ca, else FFS_TLS_CA
        self.tls_ca = tls_ca                     # kept so a spawned worker trusts the same CA
        self.address = address
        self.umask = umask
        self.config = config or ClientConfig.from_env()
        self.token = auth.client_token(token)
        # Kept here, not in the per-process connections: a forked worker inherits them.
        self.capabilities = Capabilities()
        self._connections: _Connections | None = None
        self._lock = threading.Lock()

    def __reduce__(self):
        return (type(self), (self.address, self.config, self.token, self.umask, self.tls_ca))

    def __repr__(self) -> str:
        return f"FfsClient({self.address!r})"

    def _current(self) -> _Connections:
        connections = self._connections
        if connections is None or connections.pid != os.getpid():
            if connections is not None and connections.pid != os.getpid():
                self._lock = threading.Lock()   # the parent's may be held forever
            with self._lock:
                connections = self._connections
                if connections is None or connections.pid != os.getpid():
                    connections = _Connections(self.address, self.config, self.token, self.capabilities,
                                               self.umask)
                    self._connections = connections
        return connections

    @property
    def meta(self) -> MetaClient:
        return self._current().meta

    @property
    def storage(self) -> StorageClient:
        return self._current().storage

    @property
    def routing(self) -> RoutingCache:
        return self._current().routing

    @property
    def client_id(self) -> str:
        return self._current().client_id

    # ---- namespace ------------------------------------------------------

    def stat(self, path: str, follow_symlinks: bool = True) -> types_pb2.Inode:
        return self.meta.stat(canonical_path(path), follow_symlinks).inode

    def batch_stat(self, paths: list[str]) -> list[meta_pb2.StatResult]:
        """One result per path (error name in .error, empty on success)."""
        return list(self.meta.batch_stat([canonical_path(p) for p in paths]).results)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except FileNotFoundError:
            return False

    def listdir(self, path: str, with_attrs: bool = True,
                page_entries: int = 0) -> list[meta_pb2.DirEntry]:
        """All entries of a directory, fetched page by page."""
        path = canonical_path(path)
        entries: list[meta_pb2.DirEntry] = []
        start_after = ""
        while True:
            reply = self.meta.list_page(path, start_after, page_entries, with_attrs)
            entries.extend(reply.entries)
            if not reply.more or not reply.entries:
                return entries
            start_after = reply.entries[-1].name

    def find(self, path: str, maxdepth: int = 0, withdirs: bool = False,
             page_entries: int = 0) -> Iterator[meta_pb2.FoundEntry]:
        """Every entry below path (server-side walk), page by page."""
        path = canonical_path(path)
        start_after = ""
        while True:
            reply = self.meta.find_page(path, maxdepth, withdirs, start_after, page_entries)
            yield from reply.entries
            if not reply.more or not reply.entries:
                return
            start_after = reply.entries[-1].path

    def mkdir(self, path: str, mode: int = 0, parents: bool = False, exist_ok: bool = False,
              chunk_size: int = 0, stripe_size: int = 0, chain_table_id: int = 0) -> types_pb2.Inode:
        """Make a directory. Non-zero chunk_size/stripe_size/chain_table_id become the
        default layout of files created in it (else inherited from its parent)."""
        return self.meta.mkdirs(canonical_path(path), mode, parents, exist_ok,
                                _layout_defaults(chunk_size, stripe_size, chain_table_id)).inode

    def rename(self, src: str, dst: str, no_replace: bool = False) -> None:
        self.meta.rename(canonical_path(src), canonical_path(dst), no_replace)

    def remove(self, path: str, recursive: bool = False, directory_only: bool = False,
               file_only: bool = False) -> None:
        self.meta.remove(canonical_path(path), recursive, directory_only, file_only)

    def symlink(self, path: str, target: str) -> types_pb2.Inode:
        return self.meta.symlink(canonical_path(path), target).inode

    def readlink(self, path: str) -> str:
        return self.meta.readlink(canonical_path(path))

    def link(self, src: str, dst: str) -> types_pb2.Inode:
        return self.meta.hard_link(canonical_path(src), canonical_path(dst)).inode

    def setattr(self, path: str, follow_symlinks: bool = True, **attrs: int) -> types_pb2.Inode:
        """Set any of mode, uid, gid, mtime_ns, atime_ns."""
        request = meta_pb2.SetAttrRequest(path=canonical_path(path),
                                          follow_symlinks=follow_symlinks, **attrs)
        return self.meta.set_attr(request).inode

    def touch(self, path: str) -> types_pb2.Inode:
        """Set mtime to now on an existing path."""
        now_ns = time.time_ns()
        return self.setattr(path, mtime_ns=now_ns, atime_ns=now_ns)

    def truncate(self, path: str, length: int) -> types_pb2.Inode:
        return self.meta.truncate(canonical_path(path), length).inode

    def statfs(self) -> meta_pb2.StatFsReply:
        return self.meta.statfs()

    def copy(self, src: str, dst: str, parents: bool = True) -> types_pb2.Inode:
        """Server-side file copy (Meta.CopyFile)."""
        return self.meta.copy_file(canonical_path(src), canonical_path(dst), parents).inode

    # ---- files ----------------------------------------------------------

    def _handle(self, reply: meta_pb2.OpenReply, path: str) -> FileHandle:
        self.capabilities.remember(reply.inode.id, reply.capability)
        inode = reply.inode
        if reply.session_id:
            self._current().leases.opened(inode.id, reply.session_id, reply.session_lease_ms)
        if inode.type == types_pb2.INODE_DIRECTORY:
            raise IsADirectory(f"{path} is a directory")
        layout = Layout.from_proto(inode.layout) if inode.layout.chunk_size else None
        others = inode.open_write_sessions - (1 if reply.session_id else 0)
        length = self.current_length(inode) if others > 0 else inode.length
        return FileHandle(reply.path or path, inode, layout, length, reply.session_id)

    def current_length(self, inode: types_pb2.Inode) -> int:
        """A file's length now: while writers are active the stored one is only a hint,
        so the chunks' extent is asked too (3FS's rule)."""
        if inode.type != types_pb2.INODE_FILE or not inode.open_write_sessions:
            return inode.length
        if not inode.layout.chunk_size:
            return inode.length
        return max(inode.length, self.storage.file_length_from_chunks(
            inode.id, Layout.from_proto(inode.layout)))

    def open(self, path: str, write: bool = False, truncate: bool = False) -> FileHandle:
        """Open an existing file (a write session when write=True)."""
        path = canonical_path(path)
        reply = self.meta.open(path, write, truncate, self.client_id if write else "")
        return self._handle(reply, path)

    def create(self, path: str, exclusive: bool = False, truncate: bool = True,
               parents: bool = True, mode: int = 0, chunk_size: int = 0,
               stripe_size: int = 0) -> FileHandle:
        """Create (or open, unless exclusive) a file for writing, making parents by default.
        Non-zero chunk_size/stripe_size override the directory's defaults for a new file."""
        path = canonical_path(path)
        request = meta_pb2.CreateRequest(
            path=path, mode=mode, exclusive=exclusive, truncate=truncate, parents=parents,
            open_for_write=True, client_id=self.client_id,
            layout=_layout_defaults(chunk_size, stripe_size, 0))
        return self._handle(self.meta.create(request), path)

    def open_many(self, paths: list[str]) -> list[FileHandle | Exception]:
        """Read handles for many files in one Meta.BatchStat; an error in a path's slot."""
        paths = [canonical_path(p) for p in paths]
        results = self.meta.batch_stat(paths).results if paths else []
        handles: list[FileHandle | Exception] = []
        for path, result in zip(paths, results):
            try:
                if result.error:
                    raise error_from_name(result.error, result.message)
                handles.append(self._handle(meta_pb2.OpenReply(inode=result.inode, path=path,
                                                               capability=result.capability), path))
            except Exception as exc:  # noqa: BLE001 - returned in its slot
                handles.append(exc)
        return handles

    def close(self, handle: FileHandle, length_hint: int = 0) -> types_pb2.Inode:
        """End a write session; length_hint is the highest offset written."""
        if not handle.writable:
            return handle.inode
        connections = self._current()
        try:
            return connections.meta.close(handle.inode_id, handle.session_id, connections.client_id,
                                          length_hint).inode
        finally:
            connections.leases.closed(handle.inode_id, handle.session_id)

    def sync(self, handle: FileHandle, length_hint: int = 0) -> types_pb2.Inode:
        """fsync: make the stored length cover what this handle wrote (session stays open).

        A truncate since the handle opened wins over the hint (the service
        knows the session's truncate version). A read-only handle has nothing
        to sync.
        """
        if not handle.writable:
            return handle.inode
        connections = self._current()
        return connections.meta.sync(handle.inode_id, handle.session_id, connections.client_id,
                                     length_hint).inode

    def pread(self, handle: FileHandle, offset: int, length: int) -> bytes:
        """Read from an open file, clamped at its length when opened."""
        if handle.layout is None or length <= 0:
            return b""
        return self.storage.read(handle.inode_id, handle.layout, handle.length, offset, length)

    def pread_many(self, reads: list[tuple[FileHandle, int, int]]) -> list[bytes]:
        """(handle, offset, length) reads of any files, batched per storage node."""
        requests = [ReadRequest(h.inode_id, h.layout, h.length, offset, max(0, length))
                    for h, offset, length in reads if h.layout is not None]
        results = iter(self.storage.read_many(requests))
        return [next(results) if h.layout is not None else b"" for h, _, _ in reads]

    def read_batch(self, requests, into=None) -> BatchReadResult:
        """Many (path or FileHandle, offset, length) reads into one buffer, batched per storage node.

        into: a writable C-contiguous buffer (bytearray, memoryview, numpy array,
        torch CPU tensor) of at least sum(lengths) bytes, or None (a bytearray is
        allocated). Request i's bytes land at byte offset sum(lengths[:i]).
        Distinct paths are opened with one Meta.BatchStat; handles cost no
        metadata RPC (their length is the one known at open). Per request:
        nbytes (short at EOF, holes read as zeros) and an error (NotFound,
        IsADirectory, ChecksumMismatch, ...). Raises only InvalidArgument, for
        bad arguments.
        """
        files, offsets, lengths, slots, total = check_requests(requests)
        buffer = byte_view(into, total)
        count = len(files)
        failures: list[FfsError | None] = [None] * count
        nbytes = [0] * count
        paths = sorted({f for f in files if not isinstance(f, FileHandle)}, key=str)
        opened: dict[str, FileHandle | Exception] = {}
        if paths:
            for path in paths:
                if not isinstance(path, str):
                    raise InvalidArgument(f"read_batch file {path!r} is neither a path nor a FileHandle")
            opened = dict(zip(paths, self.open_many(paths)))
        reads: list[ReadRequest] = []
        outs: list[memoryview] = []
        numbers: list[int] = []
        for number, file in enumerate(files):
            handle = file if isinstance(file, FileHandle) else opened[file]
            if isinstance(handle, Exception):
                failures[number] = handle if isinstance(handle, FfsError) else FfsError(str(handle))
                continue
            if handle.layout is None or lengths[number] == 0:
                continue
            request = ReadRequest(handle.inode_id, handle.layout, handle.length, offsets[number],
                                  lengths[number])
            size = request_size(request)
            if size == 0:
                continue
            nbytes[number] = size
            reads.append(request)
            outs.append(buffer[slots[number]:slots[number] + size])
            numbers.append(number)
        if reads:
            for number, failure in zip(numbers, self.storage.read_into(reads, outs)):
                if failure is not None:
                    failures[number] = failure
                    nbytes[number] = 0
        return BatchReadResult(buffer, slots, nbytes, failures)

    def pwrite(self, handle: FileHandle, offset: int, data: bytes) -> int:
        """Write data at offset of a file open for writing; returns len(data)."""
        if not handle.writable:
            raise PermissionError(f"{handle.path} is not open for writing")
        if handle.layout is None:
            raise NotADirectory(f"{handle.path} has no layout")
        if data:
            self.storage.write(handle.inode_id, handle.layout, offset, data)
        return len(data)

    def read_file(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of a file (None: to EOF)."""
        handle = self.open(path)
        end = handle.length if end is None else min(end, handle.length)
        return self.pread(handle, start, end - start)

    def write_file(self, path: str, data: bytes, exclusive: bool = False,
                   parents: bool = True) -> types_pb2.Inode:
        """Create or replace a whole file with data."""
        handle = self.create(path, exclusive=exclusive, truncate=True, parents=parents)
        try:
            self.pwrite(handle, 0, data)
        except BaseException:
            self.close(handle, 0)
            raise
        return self.close(handle, len(data))

    def close_connections(self) -> None:
        """Forget this process's connections (they are shared; nothing else is closed)."""
        self._connections = None
