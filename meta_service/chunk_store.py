"""What the metadata service needs from storage, and how the process gets it.

Namespace (close/sync/truncate/copy) and the GC talk to storage only through
``ChunkStore``; unit tests inject an in-memory fake, the meta process injects
``LazyStorageClient``, which builds the client package's ``StorageClient``
on first use (so importing the meta service never needs the client package).

``GatedChunkStore`` keeps slow storage from taking the metadata service down
with it: request handlers (Close/Sync length settling, CopyFile, truncate,
inline moves, session expiry) reach storage through it, and at most
``calls_max`` of them wait on storage at once. One more fails at once with a
retryable ``Unavailable`` (the client retries with backoff) instead of
occupying another gRPC worker thread, so Stat, List and Create keep their
threads whatever storage does. The GC thread uses the store directly: it is
one thread of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Protocol, TypeVar

from fireflyfs.common.errors import Unavailable
from fireflyfs.common.layout import Layout

from .capabilities import CapabilityIssuer

log = logging.getLogger(__name__)

T = TypeVar("T")


class ChunkStore(Protocol):
    def file_length_from_chunks(self, inode_id: int, layout: Layout) -> int:
        """Max extent over the stripe's chains (Storage.QueryLastChunk); 0 if no chunk."""

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        """Cut the chunk holding new_length, remove every later chunk."""

    def write_bytes(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        """Write data at offset of the file (an inline file moving to chunks)."""

    def remove_file_chunks(self, inode_id: int, layout: Layout) -> int:
        """Remove every chunk of the file; return how many were removed."""

    def copy_file_chunks(self, src_inode: int, src_layout: Layout, length: int,
                         dst_inode: int, dst_layout: Layout) -> None:
        """Copy [0, length) of src's chunks into dst's chunks."""


class LazyStorageClient:
    """A ChunkStore that builds ``StorageClient.for_mgmtd(address, client_id)`` on first use.

    The meta process hands it its own address: the storage client then reads
    routing from this process's Mgmtd service like any other client.
    """

    def __init__(self, mgmtd_address: str, client_id: str | None = None, token: str | None = None,
                 capabilities: CapabilityIssuer | None = None) -> None:
        self._capabilities = capabilities      # it signs its own capabilities (its bulk calls need them)
        self.mgmtd_address = mgmtd_address
        self.client_id = client_id or f"meta-{os.getpid()}"
        self._token = token            # this meta server's node key: storage nodes know it by it
        self._client = None
        self._lock = threading.Lock()

    def _sign(self, inode_id: int, write: bool, previous: bytes = b"") -> bytes:
        return self._capabilities.issue(inode_id, write) if self._capabilities is not None else b""

    def _get(self):
        with self._lock:
            if self._client is None:
                try:
                    from fireflyfs.client.capabilities import Capabilities
                    from fireflyfs.client.channels import shared_pool
                    from fireflyfs.client.storage_client import StorageClient
                except ImportError as exc:
                    raise Unavailable(f"storage client unavailable in the meta process: {exc}") from exc
                self._client = StorageClient.for_mgmtd(self.mgmtd_address, self.client_id,
                                                       pool=shared_pool(self._token),
                                                       capabilities=Capabilities(self._sign))
                log.info("storage client ready (routing from %s)", self.mgmtd_address)
            return self._client

    def file_length_from_chunks(self, inode_id: int, layout: Layout) -> int:
        return self._get().file_length_from_chunks(inode_id, layout)

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        self._get().truncate(inode_id, layout, new_length)

    def write_bytes(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        self._get().write(inode_id, layout, offset, data)

    def remove_file_chunks(self, inode_id: int, layout: Layout) -> int:
        return self._get().remove_file_chunks(inode_id, layout)

    def copy_file_chunks(self, src_inode: int, src_layout: Layout, length: int,
                         dst_inode: int, dst_layout: Layout) -> None:
        self._get().copy_file_chunks(src_inode, src_layout, length, dst_inode, dst_layout)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()


class GatedChunkStore:
    """A ChunkStore that lets at most calls_max callers into inner at once; the next one gets
    Unavailable("storage-bound operations busy") without waiting."""

    def __init__(self, inner: ChunkStore, calls_max: int) -> None:
        if calls_max < 1:
            raise ValueError("a storage gate needs at least one slot")
        self.inner = inner
        self.calls_max = calls_max
        self._slots = threading.BoundedSemaphore(calls_max)

    def _gated(self, call: Callable[..., T], *args) -> T:
        if not self._slots.acquire(blocking=False):
            raise Unavailable(f"storage-bound operations busy ({self.calls_max} waiting on storage); retry")
        try:
            return call(*args)
        finally:
            self._slots.release()

    def file_length_from_chunks(self, inode_id: int, layout: Layout) -> int:
        return self._gated(self.inner.file_length_from_chunks, inode_id, layout)

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        self._gated(self.inner.truncate, inode_id, layout, new_length)

    def write_bytes(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        self._gated(self.inner.write_bytes, inode_id, layout, offset, data)

    def remove_file_chunks(self, inode_id: int, layout: Layout) -> int:
        return self._gated(self.inner.remove_file_chunks, inode_id, layout)

    def copy_file_chunks(self, src_inode: int, src_layout: Layout, length: int,
                         dst_inode: int, dst_layout: Layout) -> None:
        self._gated(self.inner.copy_file_chunks, src_inode, src_layout, length, dst_inode, dst_layout)
