"""The etcd engine: every metadata record in an etcd cluster, serializable optimistic transactions.

Several meta servers share one namespace through it, and the loss of a meta
host loses nothing (issue 11; 3FS does the same on FoundationDB). Keys are
``prefix + table + "/" + key`` (tables: store.DB_NAMES), so a table, or a
directory's entries inside it, is one etcd key range.

A transaction (``transact(mutate)``) reads at one snapshot revision (fixed by
its first read) and buffers its writes (its own later reads and scans see
them). It commits with ONE etcd Txn that applies every write only if nothing
it read has changed since the snapshot:

- every key read (or passed by a scan) still has the mod_revision seen
  (0 for a key that was absent: etcd compares a missing key as all zeros);
- every scanned range, from its start to the last key the caller consumed
  (to the range's end when the scan ran out), holds no key modified after
  the snapshot: this catches inserts (phantoms) the per-key compares cannot.

A failed compare reruns mutate from scratch after a jittered, bounded
backoff. Reruns of this store's lost transactions go one at a time (a
store-wide lock, taken after the first loss): threads of one meta server
that fight over a hot key (a directory every create touches, a counter)
then queue instead of starving each other. A transaction gives up with
``Conflict`` (retryable; nothing was applied) only when it has lost for
``conflict_budget_s`` and at least ``conflict_tries_min`` times: a count
alone starved threads on a slow, loaded machine. ``guard`` (the mgmtd primary's election
key) is compared too, and when THAT compare fails the commit raises
``NotPrimary`` at once.

Outcome unknown: when etcd does not answer a commit (``Unavailable``), the
writes may or may not be applied, and this engine does not guess: it raises
``Unavailable``. Every mutating Meta RPC carries a request id whose
idempotency record is written in the same transaction (idempotency.py), so
the client's retry (on any meta server) either finds the record and returns
the original result, or runs the mutation again on the fresh state.

Fewer round trips (each etcd call costs both processes CPU): a mutation
takes the records of ``cached_tables`` (inodes, dentries, chain tables) from
a cache of what this store last read or wrote, with their mod_revision, and
assumes an ``idem`` record absent without asking. Both are only guesses that
the commit's compares check: a stale guess fails the commit, the guessed keys
are forgotten, and the mutation reruns on fresh reads. A mutation that raises
an error after using a guess, or that writes nothing, has its guesses
validated (or reruns) before its answer counts. ``read()`` uses the cache too
and validates the keys it took from it in one compare-only Txn at the end
(concurrent checks share one, through the group commit); if they moved, it
raises ``Unavailable`` (the client retries, on fresh reads). What it misses
it reads linearizably at one revision.

Hot counters (``next_inode``, the chain allocation sequence) would make every
create conflict with every other. ``Txn.next_id`` asks the engine instead,
which hands out ids from a range of ``id_range_size`` reserved per store in a
small transaction of its own: ids burned by a rerun or a restart are gaps,
never duplicates, and the stored counter stays an upper bound of every id
handed out (StatFs.next_inode_id).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import struct
import threading
import time
from typing import Callable, Iterator, TypeVar

from fireflyfs.common import limits
from fireflyfs.common.errors import Conflict, FfsError, Internal, NotPrimary, TooLarge, Unavailable
from fireflyfs.proto.etcd.client import (Compare, EtcdClient, compare_create_revision, compare_mod_revision,
                                         op_delete, op_put, prefix_end)

from .etcd_commit import GroupCommit, Pending
from .store import Txn

T = TypeVar("T")
_U64 = struct.Struct(">Q")

conflict_tries_min = 12
conflict_budget_s = 10.0
backoff_first_s = 0.002
backoff_max_s = 0.2
scan_first_page_keys = 16          # most scans inside mutations stop at once
scan_page_keys = 256
id_range_size = 1024
cached_tables = ("inodes", "dentries", "chain_tables")
assumed_absent_tables = ("idem",)       # request ids are new but for retries
cache_entries_max = 200_000


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """A key the caller holds (the mgmtd election key) and its create_revision when it was won.

    A commit with a guard applies only while that key still exists with that
    create_revision: a primary that lost its lease can no longer write.
    """
    key: bytes
    create_revision: int


class EtcdStore:
    """kv.MetaStore on an etcd cluster (``endpoints``), every key under ``prefix``."""

    engine = "etcd"

    def __init__(self, endpoints: list[str], prefix: str = "/fireflyfs/",
                 client: EtcdClient | None = None) -> None:
        if not endpoints and client is None:
            raise ValueError("the etcd engine needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.prefix = prefix.encode()
        self.client = client or EtcdClient(endpoints)
        self._ids = _IdRanges(self)
        self._rng = random.Random()
        self._rerun_lock = threading.RLock()    # reentrant: a mutation may run next_id's own transaction
        self.conflicts = 0            # commits that lost to another writer (tests, benchmarks)
        self.cache: dict[bytes, tuple[int, bytes | None]] = {}    # key -> (mod_revision, value)
        self.group = GroupCommit(self.client)
        self._cached_prefixes = tuple(self.key(table, b"") for table in cached_tables)
        self._absent_prefixes = tuple(self.key(table, b"") for table in assumed_absent_tables)

    def key(self, table: str, key: bytes) -> bytes:
        return self.prefix + table.encode() + b"/" + key

    def describe(self) -> str:
        return f"etcd {','.join(self.endpoints)} prefix {self.prefix.decode()}"

    @contextlib.contextmanager
    def read(self) -> Iterator[Txn]:
        kv = EtcdTxn(self, writable=False)
        try:
            yield Txn(kv)
        except FfsError as exc:
            if kv.guessed and not kv.guesses_hold():
                raise Unavailable(f"metadata changed during the read ({exc}); retry") from exc
            raise
        if kv.guessed and not kv.guesses_hold():
            raise Unavailable("metadata changed during the read; retry")

    def transact(self, mutate: Callable[[Txn], T], guard: Guard | None = None) -> T:
        guessing = True
        losses, deadline = 0, 0.0
        with contextlib.ExitStack() as rerunning:
            while True:
                kv = EtcdTxn(self, guessing=guessing)
                try:
                    result = mutate(Txn(kv))
                except FfsError:
                    if kv.guessed and not kv.guesses_hold():
                        guessing = False        # the error may come from a stale guess: decide on fresh reads
                        continue
                    raise
                if kv.commit(guard):
                    return result
                if kv.guessed:
                    guessing = False            # a stale guess, or a conflict: the rerun reads everything
                    continue
                self.conflicts += 1
                losses += 1
                if losses == 1:
                    deadline = time.monotonic() + conflict_budget_s
                    rerunning.enter_context(self._rerun_lock)
                elif losses >= conflict_tries_min and time.monotonic() >= deadline:
                    raise Conflict(f"metadata transaction lost to concurrent writers {losses} times in "
                                   f"{conflict_budget_s:g} s ({self.describe()}); nothing was applied, retry")
                delay = min(backoff_max_s, backoff_first_s * (2 ** (losses - 1)))
                time.sleep(delay * (0.5 + self._rng.random()))

    def remember(self, key: bytes, mod_revision: int, value: bytes | None) -> None:
        if key.startswith(self._cached_prefixes):
            if len(self.cache) >= cache_entries_max:
                self.cache.clear()
            self.cache[key] = (mod_revision, value)

    def forget(self, keys) -> None:
        for key in keys:
            self.cache.pop(key, None)

    def next_id(self, name: str, first: int) -> int:
        return self._ids.take(name, first)

    def close(self) -> None:
        self.client.close()


class _Scan:
    """One range a transaction scanned: [start, end) with end advanced as keys are consumed."""

    __slots__ = ("start", "end")

    def __init__(self, start: bytes) -> None:
        self.start = start
        self.end = start


class EtcdTxn:
    """kv.KvTxn over etcd: snapshot reads, buffered writes, compare-all commit."""

    def __init__(self, store: EtcdStore, writable: bool = True, guessing: bool = True) -> None:
        self._store = store
        self._client = store.client
        self._writable = writable
        self._guessing = guessing
        self.guessed: set[bytes] = set()               # keys taken from the cache or assumed absent
        self.revision = 0                              # the snapshot (0 until the first read)
        self._seen: dict[bytes, int] = {}              # key -> mod_revision read (0: absent)
        self._values: dict[bytes, bytes | None] = {}   # what those reads returned
        self._writes: dict[bytes, bytes | None] = {}   # key -> value, None: delete
        self._scans: list[_Scan] = []

    # ---- reads -------------------------------------------------------------------------

    def _fetch(self, full: bytes, likely_absent: bool = False) -> bytes | None:
        if full in self._writes:
            return self._writes[full]
        if full in self._values:
            return self._values[full]
        if self._guessing:
            store = self._store
            cached = store.cache.get(full)
            if cached is None and self._writable and (likely_absent or full.startswith(store._absent_prefixes)):
                # Never in read(): its failed check could only raise Unavailable, again and again.
                cached = (0, None)
            # A guess newer than this transaction's snapshot would mix two points in time: a dentry
            # this store just created, read from the cache, and its inode read at the older
            # snapshot (absent) -- with the guess still holding, that is "dentry points at missing
            # inode" and no rerun. Such a key is read at the snapshot instead.
            if cached is not None and (not self.revision or cached[0] <= self.revision):
                self._seen[full], self._values[full] = cached
                self.guessed.add(full)
                return cached[1]
        # A mutation's reads are all checked by its commit: the member we talk to answers them alone.
        # read() reads linearizably and checks only its guesses: checking hot keys such as the
        # routing version too made reads fail while they moved (a takeover bumps it repeatedly).
        result = self._client.range(full, revision=self.revision, serializable=self._writable)
        self.revision = result.revision
        found = result.kvs[0] if result.kvs else None
        self._seen[full] = found.mod_revision if found else 0
        self._values[full] = found.value if found else None
        self._store.remember(full, self._seen[full], self._values[full])
        return self._values[full]

    def guesses_hold(self) -> bool:
        """True when every guessed key still has the mod_revision guessed (one compare-only Txn);
        else the guesses are forgotten."""
        compares = [compare_mod_revision(key, "=", self._seen[key]) for key in self.guessed]
        # Through the group commit: concurrent checks (every stat makes one) share one Txn.
        checked = self._store.group.commit(Pending(compares, [], frozenset(self.guessed), frozenset(), []))
        if checked.error is not None:
            raise checked.error
        if checked.succeeded:
            return True
        self._store.forget(self.guessed)
        return False

    def get(self, table: str, key: bytes, likely_absent: bool = False) -> bytes | None:
        return self._fetch(self._store.key(table, key), likely_absent)

    def scan(self, table: str, prefix: bytes = b"", start: bytes | None = None
             ) -> Iterator[tuple[bytes, bytes]]:
        table_prefix = self._store.key(table, b"")
        full_prefix = table_prefix + prefix
        full_start = table_prefix + start if start is not None and start > prefix else full_prefix
        end = prefix_end(full_prefix)
        scan = _Scan(full_start)
        self._scans.append(scan)
        pending = sorted(k for k in self._writes if full_start <= k < end)
        strip = len(table_prefix)
        for full, value, stored_revision in self._merged(full_prefix, full_start, pending):
            # Only what the caller consumed is compared at commit (has_children reads one key).
            if stored_revision is not None:
                self._seen[full] = stored_revision
            scan.end = full + b"\0"
            if value is not None:
                yield full[strip:], value
        scan.end = end

    def _merged(self, full_prefix: bytes, full_start: bytes, pending: list[bytes]
                ) -> Iterator[tuple[bytes, bytes | None, int | None]]:
        """(key, value or None if deleted here, stored mod_revision or None if only written here) of the
        range at the snapshot merged with this txn's writes, in key order."""
        position = 0
        continue_from = full_start if full_start != full_prefix else None
        page_keys = scan_first_page_keys
        while True:
            page = self._client.range(full_prefix, prefix=True, revision=self.revision, limit=page_keys,
                                      continue_from=continue_from, serializable=self._writable)
            self.revision = page.revision
            for kv in page.kvs:
                while position < len(pending) and pending[position] < kv.key:
                    yield pending[position], self._writes[pending[position]], None
                    position += 1
                self._values.setdefault(kv.key, kv.value)
                if position < len(pending) and pending[position] == kv.key:
                    position += 1
                    yield kv.key, self._writes[kv.key], kv.mod_revision
                else:
                    yield kv.key, kv.value, kv.mod_revision
            if page.continue_from is None:
                break
            continue_from = page.continue_from
            page_keys = scan_page_keys
        for key in pending[position:]:
            yield key, self._writes[key], None

    def count(self, table: str) -> int:
        full_prefix = self._store.key(table, b"")
        stored = self._client.range(full_prefix, prefix=True, revision=self.revision, limit=1)
        self.revision = stored.revision
        self._scans.append(_Scan(full_prefix))
        self._scans[-1].end = prefix_end(full_prefix)
        if not self._writes:
            return stored.count
        # Rare (counts are for statfs and tests): corrected for this txn's own writes key by key.
        # (A count inside a mutation sees inserts by others through the range compare, not deletes.)
        total = stored.count
        for full, value in self._writes.items():
            if full.startswith(full_prefix):
                existed = self._stored_value(full) is not None
                total += (value is not None) - existed
        return total

    def _stored_value(self, full: bytes) -> bytes | None:
        """The value at the snapshot, ignoring this txn's writes."""
        if full not in self._values:
            found = self._client.range(full, revision=self.revision).kvs
            self._seen[full] = found[0].mod_revision if found else 0
            self._values[full] = found[0].value if found else None
        return self._values[full]

    # ---- writes ------------------------------------------------------------------------

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._check_writable()
        self._writes[self._store.key(table, key)] = bytes(value)

    def delete(self, table: str, key: bytes) -> bool:
        self._check_writable()
        full = self._store.key(table, key)
        existed = self._fetch(full) is not None
        self._writes[full] = None
        return existed

    def next_id(self, name: str, first: int) -> int:
        return self._store.next_id(name, first)

    def _check_writable(self) -> None:
        if not self._writable:
            raise Internal("a write inside a read-only metadata transaction")

    # ---- commit ------------------------------------------------------------------------

    def commit(self, guard: Guard | None) -> bool:
        """Apply the writes if nothing read changed; False when another writer got there first."""
        if not self._writes:
            # Read-only: its snapshot was consistent, and so are its guesses if they still hold.
            return not self.guessed or self.guesses_hold()
        compares = [compare_mod_revision(key, "=", revision) for key, revision in self._seen.items()]
        if self.revision:
            compares += [Compare(key=scan.start, range_end=scan.end, target=Compare.MOD, result=Compare.LESS,
                                 mod_revision=self.revision + 1)
                         for scan in self._scans if scan.end > scan.start]
        if guard is not None:
            compares.append(compare_create_revision(guard.key, "=", guard.create_revision))
        ops = [op_put(key, value) if value is not None else op_delete(key) for key, value in self._writes.items()]
        if len(compares) > limits.etcd_txn_ops_max:
            raise TooLarge(f"a metadata transaction that read {len(compares)} keys and ranges exceeds etcd's "
                           f"--max-txn-ops {limits.etcd_txn_ops_max}; split the operation")
        scans = [(scan.start, scan.end) for scan in self._scans if scan.end > scan.start]
        result = self._store.group.commit(Pending(compares, ops, frozenset(self._seen), frozenset(self._writes),
                                                  scans))
        if result.error is not None:
            raise result.error
        if result.succeeded:
            for key, value in self._writes.items():
                self._store.remember(key, result.revision if value is not None else 0, value)
            return True
        self._store.forget(self._seen)
        if guard is not None:
            held = self._client.get(guard.key)
            if held is None or held.create_revision != guard.create_revision:
                raise NotPrimary(f"this mgmtd no longer holds {guard.key.decode(errors='replace')} "
                                 "(its lease ended); nothing was applied")
        return False


class _IdRanges:
    """Ids of hot counters handed out from ranges reserved per store (see the module doc)."""

    def __init__(self, store: EtcdStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._ranges: dict[str, tuple[int, int]] = {}     # name -> [next, end)

    def take(self, name: str, first: int) -> int:
        with self._lock:
            next_id, end = self._ranges.get(name, (0, 0))
            if next_id >= end:
                next_id, end = self._reserve(name, first)
            self._ranges[name] = (next_id + 1, end)
            return next_id

    def _reserve(self, name: str, first: int) -> tuple[int, int]:
        key = name.encode()

        def reserve(txn: Txn) -> tuple[int, int]:
            raw = txn.kv.get("counters", key)
            start = first if raw is None else _U64.unpack(raw)[0]
            txn.kv.put("counters", key, _U64.pack(start + id_range_size))
            return start, start + id_range_size

        return self._store.transact(reserve)

