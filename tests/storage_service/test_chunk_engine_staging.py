"""ChunkEngine CRAQ staging: pending updates persist, are invisible to committed reads, commit later.

Method: drive stage/commit/remove/metas_after directly on real files and LMDB
under tmp_path; reopen the engine between stage and commit to stand for a
crash there; compare contents with a bytearray model.
"""

from __future__ import annotations

import os

import crc32c
import pytest

from fireflyfs.common.errors import ChunkNotCommitted, Internal, InvalidArgument
from fireflyfs.storage_service.craq import UpdateKind
from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key

BLOCK = 4096
CHUNK = 64 * 1024
KEY = chunk_key(7, 0)


@pytest.fixture
def engine(tmp_path):
    with ChunkEngine(tmp_path / "target", block_size=BLOCK) as eng:
        yield eng


def stage_write(eng, offset, data, version, commit=False, chain_version=3):
    return eng.stage(KEY, UpdateKind.WRITE, version, chain_version, CHUNK, commit=commit, offset=offset, data=data,
                     checksum=crc32c.crc32c(data))


def test_pending_write_is_not_readable_until_commit(engine):
    stage_write(engine, 0, b"a" * 5000, 1, commit=True)
    meta = stage_write(engine, 100, b"b" * 10, 2)
    assert (meta.commit_version, meta.update_version, meta.chain_version) == (1, 2, 3)
    with pytest.raises(ChunkNotCommitted):
        engine.read(KEY, 0, 10)
    staged, _ = engine.read(KEY, 0, CHUNK, allow_pending=True)
    assert staged == b"a" * 100 + b"b" * 10 + b"a" * 4890
    meta = engine.commit(KEY, 2, chain_version=4)
    assert (meta.commit_version, meta.update_version, meta.chain_version) == (2, 2, 4)
    assert engine.read(KEY, 0, CHUNK)[0] == staged
    assert engine.commit(KEY, 2, chain_version=4) == meta, "a repeated commit is a no-op"


def test_pending_state_survives_a_restart(tmp_path):
    """A crash between stage and commit leaves the staged update pending, bytes intact."""
    with ChunkEngine(tmp_path / "t", block_size=BLOCK) as eng:
        eng.stage(KEY, UpdateKind.WRITE, 1, 1, CHUNK, commit=True, data=b"x" * 100)
        eng.stage(KEY, UpdateKind.WRITE, 2, 1, CHUNK, commit=False, offset=50, data=b"y" * 100)
        assert eng.pending_keys() == [KEY]
    with ChunkEngine(tmp_path / "t", block_size=BLOCK) as eng:
        assert eng.pending_keys() == [KEY], "found again on open"
        meta = eng.get_meta(KEY)
        assert (meta.commit_version, meta.update_version) == (1, 2)
        with pytest.raises(ChunkNotCommitted):
            eng.read(KEY, 0, 10)
        assert eng.read(KEY, 0, 1000, allow_pending=True)[0] == b"x" * 50 + b"y" * 100
        eng.commit(KEY, 2, 1)
        assert eng.pending_keys() == []
        assert eng.read(KEY, 0, 1000)[0] == b"x" * 50 + b"y" * 100
        assert len(os.listdir(eng.chunks_dir)) == 1


def test_reapplying_a_pending_update_gives_the_same_bytes(engine):
    """A predecessor resending update u to a replica that staged u already: same bytes, no new version."""
    stage_write(engine, 0, b"a" * 8192, 1, commit=True)
    first = stage_write(engine, 4000, b"b" * 300, 2)
    again = stage_write(engine, 4000, b"b" * 300, 2)
    assert (again.update_version, again.length, again.chunk_checksum) == (2, first.length, first.chunk_checksum)
    assert again.file_version != first.file_version, "copy-on-write never reuses the live file name"
    assert engine.read(KEY, 0, CHUNK, allow_pending=True)[0] == b"a" * 4000 + b"b" * 300 + b"a" * 3892


def test_full_replace_sets_versions_and_bytes(engine):
    stage_write(engine, 0, b"old" * 100, 1, commit=True)
    meta = engine.stage(KEY, UpdateKind.REPLACE, 9, 5, CHUNK, commit=True, data=b"new" * 7)
    assert (meta.commit_version, meta.update_version, meta.chain_version, meta.length) == (9, 9, 5, 21)
    assert engine.read(KEY, 0, CHUNK)[0] == b"new" * 7
    pending = engine.stage(KEY, UpdateKind.REPLACE, 10, 6, CHUNK, commit=False, data=b"z" * 5)
    assert (pending.commit_version, pending.update_version, pending.chain_version) == (9, 10, 5)
    assert len(os.listdir(engine.chunks_dir)) == 1, "the replaced file is gone"


def test_truncate_update_always_bumps_the_version(engine):
    """Successors must follow the head's versions even when the length does not change."""
    stage_write(engine, 0, b"q" * 100, 1, commit=True)
    meta = engine.stage(KEY, UpdateKind.TRUNCATE, 2, 3, CHUNK, commit=True, length=100)
    assert (meta.commit_version, meta.length) == (2, 100)
    meta = engine.stage(KEY, UpdateKind.TRUNCATE, 3, 3, CHUNK, commit=True, length=10)
    assert engine.read(KEY, 0, CHUNK)[0] == b"q" * 10
    meta = engine.stage(chunk_key(8, 1), UpdateKind.TRUNCATE, 1, 3, CHUNK, commit=True, length=0)
    assert meta.length == 0 and engine.get_meta(chunk_key(8, 1)) is not None


def test_stage_refuses_to_go_below_a_pending_update(engine):
    stage_write(engine, 0, b"a", 1, commit=True)
    stage_write(engine, 0, b"b", 3)
    with pytest.raises(Internal):
        stage_write(engine, 0, b"c", 2)
    with pytest.raises(Internal):
        engine.commit(KEY, 2, 1)
    with pytest.raises(InvalidArgument):
        engine.stage(KEY, "bogus", 4, 1, CHUNK, commit=True)
    assert engine.get_meta(KEY).update_version == 3
    # A full replace sets the versions it carries (the sender's chunk is the truth).
    meta = engine.stage(KEY, UpdateKind.REPLACE, 2, 9, CHUNK, commit=True, data=b"r")
    assert (meta.commit_version, meta.update_version, meta.chain_version) == (2, 2, 9)


def test_remove_one_chunk_and_page_metas(engine):
    keys = [chunk_key(inode, index) for inode in (1, 2) for index in range(3)]
    for key in keys:
        engine.stage(key, UpdateKind.WRITE, 1, 1, CHUNK, commit=True, data=b"d")
    assert engine.remove(keys[1]) is True
    assert engine.remove(keys[1]) is False
    remaining = [k for k in keys if k != keys[1]]
    page = engine.metas_after(None, 2)
    assert [k for k, _ in page] == remaining[:2]
    page = engine.metas_after(page[-1][0], 10)
    assert [k for k, _ in page] == remaining[2:]
    assert engine.metas_after(remaining[-1], 10) == []
    assert engine.space().chunk_count == len(remaining)
