"""File layout math: which chain holds chunk k of a file.

As in 3FS, a layout names a chain table, a chunk size, a stripe size and a
chain range (base + seed). Chunk k lives on the chain at position
``k % stripe_size`` of the list ``[base, base + stripe_size)`` (1-based indices
into the chain table, wrapping around it), shuffled with the seed.

3FS lost layouts when its shuffle changed between libstdc++ releases (#368),
so the shuffle here is our own: a Fisher–Yates driven by SplitMix64, plain
integer arithmetic that gives the same answer on every Python and platform.
``tests/common/test_layout.py`` pins it with test vectors: changing it orphans every
stored file.
"""

from __future__ import annotations

import dataclasses
import functools

from . import limits
from .errors import InvalidArgument, NoChainTable

_MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """One SplitMix64 step: (new state, output), all in 64-bit arithmetic."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def seeded_shuffle(items: list[int], seed: int) -> list[int]:
    """A new list with items shuffled by Fisher–Yates under SplitMix64(seed).

    The bound uses a plain modulo: the bias is below 2**-56 for the stripe
    sizes we allow and, more importantly, it is part of the pinned format.
    """
    shuffled = list(items)
    state = seed & _MASK64
    for i in range(len(shuffled) - 1, 0, -1):
        state, value = splitmix64(state)
        j = value % (i + 1)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    return shuffled


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """A file's layout; mirrors the ``Layout`` proto message."""

    chunk_size: int
    stripe_size: int
    chain_table_id: int
    chain_table_version: int
    chain_base: int
    seed: int

    def __post_init__(self) -> None:
        validate_chunk_size(self.chunk_size)
        if not 1 <= self.stripe_size <= limits.stripe_size_max:
            raise InvalidArgument(f"stripe size {self.stripe_size} not in 1..{limits.stripe_size_max}")
        if self.chain_base < 1:
            raise InvalidArgument(f"chain base {self.chain_base} must be >= 1")

    @classmethod
    def from_proto(cls, message) -> "Layout":
        return cls(message.chunk_size, message.stripe_size, message.chain_table_id,
                   message.chain_table_version, message.chain_base, message.seed)

    def to_proto(self, message_cls):
        return message_cls(**dataclasses.asdict(self))

    def chunk_index(self, offset: int) -> int:
        """Index of the chunk holding byte offset."""
        if offset < 0:
            raise InvalidArgument(f"negative offset {offset}")
        return offset // self.chunk_size

    def chain_index_for_chunk(self, chunk_index: int, chain_count: int) -> int:
        """1-based index into the chain table of the chain holding chunk_index."""
        return stripe_chain_indices(self.chain_base, self.stripe_size, self.seed,
                                    chain_count)[chunk_index % self.stripe_size]

    def stripe_chain_indices(self, chain_count: int) -> tuple[int, ...]:
        """The 1-based chain-table indices of this file's stripe, in stripe order."""
        return stripe_chain_indices(self.chain_base, self.stripe_size, self.seed, chain_count)

    def chunk_ranges(self, offset: int, length: int):
        """Split [offset, offset+length) into (chunk_index, offset_in_chunk, length) pieces."""
        if offset < 0 or length < 0:
            raise InvalidArgument(f"negative offset or length ({offset}, {length})")
        end = offset + length
        while offset < end:
            index, within = divmod(offset, self.chunk_size)
            piece = min(self.chunk_size - within, end - offset)
            yield index, within, piece
            offset += piece


@functools.lru_cache(maxsize=4096)
def stripe_chain_indices(base: int, stripe_size: int, seed: int, chain_count: int) -> tuple[int, ...]:
    """Shuffled 1-based chain indices [base, base+stripe) wrapped into 1..chain_count."""
    if chain_count < 1:
        raise NoChainTable("the chain table has no chains")
    if stripe_size > chain_count:
        raise InvalidArgument(f"stripe size {stripe_size} exceeds the {chain_count} chains of the table")
    indices = [(base - 1 + i) % chain_count + 1 for i in range(stripe_size)]
    return tuple(seeded_shuffle(indices, seed))


def validate_chunk_size(chunk_size: int) -> int:
    if not limits.is_power_of_two(chunk_size):
        raise InvalidArgument(f"chunk size {chunk_size} is not a power of two")
    if not limits.chunk_size_min <= chunk_size <= limits.chunk_size_max:
        raise InvalidArgument(
            f"chunk size {chunk_size} not in {limits.chunk_size_min}..{limits.chunk_size_max}")
    return chunk_size


class ChainAllocator:
    """Picks chain ranges for new files, as 3FS's meta does.

    A round-robin counter per (table, stripe) hands out bases so files spread
    evenly over the table: base = counter % chain_count + 1, then the counter
    advances by the stripe size. The counter lives in the caller's store; this
    class is the pure rule.
    """

    @staticmethod
    def next_base(counter: int, stripe_size: int, chain_count: int) -> tuple[int, int]:
        """(base for this file, next counter value)."""
        if chain_count < 1:
            raise NoChainTable("the chain table has no chains")
        base = counter % chain_count + 1
        return base, (counter + stripe_size) % chain_count
