"""Metadata commit rate with and without fsync: the figures quoted in meta_service/store.py.

    python bench/meta_commit_rate.py [--commits 2000] [--json]

Each commit is one write transaction storing one inode, the smallest namespace
mutation, on a fresh LMDB store in a tmp dir; the two runs differ only in the
store's ``fsync`` option, so their ratio is the cost of power-loss durability
per commit on this disk.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from fireflyfs.meta_service.store import Store
from fireflyfs.proto import types_pb2


def commits_per_s(commits: int, fsync: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, fsync=fsync)
        try:
            began = time.perf_counter()
            for i in range(commits):
                with store.write() as txn:
                    txn.put_inode(types_pb2.Inode(id=i + 2, type=types_pb2.INODE_FILE))
            return commits / (time.perf_counter() - began)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rates = {f"fsync_{fsync}".lower(): round(commits_per_s(args.commits, fsync)) for fsync in (False, True)}
    if args.json:
        print(json.dumps({"commits": args.commits, "commits_per_s": rates}))
    else:
        for name, rate in rates.items():
            print(f"{name}: {rate:,} commits/s")


if __name__ == "__main__":
    main()
