"""The loaders' one door to storage: open files, batched ranged reads, atomic writes.

Everything the loaders read or write goes through this module. A batch of
FireflyFS ranges is one ``FfsClient.read_batch(requests, into=buffer)`` call
(USRBIO-like: every range lands in one caller-owned buffer, one bulk request
per storage node, nodes in parallel, no metadata RPC for open handles).
Record batches land in a per-thread scratch buffer that is reused from batch
to batch (checked there, then copied once into the ``bytes`` handed out);
token windows and checkpoint tensors land in their destination's memory.
Other fsspec URLs work too (local paths through ``os.preadv`` into the same
buffers, anything else through ``cat_ranges``), which keeps the formats
usable, and testable, off the cluster.

Open files are cached per process and per URL: record and token files are
immutable once written, so a handle (inode, layout, length) stays valid and a
batch costs no metadata RPC. The cache is dropped after ``fork()`` (the
clients below it reconnect by themselves), and nothing here pickles: datasets
carry URLs and reopen lazily in each worker. Writers that replace files
(checkpoints) open uncached.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import posixpath
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Sequence

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fireflyfs.client.batch_read import byte_view
from fireflyfs.client.client import FfsClient, FileHandle
from fireflyfs.client.fsspec_fs import FireflyFileSystem
from fireflyfs.common import limits

log = logging.getLogger(__name__)

# Writes: windows of whole chunks, each one pwrite (its chunks in parallel), several windows in
# flight so the client's IO threads always have work queued (256-512 MiB files on this VM:
# ~410 MiB/s with one 16-chunk window at a time, ~600-690 MiB/s with 3 of 8 chunks).
write_window_chunks = limits.io_threads_default // 2
write_windows_in_flight = 3
bulk_request_bytes = limits.chunk_size_default    # one concurrent request of a bulk read
bulk_requests_in_flight = 8                       # measured best on this VM (4-16 are close)
generic_write_block_bytes = 8 * limits.MiB
scratch_bytes_min = 1 * limits.MiB                # a thread's reusable read buffer starts at this

_local = threading.local()


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


def _raise_failure(opened: OpenFile, offset: int, length: int, error: BaseException) -> None:
    error.add_note(f"while reading {length} bytes at {offset} of {opened.url}")
    raise error


def _scratch(size: int) -> memoryview:
    """This thread's reusable buffer of at least size bytes: reads whose bytes are copied out
    (or checked and dropped) land here, so a batch touches no fresh pages (machine-limits.md:
    first-touch page faults dominate copies on this VM)."""
    buffer = getattr(_local, "scratch", None)
    if buffer is None or len(buffer) < size:
        buffer = _local.scratch = bytearray(max(size, scratch_bytes_min,
                                                2 * len(buffer) if buffer is not None else 0))
    return memoryview(buffer)


def read_batch(reads: Sequence[tuple[OpenFile, int, int]], into: Any = None) -> Batch:
    """Each (file, offset, length) packed into one buffer, request i at sum(lengths[:i]).

    into: a writable buffer of at least sum(lengths) bytes (bytearray, numpy,
    torch CPU tensor, memoryview), or None for this thread's scratch buffer,
    valid until the thread's next read_batch. FireflyFS ranges of one cluster
    are one ``FfsClient.read_batch`` (handles: no metadata RPC; the bytes land
    in the buffer without a copy), local files one ``os.preadv`` each. Reads
    are clamped at the file's end (``Batch.nbytes``); a failed read raises.
    """
    slots, total = [], 0
    for _opened, _offset, length in reads:
        slots.append(total)
        total += length
    buffer = _scratch(total) if into is None else byte_view(into, total)
    nbytes = [0] * len(reads)
    first = reads[0][0] if reads else None
    if first is not None and all(opened.fs is first.fs for opened, _, _ in reads):
        _read_group(reads, range(len(reads)), buffer, slots, nbytes)
    else:
        groups: dict[int, list[int]] = {}
        for number, (opened, _offset, _length) in enumerate(reads):
            groups.setdefault(id(opened.fs), []).append(number)
        for numbers in groups.values():
            _read_group(reads, numbers, buffer, slots, nbytes)
    return Batch(buffer, slots, nbytes)


def _read_group(reads, numbers, buffer: memoryview, slots: list[int], nbytes: list[int]) -> None:
    """Read reads[numbers] (all of one filesystem) into their slots of buffer."""
    first = reads[numbers[0]][0]
    if first.ffs_handle is not None:
        contiguous = len(numbers) == len(reads)
        requests = [(reads[n][0].ffs_handle, reads[n][1], reads[n][2]) for n in numbers]
        if contiguous:
            result = first.client.read_batch(requests, into=buffer)
        else:   # a mixed batch: this cluster's share packed apart, then moved to its slots
            result = first.client.read_batch(requests)
        for position, number in enumerate(numbers):
            error = result.errors[position]
            if error is not None:
                opened, offset, length = reads[number]
                _raise_failure(opened, offset, length, error)
            nbytes[number] = result.nbytes[position]
            if not contiguous:
                buffer[slots[number]:slots[number] + nbytes[number]] = result.view(position)
    elif first.local_file is not None:
        for number in numbers:
            opened, offset, length = reads[number]
            if length:
                nbytes[number] = os.preadv(opened.local_file.fileno(),
                                           [buffer[slots[number]:slots[number] + length]], offset)
    else:
        results = first.fs.cat_ranges([reads[n][0].path for n in numbers],
                                      [reads[n][1] for n in numbers],
                                      [reads[n][1] + reads[n][2] for n in numbers],
                                      on_error="raise")
        for number, data in zip(numbers, results):
            size = min(len(data), reads[number][2])
            buffer[slots[number]:slots[number] + size] = memoryview(data)[:size]
            nbytes[number] = size


def read_ranges(reads: Sequence[tuple[OpenFile, int, int]]) -> list[bytes]:
    """Bytes of each (file, offset, length), clamped at the file's end, as new bytes objects
    (one batched read into this thread's scratch buffer, then one copy per range)."""
    if not reads:
        return []
    batch = read_batch(reads)
    return [bytes(batch.view(number)) for number in range(len(reads))]


@dataclasses.dataclass(slots=True)
class Batch:
    """What read_batch answers: the buffer, where request i starts, and its bytes read."""

    buffer: memoryview
    offsets: list[int]
    nbytes: list[int]

    def view(self, number: int) -> memoryview:
        start = self.offsets[number]
        return self.buffer[start:start + self.nbytes[number]]


def _bulk_pool() -> ThreadPoolExecutor:
    """This process's threads for bulk transfers (made on first use, again after fork)."""
    global _bulk
    with _cache_lock:
        if _bulk is None or _bulk[0] != os.getpid():
            _bulk = (os.getpid(), ThreadPoolExecutor(bulk_requests_in_flight,
                                                     thread_name_prefix="ffs-loaders"))
        return _bulk[1]


_bulk: tuple[int, ThreadPoolExecutor] | None = None


def _bulk_groups(reads: Sequence[tuple[OpenFile, int, int]], buffers: Sequence[memoryview]):
    """Cut ranges into pieces of at most bulk_request_bytes and pack them into requests
    of about that size, each a list of (file, offset, length, buffer)."""
    groups, group, group_bytes = [], [], 0
    for (opened, offset, length), buffer in zip(reads, buffers):
        if len(buffer) != length:
            raise ValueError(f"buffer of {len(buffer)} bytes for a {length}-byte range")
        for start in range(0, length, bulk_request_bytes):
            piece = min(bulk_request_bytes, length - start)
            if group and group_bytes + piece > bulk_request_bytes:
                groups.append(group)
                group, group_bytes = [], 0
            group.append((opened, offset + start, piece, buffer[start:start + piece]))
            group_bytes += piece
    if group:
        groups.append(group)
    return groups


def _fill(group) -> None:
    """One request's ranges: a single range straight into its buffer (no copy), several
    small ones packed into the scratch buffer and copied to theirs."""
    reads = [(opened, offset, length) for opened, offset, length, _ in group]
    batch = read_batch(reads, into=group[0][3] if len(group) == 1 else None)
    for number, (opened, offset, length, buffer) in enumerate(group):
        if batch.nbytes[number] != length:
            raise EOFError(f"{opened.url}: wanted {length} bytes at {offset}, "
                           f"got {batch.nbytes[number]}")
        if len(group) > 1:
            buffer[:] = batch.view(number)


def read_ranges_into(reads: Sequence[tuple[OpenFile, int, int]],
                     buffers: Sequence[memoryview]) -> None:
    """Fill each buffer with its range (a piece of one range is read_batch straight into
    its buffer, no copy); raises EOFError if a range ends beyond its file.

    Bulk data goes as several concurrent requests of about one chunk: a single
    batched read puts all of a node's share in one BatchRead, which the node
    serves serially, while ~8 chunk-sized requests in flight keep every node
    busy (256 MiB on this VM: ~190 MiB/s as one batch, ~600-760 MiB/s so).
    """
    groups = _bulk_groups(reads, buffers)
    if len(groups) <= 1:
        for group in groups:
            _fill(group)
        return
    for _ in _bulk_pool().map(_fill, groups):
        pass


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
    """Write blocks as chunk-aligned pwrites (one Storage.Write per whole chunk, chunks in
    parallel), at most write_windows_in_flight of them outstanding.

    Whole chunks that lie inside one block (a big tensor) are written straight
    from the block's memory, no copy; only the bytes around block boundaries
    (small tensors, padding, the tail) are gathered in reused window buffers.
    """
    handle = client.create(path, exclusive=True, parents=True)
    chunk = handle.layout.chunk_size
    window_bytes = chunk * write_window_chunks
    spare: list[memoryview] = []
    in_flight: collections.deque[tuple[Future, memoryview | None]] = collections.deque()
    pool = _bulk_pool()
    position = 0                  # file offset of the next byte handed to us
    window: memoryview | None = None
    filled = 0                    # bytes gathered in window; it starts at position - filled

    def wait_oldest() -> None:
        future, buffer = in_flight.popleft()
        future.result()
        if buffer is not None:
            spare.append(buffer)

    def submit(offset: int, view: memoryview, buffer: memoryview | None) -> None:
        while len(in_flight) >= write_windows_in_flight:
            wait_oldest()
        in_flight.append((pool.submit(client.pwrite, handle, offset, view), buffer))

    def flush_window() -> None:
        nonlocal window, filled
        if filled:
            submit(position - filled, window[:filled], window)
            window, filled = None, 0

    try:
        for block in blocks:
            source = memoryview(block).cast("B")
            while len(source):
                if filled == 0 and len(source) >= chunk:          # position is chunk-aligned here
                    take = min(len(source) // chunk * chunk, window_bytes)
                    submit(position, source[:take], None)
                    position += take
                    source = source[take:]
                    continue
                if window is None:
                    window = spare.pop() if spare else memoryview(bytearray(window_bytes))
                to_boundary = chunk - filled % chunk
                if filled % chunk == 0 and len(source) >= chunk:
                    flush_window()                                # then straight from the block
                    continue
                take = to_boundary if len(source) >= to_boundary + chunk else min(
                    len(source), window_bytes - filled)
                window[filled:filled + take] = source[:take]
                filled += take
                position += take
                source = source[take:]
                if filled == window_bytes:
                    flush_window()
        flush_window()
        while in_flight:
            wait_oldest()
    except BaseException:
        for future, _buffer in in_flight:
            future.cancel()
            try:
                future.result()
            except BaseException:  # noqa: BLE001 - the first error is re-raised below
                pass
        client.close(handle, 0)
        raise
    client.close(handle, position)
    return position
