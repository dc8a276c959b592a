"""One storage target: a directory, its chunk engine, its id, its local state, its write dedup.

The target also owns the exactly-once cache of client writes: the last
(client_id, channel) -> (seqnum, reply) it answered, so a retried write with
the same seqnum gets the same reply without being applied twice (3FS keeps
this per client channel too). The cache is an in-memory bounded LRU: after a
restart a retry is applied again, which is harmless for a plain write of the
same bytes at the same offset (it only bumps the chunk version).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from fireflyfs.common import limits
from fireflyfs.common.errors import InvalidArgument
from fireflyfs.proto import types_pb2

from .chunk_engine import CHECKSUM_BLOCK_BYTES_DEFAULT, POOL_FILES_MAX_DEFAULT, ChunkEngine, SpaceStats
from .chunk_meta import ChunkMeta, describe_key
from .chunk_locks import ChunkLocks, InFlight
from .local_state import LocalStateTracker
from .space_guard import SpaceGuard, SpaceReserve

log = logging.getLogger(__name__)

write_dedup_entries_max = limits.write_dedup_entries_max
_CLIENT_LOCK_STRIPES = 64


@dataclasses.dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a write answers (mirrors WriteReply)."""

    commit_version: int
    chunk_length: int
    chunk_checksum: int

    @classmethod
    def from_meta(cls, meta: ChunkMeta | None) -> "WriteOutcome":
        if meta is None:
            return cls(0, 0, 0)
        return cls(meta.commit_version, meta.length, meta.chunk_checksum)


class WriteDedup:
    """Bounded LRU of (client_id, channel) -> (seqnum, chunk key, outcome)."""

    def __init__(self, entries_max: int = write_dedup_entries_max) -> None:
        self._entries: collections.OrderedDict[tuple[str, int], tuple[int, bytes, WriteOutcome]] = \
            collections.OrderedDict()
        self._entries_max = entries_max
        self._lock = threading.Lock()

    def lookup(self, client_id: str, channel: int, seqnum: int, key: bytes) -> WriteOutcome | None:
        """The cached outcome of this exact request, None if new; raises on an old seqnum."""
        with self._lock:
            entry = self._entries.get((client_id, channel))
            if entry is None:
                return None
            self._entries.move_to_end((client_id, channel))
        last_seqnum, last_key, outcome = entry
        if seqnum > last_seqnum:
            return None
        if seqnum < last_seqnum:
            raise InvalidArgument(f"client {client_id!r} channel {channel}: seqnum {seqnum} is older "
                                  f"than the last one applied ({last_seqnum})")
        if key != last_key:
            raise InvalidArgument(f"client {client_id!r} channel {channel}: seqnum {seqnum} reused for "
                                  f"{describe_key(key)} (was {describe_key(last_key)})")
        return outcome

    def record(self, client_id: str, channel: int, seqnum: int, key: bytes, outcome: WriteOutcome) -> None:
        with self._lock:
            self._entries[(client_id, channel)] = (seqnum, key, outcome)
            self._entries.move_to_end((client_id, channel))
            while len(self._entries) > self._entries_max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Target:
    """A target of this node: id, directory, engine, dedup cache, local state."""

    def __init__(self, target_id: int, path: str | os.PathLike, *, block_size: int = CHECKSUM_BLOCK_BYTES_DEFAULT,
                 fsync: bool = True, capacity_bytes: int = 0,
                 pool_files_max: int = POOL_FILES_MAX_DEFAULT,
                 map_size_bytes: int = limits.target_map_bytes_default,
                 map_size_bytes_max: int = limits.target_map_bytes_max_default,
                 reserve: SpaceReserve = SpaceReserve(),
                 space_warn_fraction: float = limits.space_warn_fraction_default) -> None:
        self.id = target_id
        self.path = Path(path)
        self.engine = ChunkEngine(self.path, block_size=block_size, fsync=fsync, pool_files_max=pool_files_max,
                                  map_size_bytes=map_size_bytes, map_size_bytes_max=map_size_bytes_max)
        self.capacity_bytes = capacity_bytes  # 0: the file system's size
        self.space_guard = SpaceGuard(target_id, self.engine, capacity_bytes, reserve, space_warn_fraction)
        self.local = LocalStateTracker(target_id)
        self.locks = ChunkLocks(target_id)
        self.in_flight = InFlight()
        self.dedup = WriteDedup()
        self._client_locks = [threading.Lock() for _ in range(_CLIENT_LOCK_STRIPES)]

    @property
    def local_state(self) -> int:
        return self.local.state

    def deduplicated(self, client_id: str, channel: int, seqnum: int, key: bytes,
                     apply: Callable[[], WriteOutcome]) -> WriteOutcome:
        """Run a client write at most once per (client_id, channel, seqnum) while cached.

        An empty client_id or seqnum 0 opts out of deduplication.
        """
        if not client_id or seqnum == 0:
            return apply()
        # One lock per client channel: a retry racing its original waits and reads the cache.
        with self._client_locks[hash((client_id, channel)) % _CLIENT_LOCK_STRIPES]:
            cached = self.dedup.lookup(client_id, channel, seqnum, key)
            if cached is not None:
                log.info("target %d: duplicate write client %s channel %d seqnum %d answered from cache",
                         self.id, client_id, channel, seqnum)
                return cached
            outcome = apply()
            self.dedup.record(client_id, channel, seqnum, key, outcome)
            return outcome

    def write(self, key: bytes, offset: int, data: bytes, chunk_size: int, chain_version: int,
              checksum: int, client_id: str = "", channel: int = 0, seqnum: int = 0) -> WriteOutcome:
        """A write on this target alone (no chain), applied at most once per client channel seqnum."""
        def apply() -> WriteOutcome:
            self.space_guard.admit_write(key, offset, len(data))
            return WriteOutcome.from_meta(self.engine.write(key, offset, data, chunk_size, chain_version,
                                                            checksum=checksum))

        return self.deduplicated(client_id, channel, seqnum, key, apply)

    def space(self) -> SpaceStats:
        """Space now; logs a warning once when the target or its chunk metadata map passes the threshold."""
        return self.space_guard.check()[0]

    def space_warning(self) -> str:
        """The fill warnings of the last space() ("" when none)."""
        return "; ".join(self.space_guard.watch.warnings())

    def info(self, node_id: int) -> types_pb2.TargetInfo:
        space = self.space()
        return types_pb2.TargetInfo(id=self.id, node_id=node_id, path=str(self.path),
                                    local_state=self.local_state, used_bytes=space.used_bytes,
                                    capacity_bytes=space.capacity_bytes, chunk_count=space.chunk_count)

    def close(self) -> None:
        self.engine.close()


def target_ids(node_id: int, target_count: int) -> list[int]:
    """Target ids of a node, as the wire conventions fix them: node_id*100 + i + 1."""
    if not 1 <= target_count <= 99:
        raise InvalidArgument(f"target count {target_count} not in 1..99")
    return [node_id * 100 + i + 1 for i in range(target_count)]
