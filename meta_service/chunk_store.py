"""What the metadata service needs from storage, and how the process gets it.

Namespace (close/sync/truncate/copy) and the GC talk to storage only through
``ChunkStore``; unit tests inject an in-memory fake, the meta process injects
``LazyStorageClient``, which builds the client package's ``StorageClient``
on first use (so importing the meta service never needs the client package).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

from fireflyfs.common.errors import Unavailable
from fireflyfs.common.layout import Layout

log = logging.getLogger(__name__)


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

    def __init__(self, mgmtd_address: str, client_id: str | None = None) -> None:
        self.mgmtd_address = mgmtd_address
        self.client_id = client_id or f"meta-{os.getpid()}"
        self._client = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._client is None:
                try:
                    from fireflyfs.client.storage_client import StorageClient
                except ImportError as exc:
                    raise Unavailable(f"storage client unavailable in the meta process: {exc}") from exc
                self._client = StorageClient.for_mgmtd(self.mgmtd_address, self.client_id)
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
