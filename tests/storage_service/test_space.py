"""Storage space handling without processes: map growth, full disks as NoSpace, the reserve, warnings.

Method: a real ChunkEngine / Target under tmp_path. The chunk metadata map
starts at 32 KiB and must grow as chunks are written. ENOSPC is injected at
the lowest call (os.pwrite of chunk files); the write answers NoSpace naming
the target and the stored chunk is untouched. A Target with a configured
capacity of 1 MiB and a reserve of 256 KiB refuses new chunk bytes that would
eat into the reserve, still takes overwrites, truncates and removals, and takes
writes again once a removal freed space.
"""

from __future__ import annotations

import errno
import logging
import os

import crc32c
import pytest

from fireflyfs.common.errors import NoSpace
from fireflyfs.common.limits import GiB, KiB, MiB
from fireflyfs.storage_service import chunk_files
from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.space_guard import SpaceReserve
from fireflyfs.storage_service.target import Target

CHUNK = 64 * KiB
MAP_BYTES = 32 * KiB


def write(engine_or_target, key: bytes, offset: int, data: bytes):
    return engine_or_target.write(key, offset, data, CHUNK, 1, crc32c.crc32c(data))


def test_the_chunk_metadata_map_grows_as_chunks_arrive(tmp_path):
    with ChunkEngine(tmp_path / "t", block_size=4 * KiB, map_size_bytes=MAP_BYTES,
                     map_size_bytes_max=16 * MiB) as engine:
        for index in range(400):
            write(engine, chunk_key(7, index), 0, bytes([index % 256]) * 100)
        space = engine.space()
        assert space.map_bytes > MAP_BYTES and space.map_bytes_max == 16 * MiB
        assert space.map_used_bytes <= space.map_bytes
        assert engine.remove_range(7, 0, 200) == 200
        for index in range(200, 400):
            assert engine.read(chunk_key(7, index), 0, 100)[0] == bytes([index % 256]) * 100
    with ChunkEngine(tmp_path / "t", block_size=4 * KiB, map_size_bytes=MAP_BYTES) as reopened:
        assert reopened.space().chunk_count == 200


def test_enospc_writing_a_chunk_file_is_no_space_and_damages_nothing(tmp_path, monkeypatch):
    with ChunkEngine(tmp_path / "t", block_size=4 * KiB, pool_files_max=0) as engine:
        key = chunk_key(3, 0)
        write(engine, key, 0, b"a" * 10_000)
        files_before = sorted(os.listdir(engine.chunks_dir))

        def full_disk(fd, data, offset):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(chunk_files.os, "pwrite", full_disk)
        for offset, data in ((10_000, b"b" * 5000), (100, b"c" * 200)):   # an append, a copy-on-write
            with pytest.raises(NoSpace) as raised:
                write(engine, key, offset, data)
            assert str(engine.target_dir) in str(raised.value) and "chunk 3:0" in str(raised.value)
            assert raised.value.errno == errno.ENOSPC
        with pytest.raises(NoSpace):
            write(engine, chunk_key(3, 1), 0, b"new")           # a new chunk
        monkeypatch.undo()
        assert engine.read(key, 0, CHUNK)[0] == b"a" * 10_000
        assert engine.get_meta(chunk_key(3, 1)) is None
        assert sorted(os.listdir(engine.chunks_dir)) == files_before


def test_the_reserve_stops_new_chunk_bytes_and_lets_the_rest_through(tmp_path):
    target = Target(101, tmp_path / "t", block_size=4 * KiB, capacity_bytes=1 * MiB,
                    reserve=SpaceReserve(fraction=None, bytes=256 * KiB))
    try:
        stored = {}
        index = 0
        while True:                      # 48 KiB chunks until the next would eat into the reserve
            data = bytes([index + 1]) * (48 * KiB)
            try:
                write(target, chunk_key(1, index), 0, data)
            except NoSpace as exc:
                assert "reserve" in str(exc)
                break
            stored[index] = data
            index += 1
        space = target.space()
        assert space.free_bytes >= 256 * KiB > space.free_bytes - 48 * KiB
        assert len(stored) == (1 * MiB - 256 * KiB) // (48 * KiB)
        with pytest.raises(NoSpace):                             # growth past a chunk's length
            write(target, chunk_key(1, 0), 48 * KiB, b"x" * (16 * KiB))
        write(target, chunk_key(1, 0), 100, b"y" * 1000)         # an overwrite inside it
        stored[0] = stored[0][:100] + b"y" * 1000 + stored[0][1100:]
        target.engine.truncate(chunk_key(1, 1), 1000, CHUNK, 1)  # truncates
        stored[1] = stored[1][:1000]
        assert target.space_guard.refused_writes == 2
        for chunk_index, data in stored.items():
            assert target.engine.read(chunk_key(1, chunk_index), 0, CHUNK)[0] == data
        assert target.engine.remove(chunk_key(1, 2))            # removals; then writes resume
        del stored[2]
        write(target, chunk_key(1, index), 0, bytes([index + 1]) * (48 * KiB))
    finally:
        target.close()


def test_reserve_spec():
    default = SpaceReserve()
    assert default.bytes_for(100 * GiB) == 1 * GiB                  # 5% would be 5 GiB
    assert default.bytes_for(10 * GiB) == int(10 * GiB * 0.05)      # 1 GiB would be 10%
    assert SpaceReserve.parse("10%").bytes_for(1000) == 100
    assert SpaceReserve.parse("2GiB").bytes_for(100 * GiB) == 2 * GiB
    assert SpaceReserve.parse("2GiB").bytes_for(1 * GiB) == 1 * GiB   # never more than the capacity
    assert SpaceReserve.parse("0").bytes_for(1 * GiB) == 0
    assert SpaceReserve.parse("") == default


def test_target_space_warns_once_past_the_threshold(tmp_path, caplog):
    target = Target(102, tmp_path / "t", block_size=4 * KiB, capacity_bytes=256 * KiB,
                    reserve=SpaceReserve(fraction=None, bytes=0), space_warn_fraction=0.5)
    try:
        with caplog.at_level(logging.INFO, logger="fireflyfs.storage_service.space_guard"):
            write(target, chunk_key(1, 0), 0, b"z" * (60 * KiB))
            write(target, chunk_key(1, 1), 0, b"z" * (60 * KiB))
            target.space()
            assert target.space_warning() == ""
            write(target, chunk_key(1, 2), 0, b"z" * (60 * KiB))
            for _ in range(3):
                target.space()                                      # as heartbeats do
        assert "target 102: space 70% full" in target.space_warning()
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        target.close()


def test_storage_flags_and_their_environment_overrides(monkeypatch):
    from fireflyfs.storage_service.server import parse_args

    base = ["--node-id", "1", "--data-dir", "/tmp/unused", "--mgmtd", "127.0.0.1:1", "--node-key-file", "/tmp/unused.key",
            "--tls-cert", "c.pem", "--tls-key", "c.key", "--tls-ca", "ca.pem"]
    config = parse_args(base + ["--target-capacity", "64MiB", "--target-reserve", "10%",
                                "--target-map-size", "1MiB", "--target-map-size-max", "1GiB",
                                "--space-warn-percent", "90"])
    assert (config.target_capacity_bytes, config.target_reserve, config.target_map_size_bytes,
            config.target_map_size_bytes_max, config.space_warn_fraction) == \
        (64 * MiB, SpaceReserve(fraction=0.1, bytes=None), 1 * MiB, 1 * GiB, 0.9)
    monkeypatch.setenv("FFS_TARGET_CAPACITY", "8MiB")
    monkeypatch.setenv("FFS_TARGET_RESERVE", "1MiB")
    config = parse_args(base)
    assert (config.target_capacity_bytes, config.target_reserve) == (8 * MiB, SpaceReserve(None, 1 * MiB))
    with pytest.raises(SystemExit):
        parse_args(base + ["--target-map-size", "2GiB", "--target-map-size-max", "1GiB"])
