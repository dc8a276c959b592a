"""Metadata commit rate of each durability mode, one writer and many: the figures in docs/durability.md.

    python bench/meta_commit_rate.py [--commits 3000] [--writers 1,16] [--rounds 1] [--json]

Each commit is one ``Store.write()`` storing one inode, the smallest namespace
mutation, on a fresh store in a tmp dir, from 1 writer thread and from 16
(the meta service's RPC worker count). Modes, all in the same run:

    group      the default: fdatasync before each write returns, writes
               that overlap share one commit (common/lmdb_commit.py)
    per_commit the old ``--fsync``: LMDB sync=True, one top-level commit (and
               its fdatasyncs) per write, writers serialized by a lock
    unsynced   ``--no-fsync`` (the old default): no fdatasync at all; a
               power loss may lose or corrupt the store

``per_commit`` drives the same LMDB env settings through a plain lock, as
Store did before group commit, so the ratio group/per_commit is what group
commit buys and unsynced/group what durability costs. Figures depend on the
disk's flush latency and on the load of the machine; rounds > 1 alternates
the modes and reports the median of each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
from typing import Iterator

from fireflyfs.bench.durable_write_throughput import run_threads
from fireflyfs.meta_service.lmdb_kv import LmdbTxn
from fireflyfs.meta_service.store import Store, Txn
from fireflyfs.proto import types_pb2

MODES = ("group", "per_commit", "unsynced")


class _PerCommitStore:
    """A Store whose writes commit one by one with sync (how Store(fsync=True) worked before)."""

    def __init__(self, path: str) -> None:
        self.store = Store(path, fsync=True)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def write(self) -> Iterator[Txn]:
        with self._lock, self.store.env.begin(write=True) as txn:
            yield Txn(LmdbTxn(txn, self.store.dbs))

    def close(self) -> None:
        self.store.close()


def open_store(mode: str, path: str):
    if mode == "per_commit":
        return _PerCommitStore(path)
    return Store(path, fsync=(mode == "group"))


def commits_per_s(mode: str, commits: int, writers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(mode, tmp)
        each = commits // writers

        def writer(n: int) -> None:
            first_id = 2 + n * each
            for inode_id in range(first_id, first_id + each):
                with store.write() as txn:
                    txn.put_inode(types_pb2.Inode(id=inode_id, type=types_pb2.INODE_FILE))

        try:
            return each * writers / run_threads(writers, writer)
        finally:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--writers", default="1,16", help="comma-separated writer thread counts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    writer_counts = [int(n) for n in args.writers.split(",")]
    samples: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for writers in writer_counts:
            for mode in MODES:
                samples.setdefault(f"{mode}_{writers}w", []).append(
                    commits_per_s(mode, args.commits, writers))
    rates = {name: round(statistics.median(values)) for name, values in samples.items()}
    if args.json:
        print(json.dumps({"commits": args.commits, "rounds": args.rounds, "commits_per_s": rates}))
    else:
        for name, rate in rates.items():
            print(f"{name}: {rate:,} commits/s")


if __name__ == "__main__":
    main()
