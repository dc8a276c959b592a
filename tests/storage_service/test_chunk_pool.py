"""The chunk engine's file pool: freed chunk files are reused whole, and their stale bytes never show.

Method: drive one ChunkEngine directly; pooled files are made deliberately
longer than what is written into them and full of a marker byte, so any
stale byte that leaked into a read, a gap or an extension would be seen.
Restarts reopen the engine on the same directory.
"""

from __future__ import annotations

import os

from fireflyfs.storage_service.craq import UpdateKind
from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key

CHUNK = 64 * 1024
BLOCK = 4096


def engine_at(path, **kwargs) -> ChunkEngine:
    return ChunkEngine(path, block_size=BLOCK, **kwargs)


def stale_pool(engine: ChunkEngine, files: int) -> None:
    """Fill the pool with files of CHUNK marker bytes (as freed chunks would leave)."""
    for index in range(files):
        engine.write(chunk_key(99, index), 0, b"\xee" * CHUNK, CHUNK, 1)
    assert engine.remove_range(99, 0, None) == files
    assert engine.pool_files == files


def test_freed_files_are_reused_and_stale_bytes_stay_unreachable(tmp_path):
    engine = engine_at(tmp_path)
    stale_pool(engine, 3)
    key = chunk_key(1, 0)
    engine.write(key, 0, b"short", CHUNK, 1)                 # a pooled file of CHUNK stale bytes
    assert engine.counters.pooled_files_used == 1 and engine.pool_files == 2
    assert engine.read(key, 0, CHUNK)[0] == b"short"
    extent = engine.read_extent(key, 0, CHUNK)
    assert extent.length == 5
    extent.close()
    engine.write(key, 100, b"gap", CHUNK, 1)                 # append past the end: the gap is zeros
    assert engine.read(key, 0, CHUNK)[0] == b"short" + bytes(95) + b"gap"
    engine.truncate(key, 1000, CHUNK, 1)                     # extension: zeros, not stale bytes
    assert engine.read(key, 0, CHUNK)[0] == b"short" + bytes(95) + b"gap" + bytes(897)
    engine.write(key, 2, b"XY", CHUNK, 1)                    # copy-on-write into a pooled file
    assert engine.read(key, 0, CHUNK)[0] == b"shXYt" + bytes(95) + b"gap" + bytes(897)
    assert engine.counters.cow_writes == 1
    engine.close()


def test_a_write_at_an_offset_never_takes_a_pooled_file(tmp_path):
    engine = engine_at(tmp_path)
    stale_pool(engine, 1)
    key = chunk_key(2, 0)
    engine.write(key, 10, b"late", CHUNK, 1)                 # the hole before it must read as zeros
    assert engine.counters.pooled_files_used == 0
    assert engine.read(key, 0, 100)[0] == bytes(10) + b"late"
    engine.close()


def test_replace_and_cow_recycle_the_old_file(tmp_path):
    engine = engine_at(tmp_path, pool_files_max=4)
    key = chunk_key(3, 0)
    engine.write(key, 0, b"a" * 9000, CHUNK, 1)
    engine.write(key, 0, b"b" * 10, CHUNK, 1)                # COW: the old file goes to the pool
    assert engine.pool_files == 1
    assert engine.read(key, 0, 20)[0] == b"b" * 10 + b"a" * 10
    engine.stage(key, UpdateKind.REPLACE, 5, 1, CHUNK, commit=True, data=b"c" * 100)
    assert engine.read(key, 0, CHUNK)[0] == b"c" * 100
    assert len(os.listdir(engine.chunks_dir)) == 1
    engine.close()


def test_the_pool_is_bounded_and_survives_restarts_with_orphans_recycled(tmp_path):
    engine = engine_at(tmp_path, pool_files_max=2)
    stale_pool_files = 5
    for index in range(stale_pool_files):
        engine.write(chunk_key(4, index), 0, b"z" * 100, CHUNK, 1)
    engine.remove_range(4, 0, None)
    assert engine.pool_files == 2, "beyond the bound freed files are unlinked"
    assert len(os.listdir(engine.pool_dir)) == 2
    engine.write(chunk_key(5, 0), 0, b"live", CHUNK, 1)      # takes one of them
    assert engine.pool_files == 1
    engine.close()
    orphan = engine.chunks_dir / f"{chunk_key(6, 0).hex()}.1"     # a crash between create and commit
    orphan.write_bytes(b"orphan")
    again = engine_at(tmp_path, pool_files_max=3)
    assert again.pool_files == 2 and not orphan.exists(), "the pooled file kept, the orphan recycled"
    assert again.read(chunk_key(5, 0), 0, 10)[0] == b"live"
    assert again.read(chunk_key(6, 0), 0, 10) == (b"", None)
    again.close()


def test_prefill_makes_zero_files_up_to_the_bound(tmp_path):
    engine = engine_at(tmp_path, pool_files_max=3)
    assert engine.prefill_pool(5, CHUNK) == 3
    assert engine.pool_files == 3
    assert all(os.path.getsize(engine.pool_dir / name) == CHUNK for name in os.listdir(engine.pool_dir))
    engine.write(chunk_key(7, 0), 0, b"q" * 10, CHUNK, 1)
    assert engine.read(chunk_key(7, 0), 0, CHUNK)[0] == b"q" * 10
    assert engine.prefill_pool(5, CHUNK) == 1
    engine.close()


def test_no_pool_when_disabled(tmp_path):
    engine = engine_at(tmp_path, pool_files_max=0)
    engine.write(chunk_key(8, 0), 0, b"x", CHUNK, 1)
    engine.remove(chunk_key(8, 0))
    assert engine.pool_files == 0 and os.listdir(engine.pool_dir) == []
    engine.close()
