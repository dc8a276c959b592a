"""FireflyFile: fsspec's buffered file over one FfsClient file handle.

Read mode opens (one Meta.Open, which is the stat) and then reads straight
from storage with the length known at open: no metadata RPC per read. The
read cache is fsspec's; the default ``readahead`` with a chunk-sized block
suits sequential reads; random-access readers pass ``cache_type="none"`` (or
use ``cat_ranges``).

Write modes open a write session up front, so ``xb`` on an existing path
raises ``FileExistsError`` at ``open`` and a bad parent fails at once.
Buffered bytes are written at the running offset, flushed on chunk
boundaries so each Storage.Write fills whole chunks; ``close`` ends the
session with the highest offset written as the length hint. Under
``fs.transaction`` (autocommit=False) the bytes go to a hidden temporary file
in the same directory that ``commit`` renames into place.
"""

from __future__ import annotations

import io
import logging
import uuid

from fsspec.spec import AbstractBufferedFile

from ..common import limits, paths
from .client import FileHandle

log = logging.getLogger(__name__)


class FireflyFile(AbstractBufferedFile):
    DEFAULT_BLOCK_SIZE = limits.chunk_size_default

    def __init__(self, fs, path: str, mode: str = "rb", block_size="default",
                 autocommit: bool = True, cache_type: str = "readahead",
                 cache_options=None, **kwargs) -> None:
        self._client = fs.client
        self._handle: FileHandle | None = None
        self._base_offset = 0
        self._temp_path: str | None = None
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
        if mode == "rb":
            self.details = fs._inode_info(path, self._handle.inode, size=size)
        elif mode == "ab":
            self.loc = self._base_offset

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
        return self._client.pread(self._handle, start, end - start)

    # ---- writing ----------------------------------------------------------

    def _initiate_upload(self) -> None:
        """Nothing to do: the write session was opened with the file."""

    def _upload_chunk(self, final: bool = False):
        data = self.buffer.getvalue()
        start = self._base_offset + self.offset
        if not final:
            # Write only up to the last chunk boundary; keep the tail buffered.
            chunk_size = self._handle.layout.chunk_size
            aligned_end = (start + len(data)) // chunk_size * chunk_size
            count = aligned_end - start
            if count <= 0:
                return False
            self._client.pwrite(self._handle, start, data[:count])
            self.offset += count
            self.buffer = io.BytesIO()
            self.buffer.write(data[count:])
            return False
        if data:
            self._client.pwrite(self._handle, start, data)
        return True

    def close(self) -> None:
        if self.closed or self.mode == "rb" or getattr(self, "_unclosable", False):
            super().close()
            return
        try:
            super().close()
        except BaseException:
            self._end_session(quiet=True)
            raise
        self._end_session(quiet=False)

    def _end_session(self, quiet: bool) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        written_end = self._base_offset + (self.offset or 0)
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
