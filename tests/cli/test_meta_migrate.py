"""Moving up from one box: ``ffs admin meta export`` from LMDB, ``import`` into etcd (meta_service/migrate.py).

The tree (directories, files with chunk layouts, inline files, symlinks, hard
links, open sessions, the GC queue and cluster state) is built through the
namespace on a real LMDB store; after the round trip a namespace on the etcd
store serves the same answers, and every record, counter included, is equal.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid

import pytest
from click.testing import CliRunner

from fireflyfs.cli.main import cli
from fireflyfs.meta_service import migrate
from fireflyfs.meta_service.etcd_store import EtcdStore
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.store import Store, u64_key
from fireflyfs.proto import types_pb2
from tests.meta_service.conftest import dump, install_chain_table
from tests.meta_service.fakes import FakeChunkStore

NOW = 1_000_000_000


def build_namespace(data_dir: str) -> dict:
    store = Store(os.path.join(data_dir, "meta.lmdb"))
    try:
        install_chain_table(store)
        store.transact(lambda txn: txn.put_msg("nodes", b"\0\0\0\1", types_pb2.NodeInfo(
            id=1, type=types_pb2.NODE_STORAGE, address="10.0.0.1:8000")))
        ns = Namespace(store, FakeChunkStore(), rng=random.Random(5), now_ns=NOW)
        ns.mkdirs("/data/train", NOW, parents=True)
        big, _, _ = ns.create("/data/train/shard-0", NOW, open_for_write=True, client_id="c1")
        ns.create_inline("/data/small.json", b'{"ok": true}', NOW)
        ns.symlink("/latest", "/data/train/shard-0", NOW)
        ns.hardlink("/data/small.json", "/data/small-link.json", NOW)
        ns.create("/gone", NOW)
        ns.remove("/gone", NOW)
        return {"records": dump(store), "big": big.id}
    finally:
        store.close()


def ffs(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def prefix() -> str:
    return f"/m-{uuid.uuid4().hex[:10]}/"


def test_lmdb_to_etcd_round_trip_serves_the_same_tree(tmp_path, etcd_endpoints, prefix):
    built = build_namespace(str(tmp_path / "meta"))
    exported = ffs("admin", "meta", "export", str(tmp_path / "meta.ffsmeta"), "--data-dir",
                   str(tmp_path / "meta"), "--json")
    assert exported.exit_code == 0, exported.output
    out = json.loads(exported.stdout)
    imported = ffs("admin", "meta", "import", str(tmp_path / "meta.ffsmeta"), "--engine", "etcd",
                   "--etcd-endpoints", ",".join(etcd_endpoints), "--etcd-prefix", prefix, "--json")
    assert imported.exit_code == 0, imported.output
    back = json.loads(imported.stdout)
    assert (back["records"], back["crc32c"], back["counts"]) == (out["records"], out["crc32c"], out["counts"])
    assert out["counts"]["inodes"] >= 6 and out["counts"]["gc"] == 1 and out["counts"]["sessions"] == 1

    store = EtcdStore(etcd_endpoints, prefix)
    try:
        copied = {table: rows for table, rows in built["records"].items() if table in migrate.copied_tables()}
        assert dump(store) == {**copied, "meta_servers": []}, "every record, counters included"
        ns = Namespace(store, FakeChunkStore(), rng=random.Random(6), now_ns=NOW)
        assert ns.stat("/latest")[0].id == built["big"]
        assert ns.readlink("/latest") == "/data/train/shard-0"
        assert ns.open_inline("/data/small-link.json")[2] == b'{"ok": true}'
        assert [e.name for e in ns.list("/data")[0]] == ["small-link.json", "small.json", "train"]
        new, _, _ = ns.create("/data/new", NOW)
        assert new.id > built["big"], "new ids continue after the imported ones"
        with store.read() as txn:
            assert [key[:8] for key, _ in txn.scan("sessions")] == [u64_key(built["big"])], \
                "the open write session came along"
    finally:
        store.close()


def test_a_corrupt_file_is_refused_and_nothing_is_written(tmp_path, etcd_endpoints, prefix):
    build_namespace(str(tmp_path / "meta"))
    path = tmp_path / "meta.ffsmeta"
    assert ffs("admin", "meta", "export", str(path), "--data-dir", str(tmp_path / "meta")).exit_code == 0
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    result = ffs("admin", "meta", "import", str(path), "--engine", "etcd", "--etcd-endpoints",
                 ",".join(etcd_endpoints), "--etcd-prefix", prefix)
    assert result.exit_code != 0 and ("corrupt" in result.output or "truncated" in result.output)
    store = EtcdStore(etcd_endpoints, prefix)
    try:
        assert all(rows == [] for rows in dump(store).values()), "nothing was written"
    finally:
        store.close()


def test_a_store_with_records_is_refused(tmp_path):
    build_namespace(str(tmp_path / "meta"))
    build_namespace(str(tmp_path / "other"))
    path = tmp_path / "meta.ffsmeta"
    assert ffs("admin", "meta", "export", str(path), "--data-dir", str(tmp_path / "meta")).exit_code == 0
    result = ffs("admin", "meta", "import", str(path), "--data-dir", str(tmp_path / "other"))
    assert result.exit_code != 0 and "already holds records" in result.output
    missing = ffs("admin", "meta", "export", str(path), "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code != 0 and "no metadata store" in missing.output


def round_trip_many(tmp_path, etcd_endpoints, prefix, files: int) -> None:
    store = Store(str(tmp_path / "meta" / "meta.lmdb"))
    install_chain_table(store)
    ns = Namespace(store, FakeChunkStore(), rng=random.Random(7), now_ns=NOW)
    ns.mkdirs("/many", NOW)
    many_id = ns.stat("/many")[0].id

    def batch(start: int):
        def fill(txn):                    # records written directly: building by RPC would take minutes
            for i in range(start, min(files, start + 1000)):
                inode = types_pb2.Inode(id=txn.next_id("next_inode", 2), type=types_pb2.INODE_FILE, mode=0o644,
                                        nlink=1, mtime_ns=NOW)
                txn.put_inode(inode)
                txn.put_dentry(many_id, f"f{i:06d}", inode.id, types_pb2.INODE_FILE)
        store.transact(fill)
    for start in range(0, files, 1000):
        batch(start)
    store.close()
    path = tmp_path / "many.ffsmeta"
    started = time.monotonic()
    exported = json.loads(ffs("admin", "meta", "export", str(path), "--data-dir", str(tmp_path / "meta"),
                              "--json").stdout)
    exported_s = time.monotonic() - started
    started = time.monotonic()
    imported = ffs("admin", "meta", "import", str(path), "--engine", "etcd", "--etcd-endpoints",
                   ",".join(etcd_endpoints), "--etcd-prefix", prefix, "--json")
    assert imported.exit_code == 0, imported.output
    back = json.loads(imported.stdout)
    print(f"{files} files: {exported['records']} records exported in {exported_s:.1f} s, imported in "
          f"{time.monotonic() - started:.1f} s ({back['records_per_s']} records/s)")
    assert back["crc32c"] == exported["crc32c"] and back["counts"]["dentries"] == files + 1


def test_a_tree_of_5k_files_round_trips(tmp_path, etcd_endpoints, prefix):
    round_trip_many(tmp_path, etcd_endpoints, prefix, 5_000)


@pytest.mark.slow
def test_a_tree_of_100k_files_round_trips(tmp_path, etcd_endpoints, prefix):
    round_trip_many(tmp_path, etcd_endpoints, prefix, 100_000)
