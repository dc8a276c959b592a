"""ChunkEngine unit tests: the engine alone, real files and LMDB under tmp_path, no processes.

Method: drive write/read/truncate/remove directly and compare with a bytearray
model; corrupt chunk files by hand to check that reads verify (only) the
blocks they touch; reopen the engine to check recovery.
"""

from __future__ import annotations

import os
import random

import crc32c
import pytest

from fireflyfs.common import limits
from fireflyfs.common.errors import ChecksumMismatch, InvalidArgument
from fireflyfs.common.limits import KiB
from fireflyfs.storage_service.chunk_engine import ChunkEngine, LastChunk
from fireflyfs.storage_service.chunk_meta import ChunkMeta, chunk_key

BLOCK = 4 * KiB          # small blocks so tests touch many of them
CHUNK = 64 * KiB         # limits.chunk_size_min


@pytest.fixture
def engine(tmp_path):
    with ChunkEngine(tmp_path / "target", block_size=BLOCK) as eng:
        yield eng


def chunk_files(eng: ChunkEngine) -> list[str]:
    return sorted(os.listdir(eng.chunks_dir))


def write(eng: ChunkEngine, key: bytes, offset: int, data: bytes, chunk_size: int = CHUNK) -> ChunkMeta:
    return eng.write(key, offset, data, chunk_size, chain_version=1, checksum=crc32c.crc32c(data))


def flip_byte(eng: ChunkEngine, key: bytes, position: int) -> None:
    meta = eng.get_meta(key)
    path = eng.chunks_dir / f"{key.hex()}.{meta.file_version}"
    with open(path, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_round_trip_at_chunk_boundaries(engine):
    key = chunk_key(7, 3)
    data = random.Random(1).randbytes(CHUNK)
    meta = write(engine, key, 0, data)
    assert (meta.length, meta.commit_version, meta.update_version) == (CHUNK, 1, 1)
    assert engine.read(key, 0, CHUNK)[0] == data
    assert engine.read(key, CHUNK - 1, 1)[0] == data[-1:]
    assert engine.read(key, BLOCK - 3, 6)[0] == data[BLOCK - 3:BLOCK + 3]  # crosses a block edge
    # Reads past the end are short, at/after the end empty.
    assert engine.read(key, CHUNK - 10, 100)[0] == data[-10:]
    assert engine.read(key, CHUNK, 100)[0] == b""
    # A missing chunk reads as nothing.
    assert engine.read(chunk_key(7, 4), 0, 100) == (b"", None)


def test_gap_past_end_reads_as_zeros(engine):
    key = chunk_key(1, 0)
    write(engine, key, 0, b"a" * 100)
    meta = write(engine, key, 3 * BLOCK + 5, b"b" * 10)
    assert meta.length == 3 * BLOCK + 15
    data, _ = engine.read(key, 0, CHUNK)
    assert data == b"a" * 100 + bytes(3 * BLOCK + 5 - 100) + b"b" * 10
    # A fresh chunk written at an offset starts with zeros too.
    other = chunk_key(1, 1)
    write(engine, other, 1000, b"xyz")
    assert engine.read(other, 0, 2000)[0] == bytes(1000) + b"xyz"


def test_gap_is_zero_even_over_leftover_bytes(engine):
    """Uncommitted bytes past the end (a crashed append, a shrink) never show through a gap."""
    key = chunk_key(2, 0)
    write(engine, key, 0, b"x" * (2 * BLOCK))
    engine.truncate(key, 10, CHUNK, 1)
    meta = engine.get_meta(key)
    with open(engine.chunks_dir / f"{key.hex()}.{meta.file_version}", "r+b") as handle:
        handle.seek(10)
        handle.write(b"G" * 5000)  # garbage past the committed end, as a killed append leaves
    write(engine, key, 3000, b"y")
    assert engine.read(key, 0, 4000)[0] == b"x" * 10 + bytes(2990) + b"y"


def test_overwrite_versions_and_model(engine):
    """Random writes and truncates against a bytearray model; versions strictly increase."""
    rng = random.Random(5)
    key = chunk_key(3, 9)
    model = bytearray()
    last_version = 0
    for _ in range(150):
        if rng.random() < 0.85:
            offset = rng.randrange(0, min(CHUNK - 1, len(model) + 3 * BLOCK))
            data = rng.randbytes(rng.randrange(1, min(CHUNK - offset, 3 * BLOCK) + 1))
            meta = write(engine, key, offset, data)
            model.extend(bytes(max(0, offset - len(model))))
            model[offset:offset + len(data)] = data
        else:
            length = rng.randrange(0, CHUNK + 1)
            before = engine.get_meta(key)
            meta = engine.truncate(key, length, CHUNK, 1)
            if length > len(model):
                model.extend(bytes(length - len(model)))
            else:
                del model[length:]
            if before is not None and before.length == length:
                assert meta == before  # unchanged length: no version bump
                continue
        assert meta.commit_version > last_version and meta.committed
        last_version = meta.commit_version
        assert meta.length == len(model)
        offset = rng.randrange(0, CHUNK)
        length = rng.randrange(0, CHUNK)
        assert engine.read(key, offset, length)[0] == bytes(model[offset:offset + length])
    assert len(chunk_files(engine)) == 1  # copy-on-write left no old files behind


def test_truncate(engine):
    key = chunk_key(4, 0)
    write(engine, key, 0, b"z" * (2 * BLOCK + 100))
    meta = engine.truncate(key, BLOCK + 7, CHUNK, 2)
    assert (meta.length, meta.commit_version, meta.chain_version) == (BLOCK + 7, 2, 2)
    assert engine.read(key, 0, CHUNK)[0] == b"z" * (BLOCK + 7)
    meta = engine.truncate(key, 3 * BLOCK, CHUNK, 2)
    assert engine.read(key, 0, CHUNK)[0] == b"z" * (BLOCK + 7) + bytes(2 * BLOCK - 7)
    # Truncating a missing chunk to 0 creates nothing; to a length creates zeros.
    assert engine.truncate(chunk_key(4, 1), 0, CHUNK, 1) is None
    assert engine.get_meta(chunk_key(4, 1)) is None
    assert engine.truncate(chunk_key(4, 2), 5000, CHUNK, 1).length == 5000
    assert engine.read(chunk_key(4, 2), 0, CHUNK)[0] == bytes(5000)


def test_remove_range_and_last_chunk(engine):
    for inode in (10, 11, 12):
        for index in (0, 1, 2, 5, 9):
            write(engine, chunk_key(inode, index), 0, bytes([index]) * (100 + index))
    assert engine.last_chunk(11) == LastChunk(9, 109, 5)
    assert engine.last_chunk(13) is None
    assert engine.remove_range(11, 2, 6) == 2          # indices 2 and 5
    assert engine.last_chunk(11) == LastChunk(9, 109, 3)
    assert engine.remove_range(11, 9, None) == 1       # no upper bound
    assert engine.last_chunk(11) == LastChunk(1, 101, 2)
    assert engine.remove_range(11, 0, None) == 2
    assert engine.last_chunk(11) is None
    assert engine.remove_range(11, 0, None) == 0       # idempotent
    # Neighbours untouched.
    assert engine.last_chunk(10) == LastChunk(9, 109, 5) and engine.last_chunk(12) == LastChunk(9, 109, 5)
    assert len(chunk_files(engine)) == 10
    assert engine.space().chunk_count == 10
    assert engine.space().used_bytes == 2 * sum(100 + i for i in (0, 1, 2, 5, 9))


def test_flipped_byte_is_caught_and_named(engine):
    key = chunk_key(21, 4)
    data = random.Random(2).randbytes(5 * BLOCK)
    write(engine, key, 0, data)
    flip_byte(engine, key, 2 * BLOCK + 17)
    with pytest.raises(ChecksumMismatch) as caught:
        engine.read(key, 2 * BLOCK, 100)
    assert "chunk 21:4" in str(caught.value) and "block 2" in str(caught.value)
    with pytest.raises(ChecksumMismatch):
        engine.read(key, 0, 5 * BLOCK)
    # Blocks not touched by a read are not read: reads elsewhere still succeed.
    assert engine.read(key, 0, 2 * BLOCK)[0] == data[:2 * BLOCK]
    assert engine.read(key, 3 * BLOCK + 1, 2000)[0] == data[3 * BLOCK + 1:3 * BLOCK + 2001]
    # A write that must merge with the corrupt block refuses rather than launder it.
    with pytest.raises(ChecksumMismatch):
        write(engine, key, 2 * BLOCK + 100, b"new")
    with pytest.raises(ChecksumMismatch):
        engine.read(key, 2 * BLOCK, 1)


def test_verify_names_every_rotten_block_and_digests_content(engine):
    key = chunk_key(23, 1)
    data = random.Random(3).randbytes(4 * BLOCK + 123)
    write(engine, key, 0, data)
    clean = engine.verify(key)
    assert clean.ok and clean.content_crc == crc32c.crc32c(data)
    flip_byte(engine, key, BLOCK + 5)
    flip_byte(engine, key, 4 * BLOCK + 100)   # inside the short last block
    rotten = engine.verify(key)
    assert rotten.bad_blocks == (1, 4) and not rotten.ok
    assert rotten.content_crc != clean.content_crc
    os.unlink(engine.chunks_dir / f"{key.hex()}.{rotten.meta.file_version}")
    assert engine.verify(key).bad_blocks == (0, 1, 2, 3, 4)
    assert engine.verify(chunk_key(23, 99)) is None


def test_partial_read_verifies_only_touched_blocks(engine):
    key = chunk_key(22, 0)
    write(engine, key, 0, bytes(range(256)) * (CHUNK // 256))
    before = engine.counters.blocks_verified
    engine.read(key, 5 * BLOCK + 10, 4 * KiB)    # touches blocks 5 and 6
    assert engine.counters.blocks_verified - before == 2
    before = engine.counters.blocks_verified
    engine.read(key, 7 * BLOCK, BLOCK)           # exactly block 7
    assert engine.counters.blocks_verified - before == 1


def test_last_partial_block_checksum_covers_committed_bytes(engine):
    key = chunk_key(23, 0)
    write(engine, key, 0, b"q" * (BLOCK + 10))
    meta = write(engine, key, BLOCK + 10, b"r" * 20)  # append into the partial block
    assert meta.crcs()[1] == crc32c.crc32c(b"q" * 10 + b"r" * 20)
    assert meta.crcs()[0] == crc32c.crc32c(b"q" * BLOCK)
    assert meta.chunk_checksum == crc32c.crc32c(meta.block_crcs)


@pytest.mark.parametrize("bad", [
    dict(offset=-1), dict(offset=CHUNK - 1, data=b"ab"), dict(chunk_size=CHUNK + 1),
    dict(chunk_size=limits.chunk_size_min // 2), dict(chunk_size=limits.chunk_size_max * 2),
    dict(checksum=123), dict(chunk_size=2 * CHUNK, offset=0),
])
def test_bad_writes_change_nothing(engine, bad):
    key = chunk_key(30, 1)
    write(engine, key, 0, b"keep" * 100)
    before = (engine.get_meta(key), chunk_files(engine))
    args = dict(offset=10, data=b"xx", chunk_size=CHUNK, checksum=None)
    args.update(bad)
    if args["checksum"] is None:
        args["checksum"] = crc32c.crc32c(args["data"])
    with pytest.raises((InvalidArgument, ChecksumMismatch)) as caught:
        engine.write(key, args["offset"], args["data"], args["chunk_size"], 1, checksum=args["checksum"])
    assert str(caught.value)
    assert (engine.get_meta(key), chunk_files(engine)) == before
    assert engine.read(key, 0, CHUNK)[0] == b"keep" * 100


def test_bad_reads_and_ids(engine):
    with pytest.raises(InvalidArgument):
        engine.read(chunk_key(1, 1), -1, 10)
    with pytest.raises(InvalidArgument):
        engine.read(chunk_key(1, 1), limits.chunk_size_max, 1)
    with pytest.raises(InvalidArgument):
        chunk_key(-1, 0)
    with pytest.raises(InvalidArgument):
        chunk_key(1, 1 << 32)
    with pytest.raises(InvalidArgument):
        engine.truncate(chunk_key(1, 1), CHUNK + 1, CHUNK, 1)
    with pytest.raises(InvalidArgument):
        ChunkEngine(engine.target_dir / "other", block_size=3000)


def test_restart_recovers_and_removes_orphans(tmp_path):
    target = tmp_path / "target"
    with ChunkEngine(target, block_size=BLOCK) as eng:
        key = chunk_key(40, 2)
        write(eng, key, 0, b"persist" * 1000)
        write(eng, key, 5, b"OVER")  # copy-on-write
        meta = eng.get_meta(key)
        live = chunk_files(eng)
    # Leftovers a crash can leave: an uncommitted COW file and a not-yet-unlinked old file.
    (target / "chunks" / f"{key.hex()}.{meta.file_version + 1}").write_bytes(b"uncommitted")
    (target / "chunks" / f"{key.hex()}.1").write_bytes(b"old version")
    with ChunkEngine(target, block_size=BLOCK) as eng:
        assert chunk_files(eng) == live
        assert eng.get_meta(key) == meta
        assert eng.read(key, 0, 12)[0] == b"persiOVERrsi"
        assert eng.space().chunk_count == 1 and eng.space().used_bytes == 7000
        # Versions continue from the recovered meta.
        assert write(eng, key, 0, b"P").commit_version == meta.commit_version + 1


def test_block_size_is_per_chunk(tmp_path):
    """A target restarted with another default block size still reads its old chunks."""
    target = tmp_path / "target"
    data = random.Random(3).randbytes(CHUNK)
    with ChunkEngine(target, block_size=BLOCK) as eng:
        write(eng, chunk_key(1, 0), 0, data)
    with ChunkEngine(target, block_size=16 * KiB) as eng:
        assert eng.read(chunk_key(1, 0), 100, 9000)[0] == data[100:9100]
        write(eng, chunk_key(1, 0), 100, b"n")  # keeps the chunk's own block size
        assert eng.get_meta(chunk_key(1, 0)).block_size == BLOCK
        write(eng, chunk_key(1, 1), 0, data)
        assert eng.get_meta(chunk_key(1, 1)).block_size == 16 * KiB
