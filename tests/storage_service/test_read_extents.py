"""ChunkEngine.read_extents, the batched read behind bulk replies, against read_extent one by one.

Method: real chunk files and LMDB under tmp_path, no processes. A batch mixing
reads inside one block (the short path), reads across blocks and past a
chunk's end (read_extent's path), missing and pending chunks and a rotten
block must give, IO by IO, the bytes and CRCs read_extent gives, or the same
error in place; a block two reads share is read and verified once.
"""

from __future__ import annotations

import os
import random

import crc32c
import pytest

from fireflyfs.common.errors import ChecksumMismatch, ChunkNotCommitted, FfsError
from fireflyfs.common.limits import KiB
from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.craq import UpdateKind

BLOCK = 4 * KiB
CHUNK = 64 * KiB


@pytest.fixture
def engine(tmp_path):
    with ChunkEngine(tmp_path / "target", block_size=BLOCK) as eng:
        yield eng


def write(eng: ChunkEngine, key: bytes, data: bytes) -> None:
    eng.write(key, 0, data, CHUNK, chain_version=1, checksum=crc32c.crc32c(data))


def materialize(extent) -> bytes:
    """The bytes a bulk reply would send for extent."""
    out = b""
    for part in extent.parts:
        out += os.pread(extent.fd, part[1], part[0]) if isinstance(part, tuple) else bytes(part)
    return out


def one_by_one(eng: ChunkEngine, reads):
    results = []
    for key, offset, length in reads:
        try:
            extent = eng.read_extent(key, offset, length)
        except FfsError as exc:
            results.append(type(exc))
            continue
        results.append((materialize(extent), extent.crcs, extent.start, extent.end))
        extent.close()
    return results


def batched(eng: ChunkEngine, reads):
    results = []
    for extent in eng.read_extents(reads):
        if isinstance(extent, FfsError):
            results.append(type(extent))
            continue
        results.append((materialize(extent), extent.crcs, extent.start, extent.end))
        extent.close()
    return results


def test_a_mixed_batch_answers_as_read_extent_does(engine):
    rng = random.Random(7)
    full, short = chunk_key(1, 0), chunk_key(1, 1)
    write(engine, full, rng.randbytes(CHUNK))
    write(engine, short, rng.randbytes(3 * BLOCK + 100))         # a short last block
    reads = [(full, 0, BLOCK), (full, 100, 50), (full, BLOCK - 10, 20),     # one block, across two
             (full, 5 * BLOCK, 3 * BLOCK), (short, 3 * BLOCK, 100), (short, 3 * BLOCK + 50, 500),
             (chunk_key(9, 9), 0, 10), (full, CHUNK - 5, 5)]
    reads += [(full, offset, rng.randrange(1, 2 * KiB))
              for offset in (rng.randrange(CHUNK - 2 * KiB) for _ in range(40))]
    assert batched(engine, reads) == one_by_one(engine, reads)


def test_a_block_two_reads_share_is_verified_once(engine):
    key = chunk_key(2, 0)
    write(engine, key, random.Random(1).randbytes(CHUNK))
    before = engine.counters.blocks_verified
    engine.read_extents([(key, 0, 100), (key, 200, 100), (key, BLOCK - 1, 1), (key, BLOCK, 10)])
    assert engine.counters.blocks_verified - before == 2


def test_errors_stay_with_their_read(engine):
    rng = random.Random(3)
    good, rotten, pending = chunk_key(3, 0), chunk_key(3, 1), chunk_key(3, 2)
    data = rng.randbytes(CHUNK)
    for key in (good, rotten):
        write(engine, key, data)
    engine.stage(pending, UpdateKind.WRITE, 1, 1, CHUNK, commit=False, offset=0, data=b"x" * 10,
                 checksum=crc32c.crc32c(b"x" * 10))
    meta = engine.get_meta(rotten)
    with open(engine.chunks_dir / f"{rotten.hex()}.{meta.file_version}", "r+b") as handle:
        handle.seek(2 * BLOCK + 3)
        handle.write(bytes([data[2 * BLOCK + 3] ^ 0xFF]))
    results = engine.read_extents([(good, 2 * BLOCK, 10), (rotten, 2 * BLOCK, 10), (pending, 0, 5),
                                   (rotten, 0, 10), (good, 2 * BLOCK + 5, 5)])
    assert isinstance(results[1], ChecksumMismatch) and "block 2" in str(results[1])
    assert isinstance(results[2], ChunkNotCommitted)
    assert materialize(results[0]) == data[2 * BLOCK:2 * BLOCK + 10]
    assert materialize(results[3]) == data[:10]          # the rotten chunk's other blocks still read
    assert materialize(results[4]) == data[2 * BLOCK + 5:2 * BLOCK + 10]
