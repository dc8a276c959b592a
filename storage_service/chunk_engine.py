"""The chunk engine of one storage target: chunk files plus chunk metadata in LMDB.

It writes (appends in place, overwrites copy-on-write, the LMDB meta commit as
the switch), stages and commits CRAQ updates, and reads with every touched
block's CRC32C verified. Why each rule holds, with the measurements behind the
block size and the file pool, is in docs/chunk-engine.md; the parts it uses
sit beside it: chunk_meta.py (keys and the meta record), chunk_files.py (file
writes, range copies, the pool of free files), fd_cache.py (read descriptors).
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import crc32c
import lmdb

from fireflyfs.common import limits
from fireflyfs.common.errors import ChecksumMismatch, ChunkNotCommitted, FfsError, Internal, InvalidArgument
from fireflyfs.common.layout import validate_chunk_size
from fireflyfs.common.lmdb_env import GrowingEnv, no_space_error

from .chunk_files import ChunkFilePool, copy_range, pwrite_all
from .craq import UpdateKind
from .chunk_meta import ChunkMeta, chunk_key, crcs_from_bytes, crcs_to_bytes, describe_key, key_range_end, split_key
from .fd_cache import CachedFd, FdCache

log = logging.getLogger(__name__)
# One DEBUG record per durability step, each logged after the step returned (fdatasync of a
# chunk file, fsync of the chunk directory, a chunk meta commit made durable), so a test can
# check that every replica made an update durable before the client saw its ack.
durability_log = logging.getLogger(f"{__name__}.durability")

_LOOK_UP = object()        # read_extent's meta: not given, read it
CHECKSUM_BLOCK_BYTES_DEFAULT = limits.checksum_block_bytes_default   # measured: docs/chunk-engine.md, "Checksums"
CHECKSUM_BLOCK_BYTES_MIN = limits.checksum_block_bytes_min

_LOCK_STRIPES = 256
_DECODED_METAS_MAX = 8192
POOL_FILES_MAX_DEFAULT = 64       # free chunk files kept per target for reuse (256 MiB of 4 MiB chunks)
_READ_FDS_MAX = 128
_READ_RETRIES_MAX = 8
DISK_USAGE_TTL_S = 1.0            # statvfs at most this often per target (space() runs per write admission)

@dataclasses.dataclass(frozen=True, slots=True)
class _Versions:
    commit_version: int
    update_version: int
    chain_version: int

    def as_fields(self) -> dict[str, int]:
        return {"commit_version": self.commit_version, "update_version": self.update_version,
                "chain_version": self.chain_version}


@dataclasses.dataclass(frozen=True, slots=True)
class LastChunk:
    last_index: int
    last_length: int
    chunk_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceStats:
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    chunk_count: int
    map_used_bytes: int = 0       # the chunk metadata LMDB: pages in use ...
    map_bytes: int = 0            # ... its current map ...
    map_bytes_max: int = 0        # ... and what the map may grow to
    fs_free_bytes: int = 0        # what the file system under it has free (shared with others on it)


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """What re-reading one committed chunk from disk found (``ChunkEngine.verify``).

    bad_blocks: blocks whose bytes no longer match their stored CRC32C (bit rot,
    a torn file, a missing file: every block). content_crc: CRC32C of the whole
    chunk as read, so replicas can be compared by content, not only by the
    metadata they store.
    """

    meta: ChunkMeta
    bad_blocks: tuple[int, ...]
    content_crc: int

    @property
    def ok(self) -> bool:
        return not self.bad_blocks


@dataclasses.dataclass(slots=True)
class ReadExtent:
    """A verified plan for sending [start, end) of a chunk (``ChunkEngine.read_extent``).

    crcs: one CRC32C per segment (the range cut at block boundaries). parts, in
    order: bytes already read and verified (edge blocks), or (file offset,
    count) ranges of whole blocks to send from fd as they are. fd is -1 when
    nothing is to be sent; close() hands it back (it may stay cached).
    """

    meta: ChunkMeta | None
    fd: int
    start: int
    end: int
    crcs: tuple[int, ...]
    parts: tuple
    _handle: "CachedFd | None" = None
    _cache: "FdCache | None" = None

    @property
    def length(self) -> int:
        return self.end - self.start

    def close(self) -> None:
        if self._handle is not None and self._cache is not None:
            self._cache.release(self._handle)
        self._handle = None
        self.fd = -1


def _in_block_extent(meta: ChunkMeta, block: int, data: bytes, offset: int, end: int) -> ReadExtent:
    """The extent of [offset, end) inside block, whose verified committed bytes are data: the
    whole block goes with its stored CRC, a slice with a CRC of its own."""
    block_start = block * meta.block_size
    if offset == block_start and end == block_start + len(data):
        return ReadExtent(meta, -1, offset, end, (meta.block_crc(block),), (data,))
    piece = memoryview(data)[offset - block_start:end - block_start]
    return ReadExtent(meta, -1, offset, end, (crc32c.crc32c(piece),), (piece,))


class EngineCounters:
    """Plain counters for tests and metrics (updated without a lock: approximate under races)."""

    blocks_verified: int = 0
    read_retries: int = 0
    cow_writes: int = 0
    append_writes: int = 0
    pooled_files_used: int = 0
    data_syncs: int = 0        # fdatasync of a chunk file
    dir_syncs: int = 0         # fsync of the chunk directory (a new file name)


class ChunkEngine:
    """Chunk files + LMDB metadata for one target; thread-safe (its rules: docs/chunk-engine.md)."""

    def __init__(self, target_dir: str | os.PathLike, block_size: int = CHECKSUM_BLOCK_BYTES_DEFAULT,
                 fsync: bool = True, map_size_bytes: int = limits.target_map_bytes_default,
                 pool_files_max: int = POOL_FILES_MAX_DEFAULT,
                 map_size_bytes_max: int = limits.target_map_bytes_max_default) -> None:
        if not (block_size >= CHECKSUM_BLOCK_BYTES_MIN and limits.is_power_of_two(block_size)
                and block_size <= limits.chunk_size_min):
            raise InvalidArgument(f"checksum block size {block_size} must be a power of two in "
                                  f"{CHECKSUM_BLOCK_BYTES_MIN}..{limits.chunk_size_min}")
        self.target_dir = Path(target_dir)
        self.block_size = block_size
        self.fsync = fsync
        self.chunks_dir = self.target_dir / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        # Names the file system under it across the cluster (host and device): mgmtd shares its
        # free space among every target on it.
        self.fs_id = f"{socket.gethostname()}:{os.stat(self.chunks_dir).st_dev}"
        self._chunks_prefix = f"{self.chunks_dir}{os.sep}"
        self._env = GrowingEnv(str(self.target_dir / "meta.lmdb"), map_bytes=map_size_bytes,
                               map_bytes_max=max(map_size_bytes, map_size_bytes_max),
                               what="chunk metadata store", subdir=True, sync=fsync, metasync=fsync,
                               max_dbs=0, readahead=False)
        self._disk_usage: tuple[float, object] | None = None   # (when, shutil.disk_usage), DISK_USAGE_TTL_S
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._stats_lock = threading.Lock()
        self._zeros = bytes(max(block_size, 64 * limits.KiB))
        self.counters = EngineCounters()
        self._used_bytes = 0
        self._chunk_count = 0
        self._pending: set[bytes] = set()    # chunks with a staged, uncommitted update
        self._decoded: dict[bytes, tuple[bytes, ChunkMeta]] = {}   # raw meta -> decoded, for hot reads
        self._fds = FdCache(_READ_FDS_MAX)
        self.pool_dir = self.target_dir / "pool"
        self.pool = ChunkFilePool(self.pool_dir, pool_files_max)
        self._closed = False
        self._recover()

    # ------------------------------------------------------------------ lifecycle

    def _recover(self) -> None:
        """Count chunks and remove files no meta references (leftovers of a crash)."""
        live: set[str] = set()
        with self._env.begin() as txn:
            for key, raw in txn.cursor():
                meta = ChunkMeta.decode(raw)
                live.add(self._file_name(key, meta.file_version))
                self._used_bytes += meta.length
                self._chunk_count += 1
                if not meta.committed:
                    self._pending.add(bytes(key))
        removed = 0
        for entry in os.scandir(self.chunks_dir):
            if entry.name not in live:
                self._discard(entry.path)
                removed += 1
        if removed:
            log.info("target %s: recycled %d unreferenced chunk files", self.target_dir, removed)
        log.info("target %s: %d chunks, %d bytes", self.target_dir, self._chunk_count, self._used_bytes)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fds.close()
            self._env.close()

    def __enter__(self) -> "ChunkEngine":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _file_name(key: bytes, file_version: int) -> str:
        return f"{key.hex()}.{file_version}"

    def _path(self, key: bytes, file_version: int) -> str:
        return f"{self._chunks_prefix}{key.hex()}.{file_version}"

    def _unlink(self, path: str) -> None:
        """Unlink a chunk file; readers holding it keep their descriptor, later ones open anew."""
        self._fds.forget(path)
        os.unlink(path)

    def _create(self, path: str, *, whole: bool = False) -> int:
        """Open a new chunk file at path for writing.

        whole: the caller writes every byte of [0, length) before the meta
        names the file, so a pooled file may serve (its stale bytes past the
        length are never read: reads stop at the committed length, an append
        past the file's end truncates first, a shrink truncates after).
        Overwriting a pooled file's cached pages is what makes writes fast; a
        fresh file costs a new page-cache page per 4 KiB (machine-limits.md).
        """
        self._fds.forget(path)
        if whole and self.pool.take(path):
            self.counters.pooled_files_used += 1
            return os.open(path, os.O_WRONLY)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def _discard(self, path: str) -> None:
        """A chunk file nothing references any more: into the pool (pages stay cached), or unlinked."""
        self._fds.forget(path)
        self.pool.give(path)

    @property
    def pool_files(self) -> int:
        return len(self.pool)

    def prefill_pool(self, files: int, file_bytes: int, stop: threading.Event | None = None) -> int:
        """Create zero-filled chunk files until the pool holds files of them; returns how many were made.

        Run on a background thread at start (storage ``--chunk-pool-prefill-mib``):
        the page-cache pages are allocated now instead of on the first writes.
        """
        return self.pool.prefill(files, file_bytes, lambda: self._closed or (stop is not None and stop.is_set()))

    def _lock_for(self, key: bytes) -> threading.Lock:
        return self._locks[hash(key) % _LOCK_STRIPES]

    def get_meta(self, key: bytes) -> ChunkMeta | None:
        with self._env.begin() as txn:
            raw = txn.get(key)
        return self._meta_of(key, raw)

    def get_metas(self, keys: list[bytes]) -> list[ChunkMeta | None]:
        """get_meta of each key from one read transaction (a batch of small reads pays for one)."""
        with self._env.begin() as txn:
            get = txn.get
            raws = [get(key) for key in keys]
        return [self._meta_of(key, raw) for key, raw in zip(keys, raws)]

    def _meta_of(self, key: bytes, raw: bytes | None) -> ChunkMeta | None:
        if raw is None:
            return None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == raw:   # the stored bytes decide, never the cache
            return cached[1]
        meta = ChunkMeta.decode(raw)
        if len(self._decoded) >= _DECODED_METAS_MAX:
            self._decoded.clear()
        self._decoded[key] = (raw, meta)
        return meta

    def _put_meta(self, key: bytes, meta: ChunkMeta) -> None:
        encoded = meta.encode()
        self._env.write(lambda txn: txn.put(key, encoded), f"{describe_key(key)}: chunk metadata store")
        if self.fsync and durability_log.isEnabledFor(logging.DEBUG):
            durability_log.debug("meta %s commit=%d update=%d length=%d file=%d", key.hex(),
                                 meta.commit_version, meta.update_version, meta.length, meta.file_version)
        with self._stats_lock:
            if meta.committed:
                self._pending.discard(key)
            else:
                self._pending.add(key)

    def pending_keys(self) -> list[bytes]:
        """Chunks holding a staged update not committed yet (in flight, or left by a failure)."""
        with self._stats_lock:
            return sorted(self._pending)

    def _adjust_stats(self, used_delta: int, count_delta: int, removed: list[bytes] = ()) -> None:
        with self._stats_lock:
            self._used_bytes += used_delta
            self._chunk_count += count_delta
            self._pending.difference_update(removed)

    def _sync_file(self, fd: int, path: str) -> None:
        """Chunk bytes on disk before the meta that names them commits (fsync mode)."""
        if self.fsync:
            os.fdatasync(fd)
            self.counters.data_syncs += 1
            durability_log.debug("fdatasync %s", path)

    def _sync_dir(self) -> None:
        """A new chunk file's name on disk before the meta that names it commits (fsync mode)."""
        if self.fsync:
            fd = os.open(self.chunks_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.counters.dir_syncs += 1
            durability_log.debug("fsync-dir %s", self.chunks_dir)

    def _read_verified_block(self, key: bytes, meta: ChunkMeta, fd: int, block: int) -> bytes:
        """The committed bytes of one block of meta's file, verified against its CRC."""
        start = block * meta.block_size
        end = min(start + meta.block_size, meta.length)
        data = os.pread(fd, end - start, start)
        stored = meta.block_crc(block)
        computed = crc32c.crc32c(data)
        self.counters.blocks_verified += 1
        if len(data) != end - start or computed != stored:
            raise ChecksumMismatch(
                f"{describe_key(key)} block {block} (bytes {start}..{end}) on {self.target_dir}: "
                f"stored crc32c {stored:#010x}, computed {computed:#010x} over {len(data)} bytes")
        return data

    def _read_verified_span(self, key: bytes, meta: ChunkMeta, fd: int, first: int, last: int) -> bytes:
        """Blocks first..last of meta's file in one pread, each verified against its CRC."""
        block_size = meta.block_size
        start = first * block_size
        end = min((last + 1) * block_size, meta.length)
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise ChecksumMismatch(f"{describe_key(key)} blocks {first}..{last} (bytes {start}..{end}) on "
                                   f"{self.target_dir}: the file holds only {len(data)} of those bytes")
        view = memoryview(data)
        for block in range(first, last + 1):
            at = (block - first) * block_size
            computed = crc32c.crc32c(view[at:at + block_size])
            self.counters.blocks_verified += 1
            if computed != meta.block_crc(block):
                raise ChecksumMismatch(
                    f"{describe_key(key)} block {block} (bytes {block * block_size}.."
                    f"{min((block + 1) * block_size, meta.length)}) on {self.target_dir}: stored crc32c "
                    f"{meta.block_crc(block):#010x}, computed {computed:#010x}")
        return data

    def _new_crcs(self, key: bytes, old: ChunkMeta | None, old_fd: int | None, offset: int,
                  data: memoryview, new_length: int, block_size: int) -> bytes:
        """Block CRCs after writing data at offset (a gap after the old end reads as zeros).

        Untouched blocks keep their stored CRC; partially touched old blocks are
        read and verified before merging; an append into a partial last block
        continues its CRC (crc32c(data, crc)) without re-reading it.
        """
        old_length = old.length if old else 0
        crcs = old.crcs() if old else array.array("I")
        if new_length < old_length:
            raise Internal("_new_crcs cannot shrink a chunk")
        if offset == old_length and offset % block_size == 0 and new_length == offset + len(data):
            # Appending whole blocks (every sequential writer): no old block to merge.
            crcs.extend([crc32c.crc32c(data[at:at + block_size]) for at in range(0, len(data), block_size)])
            return crcs_to_bytes(crcs)
        end = offset + len(data)
        change_start = min(offset, old_length)
        block_count = -(-new_length // block_size)
        crcs.extend([0] * (block_count - len(crcs)))
        old_blocks: dict[int, bytes] = {}

        def old_block(block: int) -> bytes:
            if block not in old_blocks:
                if old is None or old_fd is None:
                    raise Internal("no old chunk to merge with")
                old_blocks[block] = self._read_verified_block(key, old, old_fd, block)
            return old_blocks[block]

        region_end = max(end, change_start)
        for block in range(change_start // block_size, -(-region_end // block_size)):
            block_start = block * block_size
            block_end = min(block_start + block_size, new_length)
            position = block_start
            crc = 0
            if position < change_start:  # committed bytes before the change inside this block
                if offset >= old_length:  # append: continue the stored CRC of the partial block
                    crc = crcs[block]
                    position = old_length
                else:
                    crc = crc32c.crc32c(memoryview(old_block(block))[:offset - block_start])
                    position = offset
            gap_end = min(offset, block_end)
            if position < gap_end:  # zeros between the old end and offset
                crc = crc32c.crc32c(memoryview(self._zeros)[:gap_end - position], crc)
                position = gap_end
            data_end = min(end, block_end)
            if position < data_end:
                crc = crc32c.crc32c(data[position - offset:data_end - offset], crc)
                position = data_end
            if position < block_end:  # committed bytes after the data inside this block
                old_bytes = memoryview(old_block(block))
                crc = crc32c.crc32c(old_bytes[position - block_start:block_end - block_start], crc)
            crcs[block] = crc
        return crcs_to_bytes(crcs)

    # ------------------------------------------------------------------ write path

    @staticmethod
    def _check_chunk_size(key: bytes, chunk_size: int, old: ChunkMeta | None) -> None:
        validate_chunk_size(chunk_size)
        if old is not None and old.chunk_size != chunk_size:
            raise InvalidArgument(f"{describe_key(key)} has chunk size {old.chunk_size}, "
                                  f"request says {chunk_size}")

    def _check_write(self, key: bytes, offset: int, view: memoryview, chunk_size: int,
                     checksum: int | None) -> None:
        if offset < 0:
            raise InvalidArgument(f"{describe_key(key)}: negative offset {offset}")
        validate_chunk_size(chunk_size)
        if offset + len(view) > chunk_size:
            raise InvalidArgument(f"{describe_key(key)}: write [{offset}, {offset + len(view)}) "
                                  f"exceeds chunk size {chunk_size}")
        if checksum is not None:
            computed = crc32c.crc32c(view)
            if computed != checksum:
                raise ChecksumMismatch(f"{describe_key(key)}: write data crc32c {computed:#010x} "
                                       f"!= sent {checksum:#010x} ({len(view)} bytes at {offset})")

    @staticmethod
    def _versions(old: ChunkMeta | None, version: int, chain_version: int, commit: bool) -> _Versions:
        """Metadata versions after staging `version`: committed at once, or pending over the old commit.

        A pending stage keeps the chunk's chain version: it is set by the commit (as 3FS's chainVer),
        so resync can tell a stale pending chunk from one committed in a newer chain.
        """
        if not 0 <= chain_version < 1 << 32:
            raise InvalidArgument(f"chain version {chain_version} out of range")
        if commit:
            return _Versions(version, version, chain_version)
        return _Versions(old.commit_version if old else 0, version, old.chain_version if old else 0)

    def _next_update_version(self, key: bytes, old: ChunkMeta | None,
                             update_version: int | None) -> int:
        committed = old.commit_version if old else 0
        if old is not None and not old.committed:
            raise ChunkNotCommitted(f"{describe_key(key)} has pending update {old.update_version} "
                                    f"over commit {old.commit_version}")
        if update_version is not None and update_version != committed + 1:
            raise InvalidArgument(f"{describe_key(key)}: update version {update_version} does not "
                                  f"follow commit version {committed}")
        return committed + 1

    def write(self, key: bytes, offset: int, data: bytes | memoryview, chunk_size: int,
              chain_version: int, checksum: int | None = None,
              update_version: int | None = None) -> ChunkMeta:
        """Write data at offset of the chunk and commit it (a chain of one); returns the meta.

        checksum, when given, is the sender's CRC32C of data: checked before
        anything is stored. A gap between the chunk's end and offset reads as
        zeros. An empty write changes nothing and returns the current meta
        (None when the chunk does not exist). A pending chunk is refused
        (ChunkNotCommitted): chain writes go through ``stage``/``commit``.
        """
        view = memoryview(data).cast("B")
        self._check_write(key, offset, view, chunk_size, checksum)
        self._versions(None, 0, chain_version, True)
        with self._lock_for(key):
            old = self.get_meta(key)
            self._check_chunk_size(key, chunk_size, old)
            if not view:
                return old  # type: ignore[return-value]
            version = self._next_update_version(key, old, update_version)
            return self._apply_write(key, old, offset, view, self._versions(old, version, chain_version, True),
                                     chunk_size)

    def stage(self, key: bytes, kind: UpdateKind, version: int, chain_version: int, chunk_size: int, *,
              commit: bool, offset: int = 0, data: bytes | memoryview = b"", length: int = 0,
              checksum: int | None = None) -> ChunkMeta:
        """Apply one chain update as update version `version` (CRAQ staging); returns the meta.

        kind WRITE (data at offset), TRUNCATE (to length) or REPLACE (data is the whole
        chunk). With commit=False the chunk becomes pending (update_version = version,
        commit_version unchanged): reads answer ChunkNotCommitted until ``commit``. With
        commit=True (the tail) it is committed in the same meta transaction. Which versions
        are acceptable is the chain logic's decision (storage_service.craq); the engine only
        refuses to go backwards within a pending update, except for a full replace, which
        sets whatever versions it carries (resync of a target holding stale versions).
        """
        view = memoryview(data).cast("B")
        if kind is UpdateKind.WRITE:
            self._check_write(key, offset, view, chunk_size, checksum)
        elif kind is UpdateKind.REPLACE:
            self._check_write(key, 0, view, chunk_size, checksum)
        elif kind is UpdateKind.TRUNCATE:
            validate_chunk_size(chunk_size)
            if not 0 <= length <= chunk_size:
                raise InvalidArgument(f"{describe_key(key)}: truncate length {length} not in 0..{chunk_size}")
        else:
            raise InvalidArgument(f"unknown update kind {kind!r}")
        if version < 1:
            raise InvalidArgument(f"{describe_key(key)}: update version {version} < 1")
        with self._lock_for(key):
            old = self.get_meta(key)
            if kind is not UpdateKind.REPLACE:
                self._check_chunk_size(key, chunk_size, old)
            if kind is not UpdateKind.REPLACE and old is not None and not old.committed and version < old.update_version:
                raise Internal(f"{describe_key(key)}: staging update {version} below pending "
                               f"update {old.update_version}")
            versions = self._versions(old, version, chain_version, commit)
            if kind is UpdateKind.WRITE:
                return self._apply_write(key, old, offset, view, versions, chunk_size)
            if kind is UpdateKind.TRUNCATE:
                return self._apply_truncate(key, old, length, chunk_size, versions)
            return self._apply_replace(key, old, view, chunk_size, versions)

    def commit(self, key: bytes, version: int, chain_version: int) -> ChunkMeta:
        """Commit pending update `version` (v := u, chain version set); a repeat is a no-op."""
        with self._lock_for(key):
            old = self.get_meta(key)
            if old is None:
                raise Internal(f"{describe_key(key)}: commit of update {version} to a missing chunk")
            if old.committed and old.commit_version >= version:
                return old
            if old.update_version != version:
                raise Internal(f"{describe_key(key)}: commit of update {version}, chunk has "
                               f"commit {old.commit_version} / update {old.update_version}")
            meta = dataclasses.replace(old, commit_version=version, chain_version=chain_version)
            self._put_meta(key, meta)
            return meta

    def remove(self, key: bytes) -> bool:
        """Remove one chunk (resync of a remote-only chunk, fsck repair); True if it existed."""
        def delete(txn: lmdb.Transaction) -> ChunkMeta | None:
            raw = txn.get(key)
            if raw is None:
                return None
            txn.delete(key)
            return ChunkMeta.decode(raw)

        with self._lock_for(key):
            meta = self._env.write(delete, f"{describe_key(key)}: chunk metadata store")
            if meta is None:
                return False
            self._discard(self._path(key, meta.file_version))
        self._adjust_stats(-meta.length, -1, [key])
        return True

    @contextlib.contextmanager
    def _space_errors(self, key: bytes) -> Iterator[None]:
        """A full disk (chunk file or LMDB) or map under a write becomes NoSpace naming the target."""
        try:
            yield
        except (OSError, lmdb.Error) as exc:
            error = no_space_error(exc, f"{describe_key(key)} on target {self.target_dir}")
            if error is None or error is exc:
                raise
            raise error from exc

    def _apply_write(self, key: bytes, old: ChunkMeta | None, offset: int, view: memoryview,
                     versions: _Versions, chunk_size: int = 0) -> ChunkMeta:
        with self._space_errors(key):
            if old is None:
                meta = self._write_new(key, offset, view, chunk_size, versions)
            elif offset >= old.length:
                meta = self._write_append(key, old, offset, view, versions)
            else:
                meta = self._write_cow(key, old, offset, view, versions)
        self._adjust_stats(meta.length - (old.length if old else 0), 0 if old else 1)
        return meta

    def _apply_truncate(self, key: bytes, old: ChunkMeta | None, length: int, chunk_size: int,
                        versions: _Versions) -> ChunkMeta:
        empty = memoryview(b"")
        with self._space_errors(key):
            if old is None:
                meta = self._write_new(key, length, empty, chunk_size, versions)
            elif length >= old.length:
                meta = self._write_append(key, old, length, empty, versions)
            else:
                meta = self._shrink(key, old, length, versions)
        self._adjust_stats(meta.length - (old.length if old else 0), 0 if old else 1)
        return meta

    def _apply_replace(self, key: bytes, old: ChunkMeta | None, view: memoryview, chunk_size: int,
                       versions: _Versions) -> ChunkMeta:
        """The whole chunk replaced: a new file (never the old one's name), then the meta flip."""
        file_version = max(versions.update_version, old.file_version + 1) if old else versions.update_version
        length = len(view)
        crcs = self._new_crcs(key, None, None, 0, view, length, self.block_size)
        with self._space_errors(key):
            meta = self._write_fresh(key, file_version, 0, view, chunk_size, crcs, versions)
        if old is not None:
            self._discard(self._path(key, old.file_version))
        self._adjust_stats(length - (old.length if old else 0), 0 if old else 1)
        return meta

    def _write_new(self, key: bytes, offset: int, view: memoryview, chunk_size: int,
                   versions: _Versions) -> ChunkMeta:
        length = offset + len(view)
        crcs = self._new_crcs(key, None, None, offset, view, length, self.block_size)
        meta = self._write_fresh(key, versions.update_version, offset, view, chunk_size, crcs, versions)
        self.counters.append_writes += 1
        return meta

    def _write_fresh(self, key: bytes, file_version: int, offset: int, view: memoryview, chunk_size: int,
                     crcs: bytes, versions: _Versions) -> ChunkMeta:
        """Write a chunk into a new file (never a live one's name), then commit its meta.

        A kill before the meta commit leaves only an orphan file, removed here on
        failure or at the next startup."""
        length = offset + len(view)
        path = self._path(key, file_version)
        fd = self._create(path, whole=offset == 0)   # a hole before offset needs a fresh (zero) file
        try:
            try:
                pwrite_all(fd, view, offset)  # the hole before offset reads as zeros
                if not view:
                    os.ftruncate(fd, length)
                self._sync_file(fd, path)
            finally:
                os.close(fd)
            self._sync_dir()
            meta = ChunkMeta(length, chunk_size, self.block_size, versions.commit_version,
                             versions.update_version, versions.chain_version, file_version, crcs)
            self._put_meta(key, meta)
        except BaseException:
            with contextlib.suppress(OSError):
                self._unlink(path)
            raise
        return meta

    def _write_append(self, key: bytes, old: ChunkMeta, offset: int, view: memoryview,
                      versions: _Versions) -> ChunkMeta:
        length = offset + len(view)
        crcs = self._new_crcs(key, old, None, offset, view, length, old.block_size)
        fd = os.open(self._path(key, old.file_version), os.O_WRONLY)
        try:
            if offset > old.length and os.fstat(fd).st_size > old.length:
                os.ftruncate(fd, old.length)  # drop uncommitted leftovers so the gap reads as zeros
            pwrite_all(fd, view, offset)
            if not view:
                os.ftruncate(fd, length)
            self._sync_file(fd, self._path(key, old.file_version))
        finally:
            os.close(fd)
        meta = dataclasses.replace(old, length=length, block_crcs=crcs, **versions.as_fields())
        self._put_meta(key, meta)
        self.counters.append_writes += 1
        return meta

    def _write_cow(self, key: bytes, old: ChunkMeta, offset: int, view: memoryview,
                   versions: _Versions) -> ChunkMeta:
        end = offset + len(view)
        length = max(old.length, end)
        file_version = max(versions.update_version, old.file_version + 1)
        old_path = self._path(key, old.file_version)
        new_path = self._path(key, file_version)
        old_fd = os.open(old_path, os.O_RDONLY)
        try:
            crcs = self._new_crcs(key, old, old_fd, offset, view, length, old.block_size)
            new_fd = self._create(new_path, whole=True)   # copies + data cover [0, length)
            try:
                try:
                    if offset > 0:
                        copy_range(old_fd, new_fd, 0, offset)
                    if end < old.length:
                        copy_range(old_fd, new_fd, end, old.length - end)
                    pwrite_all(new_fd, view, offset)
                    self._sync_file(new_fd, new_path)
                finally:
                    os.close(new_fd)
                self._sync_dir()
                meta = dataclasses.replace(old, length=length, file_version=file_version,
                                           block_crcs=crcs, **versions.as_fields())
                self._put_meta(key, meta)
            except BaseException:
                with contextlib.suppress(OSError):
                    self._unlink(new_path)
                raise
        finally:
            os.close(old_fd)
        self._discard(old_path)
        self.counters.cow_writes += 1
        return meta

    def truncate(self, key: bytes, length: int, chunk_size: int, chain_version: int) -> ChunkMeta | None:
        """Set the chunk's length and commit (a chain of one): shorter drops bytes, longer appends zeros.

        A missing chunk truncated to 0 stays missing (returns None); to a
        positive length it is created with zeros. An unchanged length is a
        no-op (no version bump), so a retried truncate is harmless.
        """
        validate_chunk_size(chunk_size)
        if not 0 <= length <= chunk_size:
            raise InvalidArgument(f"{describe_key(key)}: truncate length {length} not in 0..{chunk_size}")
        with self._lock_for(key):
            old = self.get_meta(key)
            self._check_chunk_size(key, chunk_size, old)
            if old is None and length == 0:
                return None
            if old is not None and old.length == length:
                return old
            version = self._next_update_version(key, old, None)
            return self._apply_truncate(key, old, length, chunk_size,
                                        self._versions(old, version, chain_version, True))

    def _shrink(self, key: bytes, old: ChunkMeta, length: int, versions: _Versions) -> ChunkMeta:
        block_size = old.block_size
        blocks = -(-length // block_size)
        crcs = old.crcs()[:blocks]
        path = self._path(key, old.file_version)
        if length % block_size:
            fd = os.open(path, os.O_RDONLY)
            try:
                last = self._read_verified_block(key, old, fd, blocks - 1)
            finally:
                os.close(fd)
            crcs[blocks - 1] = crc32c.crc32c(memoryview(last)[:length - (blocks - 1) * block_size])
        meta = dataclasses.replace(old, length=length, block_crcs=crcs_to_bytes(crcs),
                                   **versions.as_fields())
        self._put_meta(key, meta)
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, length)  # after the commit: a kill in between leaves only dead bytes
        return meta

    def keys_in_range(self, inode: int, begin_index: int, end_index: int | None) -> list[bytes]:
        """Keys of chunks [begin_index, end_index) of inode held here (None: no upper bound)."""
        start = chunk_key(inode, begin_index)
        if end_index is not None and end_index <= begin_index:
            return []
        stop = key_range_end(inode, end_index)
        keys = []
        with self._env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(start):
                for key in cursor.iternext(keys=True, values=False):
                    if key >= stop:
                        break
                    keys.append(bytes(key))
        return keys

    def remove_range(self, inode: int, begin_index: int, end_index: int | None) -> int:
        """Remove chunks [begin_index, end_index) of inode (None: no upper bound); returns the count."""
        keys = self.keys_in_range(inode, begin_index, end_index)
        if not keys:
            return 0
        stripes = sorted({hash(key) % _LOCK_STRIPES for key in keys})
        with contextlib.ExitStack() as stack:
            for stripe in stripes:  # a fixed order: no deadlock with other multi-stripe removals
                stack.enter_context(self._locks[stripe])

            def delete(txn: lmdb.Transaction) -> list[tuple[bytes, ChunkMeta]]:
                found = []
                for key in keys:
                    raw = txn.get(key)
                    if raw is not None:
                        found.append((key, ChunkMeta.decode(raw)))
                        txn.delete(key)
                return found

            removed = self._env.write(delete, f"inode {inode}: chunk metadata store")
            for key, meta in removed:
                self._discard(self._path(key, meta.file_version))
        self._adjust_stats(-sum(meta.length for _, meta in removed), -len(removed),
                           [key for key, _ in removed])
        return len(removed)

    # ------------------------------------------------------------------ read path

    def read(self, key: bytes, offset: int, length: int,
             allow_pending: bool = False) -> tuple[bytes, ChunkMeta | None]:
        """(data, meta): the committed bytes [offset, offset+length) of the chunk, verified.

        Shorter (possibly empty) when the chunk ends before offset+length; a
        missing chunk gives (b"", None). Only the blocks touched are read and
        verified; a CRC mismatch raises ChecksumMismatch naming chunk and block.
        A pending chunk raises ChunkNotCommitted unless allow_pending (full replace).
        """
        if offset < 0 or length < 0:
            raise InvalidArgument(f"{describe_key(key)}: negative read offset/length ({offset}, {length})")
        if offset + length > limits.chunk_size_max:
            raise InvalidArgument(f"{describe_key(key)}: read [{offset}, {offset + length}) beyond the "
                                  f"largest chunk size {limits.chunk_size_max}")
        meta = self.get_meta(key)
        for _ in range(_READ_RETRIES_MAX):
            if meta is None:
                return b"", None
            if not meta.committed and not allow_pending:
                raise ChunkNotCommitted(f"{describe_key(key)} has pending update {meta.update_version}")
            end = min(offset + length, meta.length)
            if end <= offset:
                return b"", meta
            try:
                return self._read_blocks(key, meta, offset, end), meta
            except (ChecksumMismatch, FileNotFoundError) as exc:
                fresh = self.get_meta(key)
                if fresh == meta:  # nothing raced us: the bytes on disk are bad
                    if isinstance(exc, FileNotFoundError):
                        raise Internal(f"{describe_key(key)}: chunk file {exc.filename} is missing") from exc
                    raise
                self.counters.read_retries += 1
                meta = fresh
        raise Internal(f"{describe_key(key)}: read kept racing writers ({_READ_RETRIES_MAX} tries)")

    def verify(self, key: bytes) -> ChunkVerdict | None:
        """Re-read a committed chunk and recompute every block's CRC (scrub, fsck).

        None when the chunk is absent or pending (nothing committed to check),
        or when a writer replaced it while we read (the caller checks it later).
        """
        meta = self.get_meta(key)
        if meta is None or not meta.committed:
            return None
        try:
            fd = os.open(self._path(key, meta.file_version), os.O_RDONLY)
        except FileNotFoundError:
            data = b""
        else:
            try:
                data = os.pread(fd, meta.length, 0)
            finally:
                os.close(fd)
        if self.get_meta(key) != meta:
            return None
        self.counters.blocks_verified += meta.block_count
        return ChunkVerdict(meta, meta.bad_blocks(data), crc32c.crc32c(data))

    def _read_blocks(self, key: bytes, meta: ChunkMeta, offset: int, end: int) -> bytes:
        block_size = meta.block_size
        first = offset // block_size
        run_start = first * block_size
        run_end = min(-(-end // block_size) * block_size, meta.length)
        fd = os.open(self._path(key, meta.file_version), os.O_RDONLY)
        try:
            data = os.pread(fd, run_end - run_start, run_start)
        finally:
            os.close(fd)
        view = memoryview(data)
        crcs = meta.crcs()
        for block in range(first, -(-run_end // block_size)):
            lo = block * block_size - run_start
            piece = view[lo:lo + block_size]
            computed = crc32c.crc32c(piece)
            self.counters.blocks_verified += 1
            expected = (min(block_size, meta.length - block * block_size))
            if computed != crcs[block] or len(piece) != expected:
                raise ChecksumMismatch(
                    f"{describe_key(key)} block {block} (bytes {block * block_size}.."
                    f"{block * block_size + expected}) on {self.target_dir}: stored crc32c "
                    f"{crcs[block]:#010x}, computed {computed:#010x} over {len(piece)} bytes")
        if offset == run_start and end == run_end:
            return data
        return bytes(view[offset - run_start:end - run_start])

    def read_extent(self, key: bytes, offset: int, length: int, meta: ChunkMeta | None | object = _LOOK_UP
                    ) -> "ReadExtent":
        """What the bulk path sends for [offset, offset+length) of a committed chunk (see ReadExtent).

        meta: the chunk's meta when the caller just read it (get_metas for a batch); a stale one
        only costs a retry, as a racing writer does.

        Edge blocks (partly asked) are read and verified here; whole blocks are
        left in the file with their stored CRCs, for ``sendfile`` and the
        client's end-to-end check. The caller closes the extent (its fd).
        Missing chunk: an empty extent with meta None. Pending: ChunkNotCommitted.
        """
        if offset < 0 or length < 0:
            raise InvalidArgument(f"{describe_key(key)}: negative read offset/length ({offset}, {length})")
        if offset + length > limits.chunk_size_max:
            raise InvalidArgument(f"{describe_key(key)}: read [{offset}, {offset + length}) beyond the "
                                  f"largest chunk size {limits.chunk_size_max}")
        if meta is _LOOK_UP:
            meta = self.get_meta(key)
        for _ in range(_READ_RETRIES_MAX):
            if meta is None:
                return ReadExtent(None, -1, offset, offset, (), ())
            if not meta.committed:
                raise ChunkNotCommitted(f"{describe_key(key)} has pending update {meta.update_version}")
            end = min(offset + length, meta.length)
            if end <= offset:
                return ReadExtent(meta, -1, offset, offset, (), ())
            try:
                handle = self._fds.acquire(self._path(key, meta.file_version))
            except FileNotFoundError as exc:
                fresh = self.get_meta(key)
                if fresh == meta:
                    raise Internal(f"{describe_key(key)}: chunk file {exc.filename} is missing") from exc
                self.counters.read_retries += 1
                meta = fresh
                continue
            try:
                return self._extent(key, meta, handle, offset, end)
            except ChecksumMismatch:
                self._fds.release(handle)
                fresh = self.get_meta(key)
                if fresh == meta:
                    raise
                self.counters.read_retries += 1
                meta = fresh
            except BaseException:
                self._fds.release(handle)
                raise
        raise Internal(f"{describe_key(key)}: read kept racing writers ({_READ_RETRIES_MAX} tries)")

    def read_extents(self, reads: list[tuple[bytes, int, int]]) -> list["ReadExtent | FfsError"]:
        """read_extent of each (key, offset, length), metas from one read transaction; an FfsError
        in place of an extent that failed.

        Small reads (a batch of random samples) take a short path: a read inside
        one block reuses the descriptor and the verified block of an earlier read
        of the batch, and costs no call into read_extent. Anything else, and any
        read whose block fails its CRC, goes through read_extent (with its retries
        against racing writers). Every fast-path extent is closed already.
        """
        metas = self.get_metas([key for key, _, _ in reads])
        out: list = []
        handles: dict[str, CachedFd] = {}
        blocks: dict[tuple[str, int], bytes] = {}
        chunk_size_max = limits.chunk_size_max
        try:
            for (key, offset, length), meta in zip(reads, metas):
                end = offset + length
                if (meta is None or offset < 0 or length <= 0 or end > chunk_size_max
                        or meta.update_version != meta.commit_version or end > meta.length):
                    out.append(self._read_extent_or_error(key, offset, length, meta))
                    continue
                block_size = meta.block_size
                block = offset // block_size
                if (end - 1) // block_size != block:
                    out.append(self._read_extent_or_error(key, offset, length, meta))
                    continue
                path = self._path(key, meta.file_version)
                data = blocks.get((path, block))
                if data is None:
                    handle = handles.get(path)
                    try:
                        if handle is None:
                            handle = handles[path] = self._fds.acquire(path)
                        data = self._read_verified_block(key, meta, handle.fd, block)
                    except (OSError, ChecksumMismatch):
                        out.append(self._read_extent_or_error(key, offset, length, meta))
                        continue
                    blocks[(path, block)] = data
                out.append(_in_block_extent(meta, block, data, offset, end))
        finally:
            for handle in handles.values():
                self._fds.release(handle)
        return out

    def _read_extent_or_error(self, key: bytes, offset: int, length: int, meta: ChunkMeta | None
                              ) -> "ReadExtent | FfsError":
        try:
            return self.read_extent(key, offset, length, meta)
        except FfsError as exc:
            return exc

    def _extent(self, key: bytes, meta: ChunkMeta, handle: "CachedFd", offset: int, end: int
                ) -> "ReadExtent":
        fd = handle.fd
        block_size = meta.block_size
        block = offset // block_size
        last = (end - 1) // block_size
        if block == last:
            # Inside one block (small random reads): read, verify, slice; the descriptor goes back now.
            data = self._read_verified_block(key, meta, fd, block)
            self._fds.release(handle)
            return _in_block_extent(meta, block, data, offset, end)
        if block + 1 == last and offset % block_size and end < min((last + 1) * block_size, meta.length):
            # A small read across one boundary, partial on both sides: both blocks in one pread.
            block_start = block * block_size
            data = self._read_verified_span(key, meta, fd, block, last)
            self._fds.release(handle)
            view = memoryview(data)
            boundary = last * block_size
            return ReadExtent(meta, -1, offset, end,
                              (crc32c.crc32c(view[offset - block_start:boundary - block_start]),
                               crc32c.crc32c(view[boundary - block_start:end - block_start])),
                              (view[offset - block_start:end - block_start],))
        stored = meta.block_crcs
        crcs: list[int] = []
        parts: list = []
        first, last = offset // block_size, (end - 1) // block_size
        block = first
        while block <= last:
            block_start = block * block_size
            block_end = min(block_start + block_size, meta.length)
            lo, hi = max(offset, block_start), min(end, block_end)
            if lo == block_start and hi == block_end:
                # A run of whole blocks: stays in the file, checked by the client against stored CRCs.
                run_end = block
                while run_end + 1 <= last and min((run_end + 2) * block_size, meta.length) <= end:
                    run_end += 1
                run_stop = min((run_end + 1) * block_size, meta.length)
                crcs.extend(crcs_from_bytes(stored[4 * block:4 * (run_end + 1)]))
                parts.append((block_start, run_stop - block_start))
                block = run_end + 1
                continue
            data = self._read_verified_block(key, meta, fd, block)
            piece = memoryview(data)[lo - block_start:hi - block_start]
            crcs.append(crc32c.crc32c(piece))
            parts.append(piece)
            block += 1
        return ReadExtent(meta, fd, offset, end, tuple(crcs), tuple(parts), handle, self._fds)

    # ------------------------------------------------------------------ queries

    def last_chunk(self, inode: int) -> LastChunk | None:
        """The highest-indexed chunk of inode on this target, its length, and the chunk count."""
        start = chunk_key(inode, 0)
        stop = key_range_end(inode, None)
        count = 0
        last_key = None
        with self._env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(start):
                for key in cursor.iternext(keys=True, values=False):
                    if key >= stop:
                        break
                    count += 1
                    last_key = bytes(key)
            if last_key is None:
                return None
            meta = ChunkMeta.decode(txn.get(last_key))
        return LastChunk(split_key(last_key)[1], meta.length, count)

    def metas_after(self, start_after: bytes | None, limit: int) -> list[tuple[bytes, ChunkMeta]]:
        """Up to limit (key, meta) pairs after start_after (None: from the first), in key order."""
        out: list[tuple[bytes, ChunkMeta]] = []
        with self._env.begin() as txn:
            cursor = txn.cursor()
            found = cursor.set_range(start_after) if start_after is not None else cursor.first()
            if not found:
                return out
            for key, raw in cursor:
                if start_after is not None and bytes(key) == start_after:
                    continue
                out.append((bytes(key), ChunkMeta.decode(raw)))
                if len(out) >= limit:
                    break
        return out

    def iter_metas(self) -> Iterator[tuple[int, int, ChunkMeta]]:
        """Every chunk as (inode, index, meta), in key order (for resync and checks)."""
        with self._env.begin() as txn:
            for key, raw in txn.cursor():
                inode, index = split_key(key)
                yield inode, index, ChunkMeta.decode(raw)

    def _disk_usage_cached(self, now: float):
        cached = self._disk_usage
        if cached is None or now - cached[0] >= DISK_USAGE_TTL_S or now < cached[0]:
            cached = (now, shutil.disk_usage(self.target_dir))
            self._disk_usage = cached
        return cached[1]

    def space(self, capacity_bytes: int | None = None, now: float | None = None) -> SpaceStats:
        """Capacity (given, else the file system's), bytes in chunks, free bytes, chunk count, map use.

        free is the smaller of what the file system has free (statvfs, cached
        for DISK_USAGE_TTL_S) and capacity minus the chunk bytes held here
        (exact, updated by every write and removal). Cheap enough per write.
        """
        usage = self._disk_usage_cached(time.monotonic() if now is None else now)
        with self._stats_lock:
            used, count = self._used_bytes, self._chunk_count
        capacity = capacity_bytes if capacity_bytes else usage.total
        map_usage = self._env.usage()
        return SpaceStats(capacity, used, min(usage.free, max(capacity - used, 0)), count,
                          map_usage.used_bytes, map_usage.map_bytes, map_usage.map_bytes_max, usage.free)
