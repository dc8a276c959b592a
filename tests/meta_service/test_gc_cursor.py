"""GC never stalls behind records it cannot process yet.

Goal: however many queued files cannot go yet (their chain unreachable, their
write sessions open), reclaimable files queued after them are reclaimed within
a few passes, and every record is visited within a bounded number of passes.
Method: unlink files through a Namespace (real LMDB store), then drive
GarbageCollector.run_once directly against a fake chunk store that fails
removal for chosen inodes; the number of passes is the measure, not time.
"""

from __future__ import annotations

import pytest

from fireflyfs.common.errors import Unavailable
from fireflyfs.meta_service import gc as gc_module
from fireflyfs.meta_service.gc import GC_BATCH_INODES_MAX, GarbageCollector

NOW = 1_000
PASS_NS = 10**9


class DeadChains:
    """Wraps the fake chunk store: removing chunks of the listed inodes fails, as a dead chain would."""

    def __init__(self, chunks, dead: set[int]) -> None:
        self.chunks = chunks
        self.dead = dead
        self.tried: list[int] = []

    def remove_file_chunks(self, inode_id, layout):
        self.tried.append(inode_id)
        if inode_id in self.dead:
            raise Unavailable(f"chain of inode {inode_id} unreachable")
        return self.chunks.remove_file_chunks(inode_id, layout)


def unlinked_files(ns, prefix: str, count: int, open_write: bool = False) -> list[int]:
    ids = []
    for i in range(count):
        inode, _, _ = ns.create(f"/{prefix}{i:04d}", NOW, open_for_write=open_write, client_id="w")
        ns.remove(f"/{prefix}{i:04d}", NOW)
        ids.append(inode.id)
    return ids


def queued(store) -> int:
    with store.read() as txn:
        return txn.entries("gc")


def test_300_files_on_a_dead_chain_do_not_stop_reclamation(ns, store, chunks):
    stuck = unlinked_files(ns, "dead", 300)
    good = unlinked_files(ns, "good", 40)
    storage = DeadChains(chunks, set(stuck))
    gc = GarbageCollector(store, storage, interval_ms=200)
    reclaimed = [gc.run_once(NOW) for _ in range(3)]   # all within the stuck files' backoff
    assert reclaimed[:2] == [0, len(good)], "one batch of stuck files, then the good ones"
    assert queued(store) == len(stuck)
    assert sorted(storage.tried) == sorted(stuck + good), "each file tried once: backoff holds the stuck"
    storage.dead.clear()   # the chain comes back
    for n in range(10):
        gc.run_once(NOW + (40 + n) * PASS_NS)
        if queued(store) == 0:
            break
    assert queued(store) == 0


def test_300_files_with_open_sessions_do_not_stop_reclamation(ns, store, chunks):
    unlinked_files(ns, "open", 300, open_write=True)
    good = unlinked_files(ns, "good", 20)
    gc = GarbageCollector(store, chunks)
    assert gc.run_once(NOW) == len(good)
    assert queued(store) == 300


def test_every_record_is_visited_when_the_queue_outgrows_a_pass(ns, store, chunks, monkeypatch):
    """With scans of 8 records and batches of 4, blocked records never hide the later ones, and the
    cursor wraps around to records queued before it."""
    monkeypatch.setattr(gc_module, "GC_SCAN_RECORDS_MAX", 8)
    monkeypatch.setattr(gc_module, "GC_BATCH_INODES_MAX", 4)
    unlinked_files(ns, "open", 30, open_write=True)
    tail = unlinked_files(ns, "tail", 3)
    gc = GarbageCollector(store, chunks)
    passes = 0
    while queued(store) > 30:
        assert passes < 30 // 8 + 2, "records after the blocked ones must be reached"
        gc.run_once(NOW)
        passes += 1
    assert all(inode not in chunks.chunks for inode in tail)
    early = unlinked_files(ns, "late", 2)    # new ids, but the cursor must wrap to reach them wherever
    for _ in range(32 // 8 + 2):
        gc.run_once(NOW)
    assert queued(store) == 30, f"{early} reclaimed after wrapping around"


@pytest.mark.parametrize("blocked", [0, GC_BATCH_INODES_MAX + 1])
def test_a_pass_tries_at_most_one_batch(ns, store, chunks, blocked):
    unlinked_files(ns, "open", blocked, open_write=True)
    unlinked_files(ns, "f", GC_BATCH_INODES_MAX + 10)
    storage = DeadChains(chunks, set())
    gc = GarbageCollector(store, storage)
    assert gc.run_once(NOW) == GC_BATCH_INODES_MAX and len(storage.tried) == GC_BATCH_INODES_MAX
    assert gc.run_once(NOW) == 10
