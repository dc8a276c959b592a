"""Repair of a chunk whose bytes rotted on one local replica: re-verify, copy a good replica's, replace.

Three things make a node suspect one of its chunks: a client's
Storage.ReportBadChunk (the bulk path sends whole blocks unverified and the
client checks them), a read on this node that met a CRC mismatch, and the
scrub (scrub.py). Each offers (target, chunk) to the ``RepairQueue``: bounded,
one entry per chunk, one worker thread, so a reader looping over a rotten file
costs one repair, not one per read.

``Repairer.repair`` never trusts the suspicion. It re-reads the chunk here
(``ChunkEngine.verify``); a chunk that verifies clean is left alone. A bad one
is fetched whole from another SERVING replica of the chain (Storage.BatchRead,
which verifies the blocks it reads there, plus the CRC in transit), and the
copy is used only when it is exactly what this replica committed: same commit
version, same length, every block matching the CRCs stored here. Then it goes
through the chain's own full-replace path, as fsck --repair and resync send a
chunk (ChainDriver.update, full_replace at the chunk's commit version, from no
predecessor): the same version makes it a local rewrite, nothing is forwarded.

A write racing the repair wins: under the chunk lock the replace is applied
only if the chunk's metadata is still the one verified bad (``noop``);
anything newer (a write, a truncate, another repair) makes it a no-op. When no
replica holds a good copy the chunk is logged and counted as unrepairable and
left as it is: never "repaired" from a bad copy. A source that is mid-write or
unreachable defers the repair (retried a few times, later).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from typing import Callable

import crc32c

from fireflyfs.common import limits
from fireflyfs.common.errors import FfsError, Retryable, error_from_name
from fireflyfs.proto import storage_pb2, types_pb2

from .chain_driver import ChainDriver
from .chain_update import ChainUpdate
from .chunk_engine import ChunkVerdict
from .chunk_meta import ChunkMeta, describe_key, split_key
from .peers import Peers
from .routing_view import RoutingView
from .target import Target

log = logging.getLogger(__name__)

repair_queue_entries_max = limits.repair_queue_entries_max    # more offers are dropped (and counted)
repair_attempts_max = 5                # a deferred repair is tried this often before it is dropped
repair_retry_delay_s = 2.0             # ... this long after the previous try
source_read_timeout_s = 20.0


class RepairSource(enum.Enum):
    """Why a chunk was offered for repair."""

    REPORT = "report"      # a client's ReportBadChunk
    READ = "read"          # a read on this node met a CRC mismatch
    SCRUB = "scrub"        # the background scrub


class RepairOutcome(enum.Enum):
    REPAIRED = "repaired"            # rewritten from a good replica; verifies clean now
    UNCONFIRMED = "unconfirmed"      # verifies clean here: nothing to repair
    GONE = "gone"                    # absent or pending, or replaced while verifying: nothing committed to check
    SUPERSEDED = "superseded"        # a write (or another repair) changed it before the replace: it wins
    NOT_SERVING = "not-serving"      # the target is not SERVING in a chain (resync owns a syncing one)
    DEFERRED = "deferred"            # sources mid-write, unreachable, or the chain moved: try again later
    UNREPAIRABLE = "unrepairable"    # no other replica holds a good copy: left alone


@dataclasses.dataclass(slots=True)
class RepairCounters:
    """Per target, since the node started."""

    bad_found: int = 0               # chunks a local re-verify confirmed bad
    repaired: int = 0
    unrepairable: int = 0
    reports_received: int = 0
    reports_unconfirmed: int = 0
    dropped: int = 0                 # offers refused: the queue was full


class BadCopy(Exception):
    """A replica's copy is not the chunk this replica committed (rotten too, or divergent)."""


class Repairer:
    """The decision and the I/O of one repair (see the module docstring)."""

    def __init__(self, targets: dict[int, Target], routing: RoutingView, peers: Peers, driver: ChainDriver,
                 read_timeout_s: float = source_read_timeout_s) -> None:
        self._targets = targets
        self._routing = routing
        self._peers = peers
        self._driver = driver
        self._read_timeout_s = read_timeout_s

    def repair(self, target_id: int, key: bytes) -> tuple[RepairOutcome, ChunkVerdict | None]:
        """Repair one chunk of a local target; the outcome and what the local re-verify found."""
        target = self._targets[target_id]
        verdict = target.engine.verify(key)
        if verdict is None:
            return RepairOutcome.GONE, None
        if verdict.ok:
            return RepairOutcome.UNCONFIRMED, verdict
        chain = self._routing.chain_of_target(target_id)
        if chain is None or chain.state_of(target_id) != types_pb2.SERVING:
            return RepairOutcome.NOT_SERVING, verdict
        meta = verdict.meta
        deferred = False
        for source in (t for t in chain.serving if t != target_id):
            try:
                data = self._good_copy(chain.chain_id, chain.version, source, key, meta)
            except BadCopy as exc:
                log.warning("target %d: %s: the copy on target %d is no good: %s", target_id,
                            describe_key(key), source, exc)
                continue
            except Retryable as exc:
                log.info("target %d: %s: target %d cannot serve a copy now: %s: %s", target_id,
                         describe_key(key), source, type(exc).__name__, exc)
                deferred = True
                continue
            return self._replace(target, chain.chain_id, chain.version, key, verdict, data, source), verdict
        if deferred:
            return RepairOutcome.DEFERRED, verdict
        log.error("target %d: %s (commit %d) has bad blocks %s and no other replica of chain %d holds a "
                  "good copy: left as it is", target_id, describe_key(key), meta.commit_version,
                  list(verdict.bad_blocks), chain.chain_id)
        return RepairOutcome.UNREPAIRABLE, verdict

    def _good_copy(self, chain_id: int, chain_version: int, source: int, key: bytes, meta: ChunkMeta) -> bytes:
        """The whole chunk from source, only if it is byte for byte what meta committed."""
        inode, index = split_key(key)
        reply = self._peers.call(source, "BatchRead", storage_pb2.BatchReadRequest(verify_checksum=True, ios=[
            storage_pb2.ReadIO(chain_id=chain_id, chain_version=chain_version,
                               chunk=types_pb2.ChunkId(inode=inode, index=index), offset=0,
                               length=meta.length)]), timeout_s=self._read_timeout_s)
        result = reply.results[0]
        if result.status.error:
            error = error_from_name(result.status.error, result.status.message)
            if isinstance(error, Retryable):
                raise error
            raise BadCopy(f"{type(error).__name__}: {error}")
        data = result.data
        if result.checksum != crc32c.crc32c(data):
            raise BadCopy("CRC32C mismatch in transit")
        if result.commit_version != meta.commit_version:
            raise BadCopy(f"commit version {result.commit_version} there, {meta.commit_version} here")
        if len(data) != meta.length:
            raise BadCopy(f"{len(data)} bytes there, {meta.length} here")
        bad = meta.bad_blocks(data)
        if bad:
            raise BadCopy(f"blocks {list(bad)} differ from the CRCs committed here")
        return data

    def _replace(self, target: Target, chain_id: int, chain_version: int, key: bytes, verdict: ChunkVerdict,
                 data: bytes, source: int) -> RepairOutcome:
        meta = verdict.meta
        inode, index = split_key(key)
        update = ChainUpdate(chain_id=chain_id, chain_version=chain_version, inode=inode, index=index,
                             chunk_size=meta.chunk_size, update_version=meta.commit_version, from_target=0,
                             to_target=target.id, data=data, checksum=crc32c.crc32c(data), full_replace=True,
                             chunk_chain_version=meta.chain_version)
        changed: list[ChunkMeta | None] = []

        def unless_changed(current: ChunkMeta | None) -> bool:
            if current != meta:
                changed.append(current)
                return True
            return False

        try:
            self._driver.update(target, update, noop=unless_changed)
        except Retryable as exc:
            log.info("target %d: %s: replace deferred: %s: %s", target.id, describe_key(key), type(exc).__name__, exc)
            return RepairOutcome.DEFERRED
        if changed:
            log.info("target %d: %s changed before its repair (commit %d -> %s): the newer write stays",
                     target.id, describe_key(key), meta.commit_version,
                     changed[0].commit_version if changed[0] else "removed")
            return RepairOutcome.SUPERSEDED
        after = target.engine.verify(key)
        if after is None:
            return RepairOutcome.SUPERSEDED
        if not after.ok:
            log.error("target %d: %s still has bad blocks %s after a replace from target %d", target.id,
                      describe_key(key), list(after.bad_blocks), source)
            return RepairOutcome.UNREPAIRABLE
        log.info("target %d: %s repaired from target %d: bad blocks %s; file version %d -> %d, commit %d kept",
                 target.id, describe_key(key), source, list(verdict.bad_blocks), meta.file_version,
                 after.meta.file_version, after.meta.commit_version)
        return RepairOutcome.REPAIRED


@dataclasses.dataclass(slots=True)
class _Entry:
    source: RepairSource
    attempts: int = 0
    not_before: float = 0.0


class RepairQueue:
    """Bounded, deduplicated queue of (target, chunk) to repair, worked by one thread (``start``).

    ``repair``: the Repairer's method (or a test's stand-in). ``run_once`` does
    one step without a thread, for tests.
    """

    def __init__(self, repair: Callable[[int, bytes], tuple[RepairOutcome, ChunkVerdict | None]],
                 target_ids: list[int], entries_max: int = repair_queue_entries_max,
                 attempts_max: int = repair_attempts_max, retry_delay_s: float = repair_retry_delay_s,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._repair = repair
        self.entries_max = entries_max
        self.attempts_max = attempts_max
        self.retry_delay_s = retry_delay_s
        self._clock = clock
        self._entries: collections.OrderedDict[tuple[int, bytes], _Entry] = collections.OrderedDict()
        self._cond = threading.Condition()
        self.counters = {target_id: RepairCounters() for target_id in target_ids}
        self._unrepairable: set[tuple[int, bytes]] = set()    # bounded by entries_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, target_id: int, key: bytes, source: RepairSource) -> bool:
        """Queue a chunk for repair; False when it is queued already or the queue is full."""
        counters = self.counters.get(target_id)
        if counters is None:
            return False
        with self._cond:
            if source is RepairSource.REPORT:
                counters.reports_received += 1
            if (target_id, key) in self._entries:
                return False
            if len(self._entries) >= self.entries_max:
                counters.dropped += 1
                log.warning("target %d: repair queue full (%d): %s from a %s dropped", target_id,
                            self.entries_max, describe_key(key), source.value)
                return False
            self._entries[(target_id, key)] = _Entry(source)
            self._cond.notify()
        log.info("target %d: %s queued for repair (%s)", target_id, describe_key(key), source.value)
        return True

    def queued(self, target_id: int) -> int:
        with self._cond:
            return sum(1 for (queued_target, _) in self._entries if queued_target == target_id)

    def _due_in(self) -> float | None:
        """Seconds until the first entry is due (0: one is), None when the queue is empty."""
        now = self._clock()
        return min((max(entry.not_before - now, 0.0) for entry in self._entries.values()), default=None)

    def _take_due(self) -> tuple[tuple[int, bytes], _Entry] | None:
        now = self._clock()
        for item, entry in self._entries.items():
            if entry.not_before <= now:
                del self._entries[item]
                return item, entry
        return None

    def run_once(self) -> RepairOutcome | None:
        """Repair the first chunk that is due, if any; its outcome."""
        with self._cond:
            found = self._take_due()
        if found is None:
            return None
        (target_id, key), entry = found
        try:
            outcome, _verdict = self._repair(target_id, key)
        except FfsError as exc:
            log.warning("target %d: repair of %s failed: %s: %s", target_id, describe_key(key),
                        type(exc).__name__, exc)
            outcome = RepairOutcome.DEFERRED
        self._account(target_id, key, entry, outcome)
        return outcome

    def _account(self, target_id: int, key: bytes, entry: _Entry, outcome: RepairOutcome) -> None:
        """Counters, and a deferred entry back in the queue. A chunk known unrepairable is counted
        once, however often scrub finds it again, until it verifies clean or changes."""
        counters = self.counters[target_id]
        item = (target_id, key)
        with self._cond:
            confirmed_bad = outcome not in (RepairOutcome.UNCONFIRMED, RepairOutcome.GONE)
            if confirmed_bad and entry.attempts == 0 and item not in self._unrepairable:
                counters.bad_found += 1
            if outcome is not RepairOutcome.UNREPAIRABLE and outcome is not RepairOutcome.DEFERRED:
                self._unrepairable.discard(item)
            if outcome is RepairOutcome.UNCONFIRMED and entry.source is RepairSource.REPORT:
                counters.reports_unconfirmed += 1
            elif outcome is RepairOutcome.REPAIRED:
                counters.repaired += 1
            elif outcome is RepairOutcome.UNREPAIRABLE:
                if item not in self._unrepairable:
                    counters.unrepairable += 1
                    if len(self._unrepairable) < self.entries_max:
                        self._unrepairable.add(item)
            elif outcome is RepairOutcome.DEFERRED:
                entry.attempts += 1
                if entry.attempts < self.attempts_max and (target_id, key) not in self._entries:
                    entry.not_before = self._clock() + self.retry_delay_s
                    self._entries[(target_id, key)] = entry
                    self._cond.notify()
                else:
                    log.warning("target %d: repair of %s deferred %d times: dropped until found again",
                                target_id, describe_key(key), entry.attempts)

    # ---- the worker thread ------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chunk-repair", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                wait = self._due_in()
                if wait is None or wait > 0:
                    self._cond.wait(min(wait, 1.0) if wait is not None else 1.0)
                    continue
            try:
                self.run_once()
            except Exception:     # a closed engine at shutdown, a bug: the worker goes on
                log.exception("repair worker: unexpected failure")
                self._stop.wait(1.0)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
