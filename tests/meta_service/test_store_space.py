"""The metadata store's map grows on its own, a full one or a full disk is NoSpace, and fill is warned once.

Method: a real Store with a tiny first map (32 KiB) written past it through
the namespace and directly; a write that finds the map full is aborted and
answers Unavailable (clients retry), the retry fits. At the max: NoSpace naming
the store, and what was committed reads back. A DiskError as LMDB raises it on
ENOSPC is NoSpace. MetaSpaceCheck with a threshold the empty store already
passes logs one warning however often it checks.
"""

from __future__ import annotations

import errno
import logging
import random

import lmdb
import pytest

from fireflyfs.common.errors import NoSpace, Unavailable
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.space_check import MetaSpaceCheck
from fireflyfs.meta_service.store import Store

from .conftest import dump, install_chain_table
from .fakes import FakeChunkStore

MAP_BYTES = 32 * 1024


def retried(action, tries_max: int = 20):
    """What a client does with Unavailable: try again."""
    for _ in range(tries_max):
        try:
            return action()
        except Unavailable:
            continue
    raise AssertionError(f"still Unavailable after {tries_max} tries")


def put_inline(store: Store, inode_id: int, data: bytes) -> None:
    with store.write() as txn:
        txn.put_inline(inode_id, data)


def test_a_full_map_grows_and_the_retried_write_fits(tmp_path):
    store = Store(str(tmp_path / "meta.lmdb"), map_size_bytes=MAP_BYTES, map_size_bytes_max=8 << 20)
    grows_opening = store.env.grows           # creating the named DBs may already need a page more
    unavailable = 0
    for inode_id in range(1, 301):
        try:
            put_inline(store, inode_id, bytes([inode_id % 256]) * 1000)
        except Unavailable as exc:
            unavailable += 1
            assert "nothing was applied" in str(exc)
            put_inline(store, inode_id, bytes([inode_id % 256]) * 1000)
    assert unavailable == store.env.grows - grows_opening > 0
    assert store.env.map_bytes == MAP_BYTES << store.env.grows
    with store.read() as txn:
        for inode_id in range(1, 301):
            assert txn.get_inline(inode_id) == bytes([inode_id % 256]) * 1000


def test_the_map_grows_under_concurrent_group_commits(tmp_path):
    """Durable writes from 8 threads share group commits while the map doubles under them: a grow
    waits for the open batch's commit (its transaction holds the map gate), every write that was
    answered Unavailable is retried, and every write is there at the end, after a reopen too."""
    import threading

    path = str(tmp_path / "meta.lmdb")
    store = Store(path, map_size_bytes=MAP_BYTES, map_size_bytes_max=64 << 20)
    assert store.writer.durable
    failures = []

    def writer(first: int) -> None:
        try:
            for inode_id in range(first, first + 80):
                retried(lambda: put_inline(store, inode_id, bytes([inode_id % 256]) * 900))
        except Exception as exc:   # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(1 + 1000 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:3]
    assert store.env.grows >= 3, "the map had to grow several times"
    assert store.writer.counters.commits_durable < store.writer.counters.writes_durable, "commits were shared"
    store.close()
    store = Store(path, map_size_bytes=MAP_BYTES, map_size_bytes_max=64 << 20)
    try:
        with store.read() as txn:
            for n in range(8):
                for inode_id in range(1 + 1000 * n, 81 + 1000 * n):
                    assert txn.get_inline(inode_id) == bytes([inode_id % 256]) * 900
    finally:
        store.close()


def test_namespace_mutations_survive_growth(tmp_path):
    store = Store(str(tmp_path / "meta.lmdb"), map_size_bytes=MAP_BYTES, map_size_bytes_max=8 << 20)
    install_chain_table(store)
    namespace = Namespace(store, FakeChunkStore(), random.Random(1))
    for number in range(300):
        retried(lambda: namespace.mkdirs(f"/d{number:03d}", 1))
    assert store.env.grows > 0
    assert [entry.name for entry in namespace.list("/", limit=1000)[0]] == \
        [f"d{number:03d}" for number in range(300)]


def test_at_its_max_the_store_is_no_space_and_keeps_what_it_had(tmp_path):
    path = str(tmp_path / "meta.lmdb")
    store = Store(path, map_size_bytes=MAP_BYTES, map_size_bytes_max=2 * MAP_BYTES)
    committed = 0
    with pytest.raises(NoSpace) as raised:
        for inode_id in range(1, 1000):
            retried(lambda: put_inline(store, inode_id, bytes(1000)))
            committed = inode_id
    assert path in str(raised.value) and "map size max" in str(raised.value)
    before = dump(store)
    with pytest.raises(NoSpace):
        put_inline(store, 5000, bytes(4000))
    assert dump(store) == before
    with store.read() as txn:
        assert all(txn.get_inline(inode_id) == bytes(1000) for inode_id in range(1, committed + 1))


def test_a_full_disk_inside_lmdb_is_no_space_naming_the_store(tmp_path):
    path = str(tmp_path / "meta.lmdb")
    store = Store(path)
    put_inline(store, 1, b"kept")
    with pytest.raises(NoSpace) as raised:
        with store.write() as txn:
            txn.put_inline(2, b"lost")
            raise lmdb.DiskError("mdb_txn_commit", errno.ENOSPC)   # as LMDB reports ENOSPC
    assert path in str(raised.value) and raised.value.errno == errno.ENOSPC
    with store.read() as txn:
        assert (txn.get_inline(1), txn.get_inline(2)) == (b"kept", None)


def test_the_space_check_warns_once_past_its_threshold(tmp_path, caplog):
    store = Store(str(tmp_path / "meta.lmdb"), map_size_bytes=MAP_BYTES, map_size_bytes_max=4 * MAP_BYTES)
    usage = store.map_usage()
    fraction = usage.used_bytes / usage.map_bytes_max       # measured against the max, not the map now
    check = MetaSpaceCheck(store, warn_fraction=fraction / 2)
    with caplog.at_level(logging.INFO, logger="fireflyfs.meta_service.space_check"):
        for _ in range(3):
            warning = check.check_once()
    assert "LMDB map" in warning and f"{fraction:.0%} full" in warning
    assert len([r for r in caplog.records if "LMDB map" in r.getMessage()]) == 1
    assert check.warning() == warning


def test_meta_flags_set_the_map_sizes():
    from fireflyfs.meta_service.__main__ import parse_args

    config = parse_args(["--data-dir", "/tmp/unused", "--map-size", "64GiB", "--map-size-max", "2TiB",
                         "--space-warn-percent", "70"])
    assert (config.map_size_bytes, config.map_size_bytes_max, config.space_warn_fraction) == \
        (64 << 30, 2 << 40, 0.7)
    with pytest.raises(SystemExit):
        parse_args(["--data-dir", "/tmp/unused", "--map-size", "2GiB", "--map-size-max", "1GiB"])
