"""What a target's LMDB holds per chunk: the chunk key and the ChunkMeta record with its codec.

The key is ``struct.pack(">QI", inode, index)``, big-endian so a file's chunks
are contiguous (last-chunk queries and range removals are range scans, as 3FS
lays out its ChunkId). The record carries the length, the CRAQ versions, the
file version naming the chunk file, and one CRC32C per block. Its byte layout
is on-disk format: docs/chunk-engine.md.
"""

from __future__ import annotations

import array
import dataclasses
import struct
import sys

import crc32c

from fireflyfs.common.errors import Internal, InvalidArgument

_KEY = struct.Struct(">QI")
_CRC = struct.Struct("<I")
_META_HEADER = struct.Struct("<B3xIIIQQIQ")
_META_FORMAT = 1

if array.array("I").itemsize != 4:  # the packed CRC array format depends on it
    raise ImportError("array('I') must be 4 bytes on this platform")


def chunk_key(inode: int, index: int) -> bytes:
    """The LMDB key of chunk (inode, index): big-endian so a file's chunks sort together."""
    if not 0 <= inode < 1 << 64 or not 0 <= index < 1 << 32:
        raise InvalidArgument(f"chunk id ({inode}, {index}) out of range")
    return _KEY.pack(inode, index)


def split_key(key: bytes) -> tuple[int, int]:
    return _KEY.unpack(key)


def key_range_end(inode: int, end_index: int | None) -> bytes:
    """The first key past chunks [.., end_index) of inode (None: past all of its chunks)."""
    if end_index is not None and end_index < 1 << 32:
        return _KEY.pack(inode, end_index)
    return _KEY.pack(inode, 0xFFFFFFFF) + b"\x00"


def describe_key(key: bytes) -> str:
    inode, index = split_key(key)
    return f"chunk {inode}:{index}"


def crcs_to_bytes(crcs: array.array) -> bytes:
    if sys.byteorder == "little":
        return crcs.tobytes()
    swapped = array.array("I", crcs)
    swapped.byteswap()
    return swapped.tobytes()


def crcs_from_bytes(raw: bytes) -> array.array:
    crcs = array.array("I")
    crcs.frombytes(raw)
    if sys.byteorder != "little":
        crcs.byteswap()
    return crcs


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkMeta:
    """Everything LMDB holds about one chunk. ``block_crcs``: packed little-endian uint32."""

    length: int
    chunk_size: int
    block_size: int
    commit_version: int
    update_version: int
    chain_version: int
    file_version: int      # suffix of the chunk file holding the bytes
    block_crcs: bytes

    @property
    def block_count(self) -> int:
        return -(-self.length // self.block_size)

    @property
    def committed(self) -> bool:
        return self.update_version == self.commit_version

    @property
    def chunk_checksum(self) -> int:
        """CRC32C over the block CRCs: equal for byte-identical replicas with the same block size."""
        return crc32c.crc32c(self.block_crcs)

    def crcs(self) -> array.array:
        return crcs_from_bytes(self.block_crcs)

    def block_crc(self, block: int) -> int:
        return _CRC.unpack_from(self.block_crcs, 4 * block)[0]

    def bad_blocks(self, data: bytes | memoryview) -> tuple[int, ...]:
        """Blocks of data (the whole chunk, as read from a file or a replica) that fail this meta's CRCs.

        Missing bytes count as bad: a short read fails the blocks it does not fill.
        """
        view = memoryview(data)
        crcs = self.crcs()
        bad = []
        for block in range(self.block_count):
            start = block * self.block_size
            piece = view[start:start + self.block_size]
            if len(piece) != min(self.block_size, self.length - start) or crc32c.crc32c(piece) != crcs[block]:
                bad.append(block)
        return tuple(bad)

    def encode(self) -> bytes:
        return _META_HEADER.pack(_META_FORMAT, self.length, self.chunk_size, self.block_size,
                                 self.commit_version, self.update_version, self.chain_version,
                                 self.file_version) + self.block_crcs

    @classmethod
    def decode(cls, raw: bytes) -> "ChunkMeta":
        (fmt, length, chunk_size, block_size, commit_version, update_version, chain_version,
         file_version) = _META_HEADER.unpack_from(raw)
        if fmt != _META_FORMAT:
            raise Internal(f"unknown chunk meta format {fmt}")
        meta = cls(length, chunk_size, block_size, commit_version, update_version, chain_version,
                   file_version, bytes(raw[_META_HEADER.size:]))
        if len(meta.block_crcs) != 4 * meta.block_count:
            raise Internal(f"chunk meta holds {len(meta.block_crcs) // 4} block CRCs for "
                           f"{meta.block_count} blocks")
        return meta

