"""FireflyFile: fsspec's buffered file over one FfsClient file handle.

Read mode opens (one Meta.Open, which is the stat) and then reads straight
from storage with the length known at open: no metadata RPC per read. Every
fetch goes through one ``SequentialReader`` (client/streams.py): reads that
continue where the last one ended grow a readahead window of chunk requests
sent ahead on bulk connections (1, 2, ... up to ``readahead_chunks``), whose
replies wait in the socket buffers until asked for; a read anywhere else
asks for exactly its bytes, so random access wastes nothing. Reads of at
least ``direct_read_bytes_min`` (``readinto`` into the caller's buffer, or
``read`` of a large range) skip fsspec's cache and land in the caller's
buffer (or the returned bytes object) without an intermediate copy. So
``cache_type="none"`` suits both sequential scans and random reads; fsspec's
``readahead`` cache (the fsspec default) still works on top.

Write modes open a write session up front, so ``xb`` on an existing path
raises ``FileExistsError`` at ``open`` and a bad parent fails at once.
``write`` copies into chunk-aligned buffers; each full chunk goes to storage
on an IO thread while the caller goes on (``WriteBehind``: at most
``write_behind_chunks`` in flight), so each Storage write fills a whole
chunk. ``flush()`` is the file's fsync: it writes the buffered tail, waits for
every acknowledgement (storage acknowledges only what every replica made
durable, docs/durability.md) and settles the file's length on meta
(Meta.Sync), so the bytes written so far are durable and visible to a new
open when it returns; the session stays open. ``close`` does the same and
ends the session with the highest offset written as the length hint; an
error is raised there at the latest.
Under
``fs.transaction`` (autocommit=False) the bytes go to a hidden temporary file
in the same directory that ``commit`` renames into place.
"""

from __future__ import annotations

import logging
import uuid

from fsspec.spec import AbstractBufferedFile

from fireflyfs.common import limits, paths
from .client import FileHandle
from .buffers import filled_bytes
from .streams import SequentialReader, WriteBehind

log = logging.getLogger(__name__)


class FireflyFile(AbstractBufferedFile):
    DEFAULT_BLOCK_SIZE = limits.chunk_size_default
    direct_read_bytes_min = 256 * 1024    # reads this large bypass fsspec's cache

    def __init__(self, fs, path: str, mode: str = "rb", block_size="default",
                 autocommit: bool = True, cache_type: str = "readahead",
                 cache_options=None, **kwargs) -> None:
        self._client = fs.client
        self._handle: FileHandle | None = None
        self._base_offset = 0
        self._temp_path: str | None = None
        self._reader: SequentialReader | None = None
        self._writer: WriteBehind | None = None
        self._synced_end = 0         # file offset up to which Meta.Sync recorded the length
        size = None
        if mode == "rb":
            self._handle = self._client.open(path)
            size = self._handle.length
        elif mode in ("wb", "ab", "xb"):
            self._handle = self._open_for_write(path, mode, autocommit)
            if mode == "ab":
                self._base_offset = self._handle.length
        kwargs.pop("size", None)
        super().__init__(fs, path, mode, block_size, autocommit, cache_type=cache_type,
                         cache_options=cache_options, size=size, **kwargs)
        storage = self._client.storage
        if mode == "rb":
            self.details = fs._inode_info(path, self._handle.inode, size=size)
            if self._handle.layout is not None:
                self._reader = SequentialReader(storage, self._handle.inode_id, self._handle.layout, size)
        else:
            if mode == "ab":
                self.loc = self._base_offset
            if self._handle.layout is None:
                raise NotADirectoryError(f"{path} has no layout to write with")
            self._writer = WriteBehind(storage, self._handle.inode_id, self._handle.layout,
                                       self._base_offset)
            self._synced_end = self._base_offset

    def _open_for_write(self, path: str, mode: str, autocommit: bool) -> FileHandle:
        target = path
        if not autocommit:
            if mode == "xb" and self._client.exists(path):
                raise FileExistsError(path)
            parent, name = paths.split_parent(path)
            target = paths.join(parent, f".{name}.ffs-tmp-{uuid.uuid4().hex[:12]}")
            self._temp_path = target
        if mode == "ab":
            return self._client.create(target, exclusive=False, truncate=False, parents=True)
        return self._client.create(target, exclusive=(mode == "xb"), truncate=True, parents=True)

    # ---- reading ----------------------------------------------------------

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if self._reader is None or end <= start:
            return b""
        reader = self._reader
        return filled_bytes(end - start, lambda view: reader.readinto(start, view))

    def read(self, length: int = -1) -> bytes:
        """Large reads go straight into the returned bytes; small ones through fsspec's cache."""
        if self.mode == "rb" and not self.closed and self._reader is not None:
            length = -1 if length is None else int(length)
            count = self.size - self.loc if length < 0 else min(length, self.size - self.loc)
            if count >= self.direct_read_bytes_min:
                reader, start = self._reader, self.loc
                data = filled_bytes(count, lambda view: reader.readinto(start, view))
                self._read_past_cache(start, count)
                return data
        return super().read(length)

    def readinto(self, b) -> int:
        """Large reads land in b with no copy of ours; small ones through fsspec's cache."""
        out = memoryview(b)
        if out.format != "B" or out.ndim != 1:
            out = out.cast("B")
        if (self.mode == "rb" and not self.closed and self._reader is not None
                and len(out) >= self.direct_read_bytes_min):
            start = self.loc
            count = self._reader.readinto(start, out)
            self._read_past_cache(start, count)
            return count
        return super().readinto(out)

    def _read_past_cache(self, start: int, count: int) -> None:
        self.loc = start + count
        read_past = getattr(self.cache, "read_past", None)    # the ffs-adaptive cache: keep its window
        if read_past is not None:
            read_past(start, start + count)

    # ---- writing ----------------------------------------------------------

    def write(self, data) -> int:
        if not self.writable():
            raise ValueError("File not in write mode")
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self.forced:
            raise ValueError("This file has been force-flushed, can only close")
        count = self._writer.write(data)
        self.loc += count
        return count

    def flush(self, force: bool = False) -> None:
        """fsync: everything written is on storage (acknowledged) and the length on meta.

        force (from close): the same minus Meta.Sync, since close's Meta.Close settles the length.
        """
        if self.closed:
            raise ValueError("Flush on closed file")
        if force and self.forced:
            raise ValueError("Force flush cannot be called more than once")
        if self.mode == "rb":
            return
        if self.offset is None:
            self.offset = 0
        if force:
            self.forced = True
        self._writer.flush()
        self.offset = self._writer.acknowledged_end - self._base_offset
        end = self._writer.acknowledged_end
        if not force and end > self._synced_end:
            self._client.sync(self._handle, end)
            self._synced_end = end

    def _initiate_upload(self) -> None:
        """Nothing to do: the write session was opened with the file."""

    def close(self) -> None:
        if self.closed or getattr(self, "_unclosable", False):
            super().close()
            return
        if self.mode == "rb":
            if self._reader is not None:
                self._reader.close()
            super().close()
            return
        try:
            super().close()
        except BaseException:
            if self._writer is not None:
                self._writer.abort()
            self._end_session(quiet=True)
            raise
        self._end_session(quiet=False)

    def _end_session(self, quiet: bool) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        written_end = self._writer.end if self._writer is not None else self._base_offset
        try:
            self._client.close(handle, written_end)
        except Exception:
            if not quiet:
                raise
            log.warning("closing write session of %s failed", self.path, exc_info=True)
        finally:
            self.fs.invalidate_cache(self.path)

    def commit(self) -> None:
        """Under a transaction: move the temporary file into place."""
        if self._temp_path is not None:
            self._client.rename(self._temp_path, self.path, no_replace=(self.mode == "xb"))
            self._temp_path = None
            self.fs.invalidate_cache(self.path)

    def discard(self) -> None:
        """Under a transaction: drop the temporary file."""
        if self._temp_path is not None:
            try:
                self._client.remove(self._temp_path, file_only=True)
            except FileNotFoundError:
                pass
            self._temp_path = None
