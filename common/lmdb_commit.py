"""Group commit for LMDB: each write is durable before it returns, many writes share one fdatasync.

Why: LMDB opened with ``sync=False`` can corrupt the database on a power loss
(not only lose the last commits), and with ``sync=True`` every commit pays an
fdatasync of the data pages and another of the meta page: ~2.6k commits/s on
the development VM against ~120k/s unsynced. Group commit keeps the durable
mode's promise at a fraction of its cost.

How (``GroupCommitEnv.write``, durable mode; leader and followers, as
databases group their log writes): a writer that finds nobody leading becomes
the leader. It begins a top-level write transaction on its own thread (LMDB
wants a top-level write txn to begin and commit on one thread: the writer
mutex) and runs its body in it; then followers may join. Each follower, one
at a time, runs its body in a CHILD transaction of the leader's
(``env.begin(write=True, parent=outer)``), commits the child (or aborts it when
the body raises: then it changed nothing) and waits. The leader commits the
outer transaction with ``sync=True, metasync=True`` once every follower that
joined has finished and nobody waits to join (or the batch holds
``group_commit_writes_max``); only then does any ``write()`` of the batch
return, so no reply precedes durability. Everyone who arrived while the
previous fdatasync ran shares the next one: one of them leads, the rest join.
A failed outer commit (LMDB has rolled back every child in it) fails every
writer of that batch with a copy of the error: none is acknowledged.

Why not a committer thread: a lone writer would pay two thread hand-offs
and a child transaction per commit; as leader it pays what a plain synced
commit costs (bench/meta_commit_rate.py measures both).

Without ``durable`` (the ``--no-fsync`` opt-out) a write is one top-level
transaction on the caller's thread, committed without sync: it survives a
process kill (the page cache keeps it), not a host power loss.

A ``write()`` inside a write body on the same thread joins the enclosing
write as a child of its transaction (no deadlock; it is durable when the
enclosing write returns). Reads (``env.begin()``) see only what outer
commits made durable, so a read after ``write()`` returned sees the write.
docs/durability.md says what each mode survives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import Callable, ContextManager, Iterator

import lmdb

from fireflyfs.common import limits
from fireflyfs.common.errors import Internal

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class CommitCounters:
    """Plain counters for tests and benchmarks (read without the lock: approximate while writes run)."""

    writes_durable: int = 0      # writes acknowledged after a synced outer commit
    commits_durable: int = 0     # synced outer commits (each one fdatasync pair)
    commits_failed: int = 0      # outer commits that failed: their writers were not acknowledged
    writes_unsynced: int = 0     # writes committed without sync (durable=False)


class _Batch:
    """The writes that share one outer transaction and the outcome of its commit."""

    __slots__ = ("outer", "joined", "finished", "writes", "done", "error")

    def __init__(self, outer) -> None:
        self.outer = outer
        self.joined = 1          # writers whose body runs in outer (the leader's already ran)
        self.finished = 1        # of them, whose body ended (committed into outer or aborted)
        self.writes = 1          # of them, whose changes are in outer: the ones acknowledged
        self.done = threading.Event()
        self.error: BaseException | None = None


def _copy_error(error: BaseException) -> BaseException:
    """A fresh exception like error, so each waiter raises its own (one object raised in many
    threads at once would share and grow one traceback)."""
    try:
        return type(error)(*error.args)
    except Exception:  # noqa: BLE001 - an exception class we cannot rebuild
        return Internal(f"commit failed: {error!r}")


class GroupCommitEnv:
    """Write transactions of one LMDB environment: durable and batched, or unsynced (see module doc).

    env: an open ``lmdb.Environment``; when durable it must have been opened with
    ``sync=True, metasync=True`` (checked), so a commit returns after fdatasync.
    Only ``env.begin`` and ``env.flags`` are used, so a test may wrap the env.
    """

    def __init__(self, env, *, durable: bool, name: str,
                 batch_writes_max: int = limits.group_commit_writes_max,
                 hold: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> None:
        if batch_writes_max < 1:
            raise ValueError(f"batch_writes_max {batch_writes_max} < 1")
        flags = env.flags()
        if durable and not (flags["sync"] and flags["metasync"]):
            raise ValueError(f"{name}: a durable GroupCommitEnv needs the env opened with "
                             "sync=True, metasync=True")
        self.env = env
        self.durable = durable
        self.name = name
        self.batch_writes_max = batch_writes_max
        self._hold = hold     # held from a top-level txn's begin to its end (GrowingEnv's map gate)
        self.counters = CommitCounters()
        self._local = threading.local()       # .txn: the write txn this thread's body runs in
        self._body_lock = threading.Lock()    # one follower body at a time: LMDB allows one active child
        self._lock = threading.Lock()         # guards the fields below
        self._turn_changed = threading.Condition(self._lock)   # a batch opened, or the leader left
        self._bodies_changed = threading.Condition(self._lock)  # the leader waits here to seal
        self._leading = False                 # a leader holds an outer txn (from begin to commit)
        self._batch: _Batch | None = None     # the leader's batch while followers may join it
        self._waiting = 0                     # writers waiting for a batch or for the lead
        self._closed = False

    # ------------------------------------------------------------------ writers

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """One write transaction: durable (when durable) once the block ends, aborted on any exception."""
        enclosing = getattr(self._local, "txn", None)
        if enclosing is not None:
            with self._run_body(self.env.begin(write=True, parent=enclosing)) as txn:
                yield txn
            return
        if self._closed:
            raise Internal(f"{self.name}: write after close")
        if not self.durable:
            with self._hold(), self._body_lock:
                with self._run_body(self.env.begin(write=True)) as txn:
                    yield txn
            self.counters.writes_unsynced += 1
            return
        batch = self._join_or_lead()
        if batch is None:
            with self._lead() as txn:
                yield txn
            return
        committed = False
        try:
            with self._body_lock:
                with self._run_body(self.env.begin(write=True, parent=batch.outer)) as txn:
                    yield txn
            committed = True
        finally:
            with self._lock:
                batch.finished += 1
                if committed:
                    batch.writes += 1
                if batch.finished == batch.joined:
                    self._bodies_changed.notify()
        batch.done.wait()
        if batch.error is not None:
            raise _copy_error(batch.error) from batch.error

    def _join_or_lead(self) -> _Batch | None:
        """Join the open batch (returned), or become the leader (None) when nobody leads."""
        with self._lock:
            counted = False
            try:
                while True:
                    if self._closed:
                        raise Internal(f"{self.name}: closed while a write waited")
                    batch = self._batch
                    if batch is not None and batch.joined < self.batch_writes_max:
                        batch.joined += 1
                        return batch
                    if not self._leading:
                        self._leading = True
                        return None
                    if not counted:
                        self._waiting += 1
                        counted = True
                    self._turn_changed.wait()
            finally:
                if counted:
                    self._waiting -= 1
                    self._bodies_changed.notify()

    @contextlib.contextmanager
    def _lead(self) -> Iterator[lmdb.Transaction]:
        """Begin the outer txn on this thread, run this body in it, open it to followers, commit.

        The leader's body runs in the outer txn itself (no child: a lone writer
        costs what a plain synced commit costs); followers can join only after
        it succeeded, so a raising body aborts an outer txn nobody else is in.
        """
        batch = None
        try:
            held = contextlib.ExitStack()
            held.enter_context(self._hold())     # released once outer has ended (finally below)
            outer = self.env.begin(write=True)   # LMDB's writer mutex: held by this thread until commit
            with self._run_body(outer, commit=False) as txn:   # a raising body aborts outer
                yield txn
            batch = _Batch(outer)
            with self._lock:
                self._batch = batch
                self._turn_changed.notify_all()
                # Seal when every body that joined has ended and nobody waits to join (or it is full).
                while batch.finished < batch.joined or (
                        self._waiting and batch.joined < self.batch_writes_max and not self._closed):
                    self._bodies_changed.wait()
                self._batch = None   # later writers wait for the next leader
            self._commit(batch)
        finally:
            held.close()
            with self._lock:
                self._leading = False
                self._turn_changed.notify_all()   # a waiting writer leads the next batch
        if batch.error is not None:
            raise _copy_error(batch.error) from batch.error

    @contextlib.contextmanager
    def _run_body(self, txn, commit: bool = True) -> Iterator[lmdb.Transaction]:
        """Run one body in txn on this thread: commit it when the body returns (unless not commit),
        abort it when the body raises."""
        enclosing = getattr(self._local, "txn", None)
        self._local.txn = txn
        try:
            try:
                yield txn
            finally:
                self._local.txn = enclosing
        except BaseException:
            txn.abort()
            raise
        if commit:
            txn.commit()   # a child's commit only merges into its parent; a top-level one writes

    def _commit(self, batch: _Batch) -> None:
        """Commit the outer txn (on the thread that began it); tell the batch how it went."""
        try:
            batch.outer.commit()     # sync=True, metasync=True: returns after fdatasync
            self.counters.commits_durable += 1
            self.counters.writes_durable += batch.writes
        except BaseException as exc:  # noqa: BLE001 - every writer of the batch gets it
            batch.error = exc
            self.counters.commits_failed += 1
            log.error("%s: group commit of %d writes failed, none acknowledged: %r",
                      self.name, batch.writes, exc)
            with contextlib.suppress(Exception):
                batch.outer.abort()
        finally:
            batch.outer = None
            batch.done.set()

    def close(self) -> None:
        """Refuse new writes (call before env.close()); writers still waiting raise Internal."""
        with self._lock:
            self._closed = True
            self._turn_changed.notify_all()
            self._bodies_changed.notify()
