"""Random operation sequences keep the namespace's invariants; failed ops change nothing.

Method: from one seeded ``random.Random`` draw a few hundred operations over a
small set of paths (so renames, links and removes collide often), run each on
a Namespace over real LMDB with the fake chunk store, and after every step
check the invariants below. An operation that raises an FfsError must leave
every DB byte-identical. Each run announces its seed and the command that
replays it alone (``FFS_SEED=<seed>``).
"""

from __future__ import annotations

import collections
import random

import pytest

from fireflyfs.common.errors import FfsError
from fireflyfs.meta_service.namespace import Namespace
from fireflyfs.meta_service.resolve import DIR, FILE, ROOT_ID
from fireflyfs.meta_service.store import Store
from fireflyfs.meta_service.trash import TRASH_ID, empty_trash
from fireflyfs.proto import meta_pb2, types_pb2
from tests.conftest import announce_seed, seeds_or

from .conftest import dump, install_chain_table
from .fakes import FakeChunkStore

STEPS = 500
NAMES = ["a", "b", "c"]


def check_invariants(store: Store, chunks: FakeChunkStore | None = None) -> None:
    with store.read() as txn:
        inodes = {}
        for _key, value in txn.scan("inodes"):
            inode = types_pb2.Inode()
            inode.ParseFromString(value)
            inodes[inode.id] = inode
        links = collections.Counter()
        dir_entries = collections.defaultdict(list)
        for key, value in txn.scan("dentries"):
            parent = int.from_bytes(key[:8], "big")
            entry = meta_pb2.DirEntry()
            entry.ParseFromString(value)
            assert parent in inodes and inodes[parent].type == DIR, "entry under a non-directory"
            child = inodes.get(entry.inode_id)
            assert child is not None, f"dangling entry {key[8:]!r}"
            assert child.type == entry.type
            links[entry.inode_id] += 1
            dir_entries[entry.inode_id].append(parent)
        for inode in inodes.values():
            if inode.id in (ROOT_ID, TRASH_ID):
                assert links[inode.id] == 0
            elif inode.type == DIR:
                assert dir_entries[inode.id] == [inode.parent], f"directory {inode.id} linked wrongly"
            else:
                assert inode.nlink == links[inode.id] >= 1, f"nlink of {inode.id} is off"
        sessions = collections.Counter(s.inode_id for _k, v in txn.scan("sessions")
                                       for s in [meta_pb2.FileSession.FromString(v)])
        for _key, value in txn.scan("gc"):
            queued = types_pb2.Inode.FromString(value)
            assert queued.type == FILE and queued.nlink == 0 and queued.id not in inodes
            assert queued.open_write_sessions == sessions[queued.id]
        for inode in inodes.values():
            assert inode.open_write_sessions == sessions[inode.id]
        # Inline records (inline.py): of linked files only, never empty, the file's length;
        # a PURE one's inode has no chunk.
        for key, value in txn.scan("inline"):
            inode = inodes.get(int.from_bytes(key, "big"))
            assert inode is not None and inode.type == FILE, "inline record of no linked file"
            assert value[:1] in (b"\0", b"\1") and len(value) > 1
            assert inode.length == len(value) - 1, f"inline length of {inode.id} is off"
            if chunks is not None and value[:1] == b"\0":
                assert not chunks.chunks.get(inode.id), f"PURE inline file {inode.id} has chunks"
        # No directory cycle: every directory reaches the root through `parent`.
        for inode in inodes.values():
            current, hops = inode, 0
            while inode.type == DIR and current.id not in (ROOT_ID, TRASH_ID):
                current, hops = inodes[current.parent], hops + 1
                assert hops < 64, "directory cycle"


def random_path(rng: random.Random, ns: Namespace) -> str:
    """Mostly an existing path (so operations succeed often), else a random one."""
    if rng.random() < 0.7:
        existing = [entry.path for entry in ns.find("/", withdirs=True)[0]]
        if existing:
            return rng.choice(existing)
    return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


@pytest.mark.parametrize("seed", seeds_or([1, 2, 3]))
def test_random_operations_keep_invariants(tmp_path, seed, request):
    announce_seed(request, seed)
    rng = random.Random(seed)
    store = Store(str(tmp_path / "m"))
    install_chain_table(store, 4)
    chunks = FakeChunkStore()
    ns = Namespace(store, chunks, rng=random.Random(seed))
    sessions: list[tuple[int, int]] = []
    now = 0
    for _step in range(STEPS):
        now += 1
        op = rng.choice(["mkdirs", "create", "rename", "remove", "rmtree", "hardlink", "symlink",
                         "open", "close", "truncate", "setattr", "inline", "read", "copy", "empty_trash"])
        before = dump(store)
        try:
            if op == "mkdirs":
                ns.mkdirs(random_path(rng, ns), now, parents=rng.random() < 0.5)
            elif op == "create":
                inode, sid, _ = ns.create(random_path(rng, ns), now, parents=True, open_for_write=rng.random() < 0.3,
                                          truncate=rng.random() < 0.3)
                if sid:
                    sessions.append((inode.id, sid))
            elif op == "rename":
                ns.rename(random_path(rng, ns), random_path(rng, ns), now, no_replace=rng.random() < 0.2)
            elif op == "remove":
                ns.remove(random_path(rng, ns), now)
            elif op == "rmtree":
                ns.remove(random_path(rng, ns), now, recursive=True)
            elif op == "empty_trash":    # the GC pass's bounded steps (trash.py), one at a time
                empty_trash(store, now, transactions_max=1)
            elif op == "hardlink":
                ns.hardlink(random_path(rng, ns), random_path(rng, ns), now)
            elif op == "symlink":
                ns.symlink(random_path(rng, ns), random_path(rng, ns), now)
            elif op == "open":
                inode, sid, _ = ns.open(random_path(rng, ns), now, write=True, truncate=rng.random() < 0.5)
                sessions.append((inode.id, sid))
            elif op == "close" and sessions:
                inode_id, sid = sessions.pop(rng.randrange(len(sessions)))
                ns.close(inode_id, sid, now, length_hint=rng.randrange(1 << 20))
            elif op == "truncate":
                ns.truncate(random_path(rng, ns), rng.choice([rng.randrange(1 << 23), rng.randrange(64)]), now)
            elif op == "inline":
                ns.create_inline(random_path(rng, ns), rng.randbytes(rng.randint(1, 40)), now, parents=True,
                                 exclusive=rng.random() < 0.2)
            elif op == "read":   # a chunk reader's open, or a BatchStat, moves inline bytes to chunks
                if rng.random() < 0.5:
                    ns.open(random_path(rng, ns), now)
                else:
                    ns.batch_stat([random_path(rng, ns)], inline_ok=rng.random() < 0.5)
            elif op == "copy":
                ns.copy_file(random_path(rng, ns), random_path(rng, ns), now)
            elif op == "setattr":
                ns.setattr(random_path(rng, ns), now, mode=rng.choice([0o644, 0o70000]))
        except FfsError:
            assert dump(store) == before, f"failed {op} changed the store (seed {seed})"
        check_invariants(store, chunks)
    store.close()


def test_concurrent_mutations_serialize(ns, store):
    """Threads creating and renaming in shared directories: no lost or duplicated entries."""
    import threading

    ns.mkdirs("/in", 1)
    ns.mkdirs("/out", 1)
    errors_seen: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for i in range(50):
                ns.create(f"/in/t{index}-{i}", 2, exclusive=True)
                if i % 2:
                    ns.rename(f"/in/t{index}-{i}", f"/out/t{index}-{i}", 3)
        except BaseException as exc:  # surfaced below
            errors_seen.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors_seen == []
    assert len(ns.list("/in")[0]) == len(ns.list("/out")[0]) == 100
    ids = [e.inode_id for d in ("/in", "/out") for e in ns.list(d)[0]]
    assert len(set(ids)) == 200
    check_invariants(store)
