"""The free-space reserve of one target, and its fill warnings.

Why a reserve: a file system that fills up mid-write fails in the worst
places (a chunk file half written, LMDB unable to commit even a delete). So a
target stops taking NEW chunk bytes while it still has room: a client write
is refused with NoSpace when it would leave less than the reserve free. What
counts as new bytes: a new chunk, and growth of an existing chunk past its
committed length (an append grows a file without bound, so refusing only new
chunks would let existing ones eat the reserve). Overwrites inside a chunk's
length are admitted: they leave usage unchanged once their copy-on-write file
replaces the old one, and a full store must still let applications rewrite
what they have. Reads, truncates and chunk removals are never refused; a
removal frees space at once and writes resume.

Only client writes at the chain head are admitted here. Chain updates from a
predecessor, resync and roll-forward are not: refusing a write the head
already staged would strand it pending, and resync is what restores
redundancy. They use the reserve instead, which is why it is there.

Free space is ``ChunkEngine.space``: the smaller of the file system's free
bytes (statvfs, cached for a second) and the configured capacity minus the
chunk bytes held (exact), so a small ``--target-capacity`` exercises all of
this without filling a disk. The check is one in-memory read per write, plus
one chunk-meta lookup only when the target is near its reserve.
"""

from __future__ import annotations

import dataclasses
import logging

from fireflyfs.common import limits
from fireflyfs.common.errors import NoSpace
from fireflyfs.common.space_watch import FillWatch
from fireflyfs.common.units import parse_size_or_percent

from .chunk_engine import ChunkEngine, SpaceStats
from .chunk_meta import describe_key

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceReserve:
    """Free bytes a target keeps back: a share of its capacity, a byte count, or the smaller of both."""

    fraction: float | None = limits.target_reserve_fraction_default
    bytes: int | None = limits.target_reserve_bytes_default

    @classmethod
    def parse(cls, text: str) -> "SpaceReserve":
        """'5%' or '1GiB' (one of them alone); '' is the default (5% or 1 GiB, whichever is smaller)."""
        if not str(text).strip():
            return cls()
        size, fraction = parse_size_or_percent(text)
        return cls(fraction=fraction, bytes=size)

    def bytes_for(self, capacity_bytes: int) -> int:
        candidates = [int(capacity_bytes * self.fraction)] if self.fraction is not None else []
        if self.bytes is not None:
            candidates.append(self.bytes)
        return min(min(candidates), capacity_bytes) if candidates else 0

    def __str__(self) -> str:
        parts = ([f"{self.fraction:.1%}"] if self.fraction is not None else []) + \
                ([f"{self.bytes} bytes"] if self.bytes is not None else [])
        return " or ".join(parts) + (" (the smaller)" if len(parts) > 1 else "") if parts else "none"


class SpaceGuard:
    """Admission of client writes against the reserve, and fill warnings, for one target."""

    def __init__(self, target_id: int, engine: ChunkEngine, capacity_bytes: int = 0,
                 reserve: SpaceReserve = SpaceReserve(),
                 warn_fraction: float = limits.space_warn_fraction_default) -> None:
        self.target_id = target_id
        self.engine = engine
        self.capacity_bytes = capacity_bytes   # 0: the file system's size
        self.reserve = reserve
        self.watch = FillWatch(log, f"target {target_id}", warn_fraction)
        self.refused_writes = 0

    def stats(self) -> SpaceStats:
        return self.engine.space(self.capacity_bytes or None)

    def reserve_bytes(self, space: SpaceStats) -> int:
        return self.reserve.bytes_for(space.capacity_bytes)

    def check(self) -> tuple[SpaceStats, str]:
        """Space now, and the fill warnings (logged once per crossing); for heartbeats and SpaceInfo."""
        space = self.stats()
        disk = self.watch.observe("space", space.capacity_bytes - space.free_bytes, space.capacity_bytes,
                                  f"new chunk bytes stop {self.reserve_bytes(space)} bytes before "
                                  f"full; delete files or add capacity")
        chunk_map = self.watch.observe("chunk metadata map", space.map_used_bytes, space.map_bytes_max,
                                       "raise --target-map-size-max and restart")
        return space, "; ".join(text for text in (disk, chunk_map) if text)

    def admit_write(self, key: bytes, offset: int, length: int) -> None:
        """NoSpace when writing [offset, offset+length) of the chunk would leave less than the reserve free."""
        space = self.stats()
        reserve = self.reserve_bytes(space)
        end = offset + length
        if space.free_bytes - end >= reserve:      # even a new chunk this long fits: no lookup
            return
        meta = self.engine.get_meta(key)
        growth = end - (meta.length if meta is not None else 0)
        if growth <= 0 or space.free_bytes - growth >= reserve:
            return
        self.refused_writes += 1
        raise NoSpace(f"target {self.target_id}: {describe_key(key)} would grow by {growth} bytes with "
                      f"{space.free_bytes} of {space.capacity_bytes} bytes free, below the reserve of "
                      f"{reserve} ({self.reserve}); new chunk bytes are refused until deletes free "
                      f"space (reads, overwrites, truncates and deletes still work)")
