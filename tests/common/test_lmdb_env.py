"""common.lmdb_env: maps double when full, never under a running transaction; full maps and disks are NoSpace.

Method: a real LMDB environment with a tiny first map (32 KiB) written past it;
a reader thread held inside a transaction to show a grow waits for it; errors
built as LMDB and the OS raise them, mapped by the one test no_space_error.
"""

from __future__ import annotations

import errno
import threading
import time

import lmdb
import pytest

from fireflyfs.common.errors import NoSpace, NotFound, Unavailable
from fireflyfs.common.lmdb_env import GrowingEnv, no_space_error

MAP_BYTES = 32 * 1024
VALUE = bytes(500)


def key(number: int) -> bytes:
    return number.to_bytes(8, "big")


def put(number: int):
    return lambda txn: txn.put(key(number), VALUE)


def test_a_full_map_doubles_and_the_write_goes_through(tmp_path):
    env = GrowingEnv(str(tmp_path / "env"), map_bytes=MAP_BYTES, map_bytes_max=1 << 20, what="test store", sync=False)
    for number in range(200):        # ~100 KiB of values: past the first map
        env.write(put(number))
    assert env.grows >= 2
    assert env.map_bytes == MAP_BYTES << env.grows
    assert env.usage().map_bytes == env.map_bytes
    with env.begin() as txn:
        assert all(txn.get(key(number)) == VALUE for number in range(200))


def test_at_its_max_the_map_is_no_space_and_what_was_stored_stays(tmp_path):
    path = str(tmp_path / "env")
    env = GrowingEnv(path, map_bytes=MAP_BYTES, map_bytes_max=4 * MAP_BYTES, what="test store", sync=False)
    stored = 0
    with pytest.raises(NoSpace) as raised:
        for number in range(10_000):
            env.write(put(number))
            stored += 1
    assert path in str(raised.value) and "map size max" in str(raised.value)
    assert env.map_bytes == 4 * MAP_BYTES
    assert stored > 0
    with env.begin() as txn:
        assert all(txn.get(key(number)) == VALUE for number in range(stored))
        assert txn.get(key(stored)) is None


def test_a_grow_waits_for_a_reader_of_another_thread(tmp_path):
    env = GrowingEnv(str(tmp_path / "env"), map_bytes=MAP_BYTES, map_bytes_max=1 << 20, what="test store", sync=False)
    inside, release = threading.Event(), threading.Event()

    def reader() -> None:
        with env.begin() as txn:
            txn.get(key(0))
            inside.set()
            release.wait(30)

    reading = threading.Thread(target=reader)
    reading.start()
    assert inside.wait(10)
    big = bytes(3 * MAP_BYTES)            # cannot fit without growing
    writing = threading.Thread(target=lambda: env.write(lambda txn: txn.put(b"big", big)))
    writing.start()
    deadline = time.monotonic() + 10
    while not env._gate._growing:         # the writer found the map full and waits for the reader
        assert time.monotonic() < deadline, "the writer never tried to grow"
        time.sleep(0.01)
    assert env.map_bytes == MAP_BYTES     # not remapped under the reader
    release.set()
    reading.join(10)
    writing.join(10)
    assert not writing.is_alive()
    assert env.map_bytes > MAP_BYTES
    with env.begin() as txn:
        assert txn.get(b"big") == big


def test_a_thread_inside_a_transaction_does_not_grow_under_itself(tmp_path):
    env = GrowingEnv(str(tmp_path / "env"), map_bytes=MAP_BYTES, map_bytes_max=1 << 20, what="test store", sync=False)
    env.write(put(1))
    with env.begin() as txn:
        with pytest.raises(Unavailable, match="retry"):
            env.write(lambda write_txn: write_txn.put(b"big", bytes(3 * MAP_BYTES)))
        assert txn.get(key(1)) == VALUE
    env.write(lambda write_txn: write_txn.put(b"big", bytes(3 * MAP_BYTES)))   # outside: it grows
    assert env.map_bytes > MAP_BYTES


def test_a_disk_error_inside_lmdb_is_no_space(tmp_path):
    env = GrowingEnv(str(tmp_path / "env"), map_bytes=MAP_BYTES, map_bytes_max=1 << 20, what="test store", sync=False)

    def failing(txn) -> None:
        txn.put(b"partial", b"x")
        raise lmdb.DiskError("mdb_txn_commit", errno.ENOSPC)

    with pytest.raises(NoSpace, match="no space left") as raised:
        env.write(failing, "chunk 1:0: test store")
    assert "chunk 1:0" in str(raised.value)
    with env.begin() as txn:
        assert txn.get(b"partial") is None        # the transaction was aborted whole


@pytest.mark.parametrize("exc", [
    lmdb.MapFullError("mdb_put", 0),
    lmdb.DiskError("mdb_txn_commit", errno.ENOSPC),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
])
def test_full_maps_and_disks_are_no_space(exc):
    error = no_space_error(exc, "target /data/t1")
    assert isinstance(error, NoSpace)
    assert error.errno == errno.ENOSPC
    assert "target /data/t1" in str(error)


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "I/O error"), FileNotFoundError(2, "gone"),
                                 NotFound("no such file"), lmdb.CorruptedError("mdb_get", 0)])
def test_other_errors_are_not_no_space(exc):
    assert no_space_error(exc, "somewhere") is None


def test_no_space_passes_through_unchanged():
    error = NoSpace("already clear")
    assert no_space_error(error, "elsewhere") is error
