"""The loaders' one door to storage: open files, batched ranged reads, atomic writes.

Everything the loaders read or write goes through this module, so moving to
the client's upcoming batch read API (``read_batch(requests, into=buffer)``,
results in place, USRBIO-like) is a change here only. Today a batch of
FireflyFS ranges is one ``FfsClient.pread_many`` call: one Storage.BatchRead
per storage node, nodes in parallel. Other fsspec URLs work too (local paths
through ``os.pread``, anything else through ``cat_ranges``), which keeps the
formats usable, and testable, off the cluster.

Open files are cached per process and per URL: record and token files are
immutable once written, so a handle (inode, layout, length) stays valid and a
batch costs no metadata RPC. The cache is dropped after ``fork()`` (the
clients below it reconnect by themselves), and nothing here pickles: datasets
carry URLs and reopen lazily in each worker. Writers that replace files
(checkpoints) open uncached.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import threading
import uuid
from typing import Any, Iterable, Sequence

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..client.client import FfsClient, FileHandle
from ..client.fsspec_fs import FireflyFileSystem
from ..common import limits

log = logging.getLogger(__name__)

write_window_chunks = limits.io_threads_default   # chunks per pwrite: one per IO thread
generic_write_block_bytes = 8 * limits.MiB


@dataclasses.dataclass(frozen=True, eq=False)
class OpenFile:
    """A file opened in this process: its URL, length and whatever its backend needs."""

    url: str
    path: str
    length: int
    fs: Any
    ffs_handle: FileHandle | None = None    # FireflyFS files
    local_file: Any = None                  # local files: an unbuffered FileIO for os.pread

    @property
    def client(self) -> FfsClient | None:
        return self.fs.client if self.ffs_handle is not None else None


_cache: dict[tuple[str, tuple], OpenFile] = {}
_cache_pid = os.getpid()
_cache_lock = threading.Lock()


def _options_key(storage_options: dict | None) -> tuple:
    return tuple(sorted((storage_options or {}).items()))


def _open_uncached(url: str, storage_options: dict | None) -> OpenFile:
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if isinstance(fs, FireflyFileSystem):
        handle = fs.client.open(path)
        return OpenFile(url, path, handle.length, fs, ffs_handle=handle)
    if isinstance(fs, LocalFileSystem):
        local = open(path, "rb", buffering=0)   # noqa: SIM115 - lives in the cache
        return OpenFile(url, path, os.fstat(local.fileno()).st_size, fs, local_file=local)
    return OpenFile(url, path, int(fs.info(path)["size"]), fs)


def open_file(url: str, storage_options: dict | None = None, cached: bool = True) -> OpenFile:
    """Open url for ranged reads; cached per process unless cached=False."""
    global _cache_pid
    if not cached:
        return _open_uncached(url, storage_options)
    key = (url, _options_key(storage_options))
    with _cache_lock:
        if _cache_pid != os.getpid():
            _cache.clear()       # the parent's handles: drop, never close
            _cache_pid = os.getpid()
        found = _cache.get(key)
    if found is not None:
        return found
    opened = _open_uncached(url, storage_options)
    with _cache_lock:
        return _cache.setdefault(key, opened)


def clear_cache() -> None:
    """Forget every cached open file (e.g. after a dataset file was replaced)."""
    with _cache_lock:
        _cache.clear()


def _after_fork_in_child() -> None:
    global _cache_lock
    _cache_lock = threading.Lock()   # a parent thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


def read_ranges(reads: Sequence[tuple[OpenFile, int, int]]) -> list[bytes]:
    """Bytes of each (file, offset, length), clamped at the file's end.

    All FireflyFS ranges of one cluster go out as one batched request.
    """
    out: list[bytes | None] = [None] * len(reads)
    groups: dict[int, list[int]] = {}
    for slot, (opened, _offset, _length) in enumerate(reads):
        groups.setdefault(id(opened.fs), []).append(slot)
    for slots in groups.values():
        first = reads[slots[0]][0]
        if first.ffs_handle is not None:
            results = first.client.pread_many(
                [(reads[s][0].ffs_handle, reads[s][1], reads[s][2]) for s in slots])
        elif first.local_file is not None:
            results = [os.pread(reads[s][0].local_file.fileno(), reads[s][2], reads[s][1])
                       for s in slots]
        else:
            results = first.fs.cat_ranges([reads[s][0].path for s in slots],
                                          [reads[s][1] for s in slots],
                                          [reads[s][1] + reads[s][2] for s in slots],
                                          on_error="raise")
        for slot, data in zip(slots, results):
            out[slot] = data
    return out  # type: ignore[return-value]


def read_ranges_into(reads: Sequence[tuple[OpenFile, int, int]],
                     buffers: Sequence[memoryview]) -> None:
    """Fill each buffer with its range (the shape the client's read_batch will serve
    without a copy); raises EOFError if a range ends beyond its file."""
    for (opened, offset, length), buffer, data in zip(reads, buffers, read_ranges(reads)):
        if len(data) != length or len(buffer) != length:
            raise EOFError(f"{opened.url}: wanted {length} bytes at {offset}, got {len(data)}")
        buffer[:] = data


# ---- writing ---------------------------------------------------------------

def temp_path_for(path: str) -> str:
    """A hidden name next to path: same directory, so the final rename is atomic."""
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


def write_atomically(url: str, blocks: Iterable[bytes | memoryview],
                     storage_options: dict | None = None) -> int:
    """Write the concatenated blocks to url, visible only when complete; returns bytes.

    The bytes go to a temporary name in the same directory, which one rename
    (Meta.Rename on FireflyFS) puts in place: a crash part-way leaves the old
    file untouched and at most an orphan ``.name.tmp-*`` file.
    """
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    temp = temp_path_for(path)
    try:
        if isinstance(fs, FireflyFileSystem):
            written = _write_ffs(fs.client, temp, blocks)
            fs.client.rename(temp, path)
        else:
            parent = posixpath.dirname(path)
            if parent:
                fs.makedirs(parent, exist_ok=True)
            written = _write_generic(fs, temp, blocks)
            fs.mv(temp, path)
        fs.invalidate_cache(path)
        return written
    except BaseException:
        try:
            if fs.exists(temp):
                fs.rm(temp)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.warning("could not remove temporary file %s", temp, exc_info=True)
        raise


def _write_generic(fs, path: str, blocks: Iterable[bytes | memoryview]) -> int:
    written = 0
    with fs.open(path, "wb", block_size=generic_write_block_bytes) as out:
        for block in blocks:
            out.write(block)
            written += memoryview(block).nbytes
    return written


def _write_ffs(client: FfsClient, path: str, blocks: Iterable[bytes | memoryview]) -> int:
    """Gather blocks into chunk-aligned windows, each one parallel pwrite (one
    Storage.Write per whole chunk, chunks in parallel)."""
    handle = client.create(path, exclusive=True, parents=True)
    window_bytes = handle.layout.chunk_size * write_window_chunks
    window = bytearray(window_bytes)
    view = memoryview(window)
    window_offset = filled = 0
    try:
        for block in blocks:
            source = memoryview(block).cast("B")
            while len(source):
                take = min(len(source), window_bytes - filled)
                view[filled:filled + take] = source[:take]
                filled += take
                source = source[take:]
                if filled == window_bytes:
                    client.pwrite(handle, window_offset, view)
                    window_offset += filled
                    filled = 0
        if filled:
            client.pwrite(handle, window_offset, view[:filled])
    except BaseException:
        client.close(handle, window_offset)
        raise
    length = window_offset + filled
    client.close(handle, length)
    return length
