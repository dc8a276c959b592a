"""Background garbage collector: removes unlinked files' chunks from storage.

Unlink, rmdir -r, rename-over and O_TRUNC only move an inode into the ``gc``
DB (in their own transaction); this thread later asks storage to remove the
chunks, then deletes the record, so the request path never waits on storage.
A record whose file still has write sessions is skipped until they close (as
3FS defers reclamation; a dead client's sessions end with its lease,
leases.py). A storage failure leaves the record for the next pass, with
backoff; chunk removal is idempotent, so a crash between removal and record
deletion only repeats work.

Passes resume where the last one stopped (a cursor over the queue's keys,
wrapping around) and do bounded work: at most GC_SCAN_RECORDS_MAX records
looked at and GC_BATCH_INODES_MAX removals tried. So records that cannot go
yet (open sessions, a dead chain in backoff, the delay) are stepped over, and
every record is visited within a bounded number of passes however many of
those there are.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from fireflyfs.common.periodic import Periodic
from fireflyfs.common.errors import FfsError
from fireflyfs.common.layout import Layout
from fireflyfs.proto import types_pb2

from .chunk_store import ChunkStore
from .idempotency import IdemTable
from .store import Store, Txn, u64_key
from .trash import empty_trash

log = logging.getLogger(__name__)

GC_BATCH_INODES_MAX = 256                          # removals tried per pass
GC_SCAN_RECORDS_MAX = 16 * GC_BATCH_INODES_MAX     # queue records looked at per pass
GC_RETRY_BACKOFF_MS_MAX = 30_000


class GarbageCollector:
    def __init__(self, store: Store, chunk_store: ChunkStore, interval_ms: int = 200, delay_ms: int = 0,
                 clock_ns: Callable[[], int] = time.time_ns, idem: IdemTable | None = None,
                 active: Callable[[], bool] = lambda: True) -> None:
        """delay_ms: how long an unlinked file waits (from its removal ctime) before GC.
        idem: the idempotency table whose expired records each pass prunes.
        active: whether this server collects now (with several meta servers, the mgmtd primary)."""
        self.store = store
        self.active = active
        self.idem = idem
        self.chunk_store = chunk_store
        self.interval_ms = interval_ms
        self.delay_ms = delay_ms
        self.clock_ns = clock_ns
        self._retry_at_ns: dict[int, tuple[int, int]] = {}  # inode -> (next try, backoff ms)
        self._cursor = b""   # key of the last record looked at; the next pass starts after it
        self._periodic = Periodic("meta-gc", lambda: self.interval_ms / 1000, self.run_once, log)

    def pending(self, now_ns: int) -> list[types_pb2.Inode]:
        """The next files to try: up to GC_BATCH_INODES_MAX due ones among at most
        GC_SCAN_RECORDS_MAX records from the cursor on; the cursor moves past each one looked at."""
        out: list[types_pb2.Inode] = []
        with self.store.read() as txn:
            for scanned, (key, value) in enumerate(self._records_from_cursor(txn), start=1):
                self._cursor = key
                inode = types_pb2.Inode()
                inode.ParseFromString(value)
                if self._due(inode, now_ns):
                    out.append(inode)
                if len(out) == GC_BATCH_INODES_MAX or scanned == GC_SCAN_RECORDS_MAX:
                    break
        return out

    def _records_from_cursor(self, txn) -> Iterator[tuple[bytes, bytes]]:
        """The queue once around: the records after the cursor, then from the first up to it."""
        cursor = self._cursor
        for key, value in txn.scan("gc", start=cursor):
            if key != cursor:
                yield key, value
        if cursor:
            for key, value in txn.scan("gc"):
                if key > cursor:
                    return
                yield key, value

    def _due(self, inode: types_pb2.Inode, now_ns: int) -> bool:
        if inode.open_write_sessions:
            return False   # deferred until its sessions close (or their lease expires)
        if now_ns - inode.ctime_ns < self.delay_ms * 1_000_000:
            return False
        return now_ns >= self._retry_at_ns.get(inode.id, (0, 0))[0]

    def run_once(self, now_ns: int | None = None) -> int:
        """One bounded pass from the cursor; returns how many files were reclaimed."""
        if not self.active():
            return 0
        now_ns = self.clock_ns() if now_ns is None else now_ns
        reclaimed = 0
        for inode in self.pending(now_ns):
            backoff_ms = self._retry_at_ns.get(inode.id, (0, 0))[1]
            try:
                removed = self.chunk_store.remove_file_chunks(inode.id, Layout.from_proto(inode.layout))
            except (FfsError, OSError) as exc:
                backoff_ms = min(max(2 * backoff_ms, self.interval_ms, 100), GC_RETRY_BACKOFF_MS_MAX)
                self._retry_at_ns[inode.id] = (now_ns + backoff_ms * 1_000_000, backoff_ms)
                log.warning("gc: removing chunks of inode %d failed, retry in %d ms: %s",
                            inode.id, backoff_ms, exc)
                continue
            self._retry_at_ns.pop(inode.id, None)
            if not self.store.transact(lambda txn, inode_id=inode.id: _drop_gc_record(txn, inode_id)):
                continue  # a session reopened meanwhile is impossible, but stay safe
            log.info("gc: reclaimed inode %d (%d chunks)", inode.id, removed)
            reclaimed += 1
        empty_trash(self.store, now_ns)
        if self.idem is not None:
            self.idem.prune_expired(self.store, now_ns)
        return reclaimed

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


def _drop_gc_record(txn: Txn, inode_id: int) -> bool:
    """Delete inode_id's gc record once its chunks are gone; False when it vanished or was reopened."""
    current = txn.get_gc(inode_id)
    if current is None or current.open_write_sessions:
        return False
    txn.delete("gc", u64_key(inode_id))
    return True
