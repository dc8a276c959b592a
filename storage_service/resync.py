"""Resync: the predecessor of a SYNCING target copies what the target lacks, then says SyncDone.

A thread per (local serving target, its syncing successor), started when
routing shows that pair and stopped when it no longer does. One pass, at the
chain version ``cv`` routing shows at its start:

1. Drain: wait until no chain update on the local target still works under a
   routing older than ``cv``. Such an update may have decided, before the
   successor joined, that it is the tail, and commit without forwarding; the
   comparison must see its result. Updates admitted from now on know the
   successor is SYNCING and forward full-chunk replaces to it.
2. Storage.SyncStart pages the successor's chunk metadata.
3. craq.plan_sync compares (the 3FS rules, plus: pending on either side or
   same version but different bytes -> send).
4. For each chunk to send or remove, under the local chunk lock: push the
   chunk as it is now (full replace; a pending leftover is committed locally
   once the successor has it), or remove the successor's copy if we have none.
   ``pushes_in_flight`` chunks go at once (each under its own lock), so one
   push's disk read and the successor's write overlap with the next ones.
5. Storage.SyncDone(cv). Stale (the chain changed meanwhile) -> another pass,
   which finds little left to copy.

Writes and reads go on meanwhile: live writes reach the syncing target as full
replaces, and the chunk lock orders them with the pushes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time

from fireflyfs.common.errors import FfsError, Unavailable
from fireflyfs.proto import storage_pb2, types_pb2

from .chain_driver import ChainDriver, state_of
from .chunk_meta import chunk_key
from .craq import ChunkState, plan_sync
from .peers import Peers
from .routing_view import RoutingView
from .target import Target

log = logging.getLogger(__name__)

sync_page_metas_max = 4096
# Chunks one resync pushes at once: enough to keep the successor's disk and the link busy
# while one push waits on the other, few enough to leave the node's threads to clients.
pushes_in_flight_default = 4
drain_wait_s_max = 60.0
retry_backoff_s = 0.5


class ResyncWorker:
    """Syncs one successor from one local target until routing stops asking for it."""

    def __init__(self, target: Target, successor: int, chain_id: int, routing: RoutingView,
                 peers: Peers, driver: ChainDriver, on_exit,
                 pushes_in_flight: int = pushes_in_flight_default) -> None:
        self.target = target
        self.pushes_in_flight = pushes_in_flight
        self.successor = successor
        self.chain_id = chain_id
        self._routing = routing
        self._peers = peers
        self._driver = driver
        self._on_exit = on_exit
        self._stop = threading.Event()
        self.passes = 0
        self.chunks_sent = 0
        self.chunks_removed = 0
        self.done_version = 0        # chain version of the last accepted SyncDone
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"resync-{target.id}->{successor}")

    def wanted(self) -> bool:
        chain = self._routing.chain(self.chain_id)
        return (chain is not None and chain.state_of(self.target.id) == types_pb2.SERVING
                and chain.successor(self.target.id) == self.successor
                and chain.state_of(self.successor) == types_pb2.SYNCING)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.wanted():
                chain = self._routing.chain(self.chain_id)
                if chain is None:
                    break
                if self.done_version == chain.version:
                    self._stop.wait(0.1)       # done at this version: wait for mgmtd's promotion
                    continue
                try:
                    self._one_pass(chain.version)
                except FfsError as exc:
                    log.info("resync %d -> %d: pass at chain version %d failed (%s: %s); again soon",
                             self.target.id, self.successor, chain.version, type(exc).__name__, exc)
                    self._stop.wait(retry_backoff_s)
        except Exception:
            log.exception("resync %d -> %d crashed", self.target.id, self.successor)
            self._stop.wait(retry_backoff_s)     # a restart follows: not in a tight loop
        finally:
            self._on_exit(self)

    def _one_pass(self, chain_version: int) -> None:
        self.passes += 1
        started = time.monotonic()
        if not self.target.in_flight.wait_drained(chain_version, drain_wait_s_max):
            raise DrainTimeout(f"updates of an older routing still running after {drain_wait_s_max}s")
        remote = self._remote_metas(chain_version)
        local = {key: state_of(meta) for key, meta in self._local_metas()}
        send, remove = plan_sync(local, remote)    # type: ignore[arg-type]
        keys = sorted({key for key, _ in send} | set(remove))
        log.info("resync %d -> %d (chain %d v%d): %d local, %d remote chunks; %d to send, %d to remove",
                 self.target.id, self.successor, self.chain_id, chain_version, len(local), len(remote),
                 len(send), len(remove))
        if not self._push_all(keys, local):
            return
        self._peers.call(self.successor, "SyncDone", storage_pb2.SyncDoneRequest(
            chain_id=self.chain_id, chain_version=chain_version, target_id=self.successor))
        self.done_version = chain_version
        log.info("resync %d -> %d: done at chain version %d in %.2fs (%d sent, %d removed so far)",
                 self.target.id, self.successor, chain_version, time.monotonic() - started,
                 self.chunks_sent, self.chunks_removed)

    def _push_all(self, keys: list[bytes], local: dict) -> bool:
        """Push every key, up to pushes_in_flight at once (each under its own chunk lock); False
        when stopped. The first failure stops new pushes, lets those in flight end, and raises."""
        in_flight: dict[concurrent.futures.Future, bytes] = {}
        failure: BaseException | None = None

        def settle(done) -> None:
            nonlocal failure
            for future in done:
                key = in_flight.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                elif key in local:
                    self.chunks_sent += 1
                else:
                    self.chunks_removed += 1

        with concurrent.futures.ThreadPoolExecutor(self.pushes_in_flight,
                                                   thread_name_prefix=f"resync-{self.target.id}") as pool:
            for key in keys:
                if self._stop.is_set() or failure is not None:
                    break
                if len(in_flight) >= self.pushes_in_flight:
                    settle(concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)[0])
                    if failure is not None:
                        break
                in_flight[pool.submit(self._driver.push, self.target, key, self.chain_id, self.successor)] = key
            settle(concurrent.futures.wait(in_flight)[0])
        if failure is not None:
            raise failure
        return not self._stop.is_set()

    def _local_metas(self):
        start = None
        while True:
            page = self.target.engine.metas_after(start, sync_page_metas_max)
            yield from page
            if len(page) < sync_page_metas_max:
                return
            start = page[-1][0]

    def _remote_metas(self, chain_version: int) -> dict[bytes, ChunkState]:
        metas: dict[bytes, ChunkState] = {}
        request = storage_pb2.SyncStartRequest(chain_id=self.chain_id, chain_version=chain_version,
                                               target_id=self.successor, limit=sync_page_metas_max)
        while True:
            reply = self._peers.call(self.successor, "SyncStart", request)
            for info in reply.metas:
                metas[chunk_key(info.chunk.inode, info.chunk.index)] = ChunkState(
                    info.commit_version, info.update_version, info.chain_version, info.length,
                    info.chunk_checksum)
            if not reply.more or not reply.metas:
                return metas
            request.start_after.CopyFrom(reply.metas[-1].chunk)


class DrainTimeout(Unavailable):
    """The drain did not finish: retried as a failed pass."""


class ResyncManager:
    """Starts and stops ResyncWorkers as routing changes (called on every routing install)."""

    def __init__(self, targets: dict[int, Target], routing: RoutingView, peers: Peers,
                 driver: ChainDriver) -> None:
        self._targets = targets
        self._routing = routing
        self._peers = peers
        self._driver = driver
        self._lock = threading.Lock()
        self._workers: dict[int, ResyncWorker] = {}
        self._closed = False

    def on_routing(self, routing: RoutingView) -> None:
        with self._lock:
            if self._closed:
                return
            for target_id, target in self._targets.items():
                chain = routing.chain_of_target(target_id)
                if chain is None or chain.state_of(target_id) != types_pb2.SERVING:
                    continue
                successor = chain.successor(target_id)
                if successor is None or chain.state_of(successor) != types_pb2.SYNCING:
                    continue
                worker = self._workers.get(target_id)
                if worker is not None and worker.successor == successor and worker.thread.is_alive():
                    continue
                if worker is not None:
                    worker.stop()
                worker = ResyncWorker(target, successor, chain.chain_id, routing, self._peers,
                                      self._driver, self._exited)
                self._workers[target_id] = worker
                log.info("resync %d -> %d: starting (chain %d v%d)", target_id, successor,
                         chain.chain_id, chain.version)
                worker.thread.start()

    def _exited(self, worker: ResyncWorker) -> None:
        with self._lock:
            if self._workers.get(worker.target.id) is worker:
                del self._workers[worker.target.id]
        self.on_routing(self._routing)   # routing may have asked again while it was stopping

    def workers(self) -> list[ResyncWorker]:
        with self._lock:
            return list(self._workers.values())

    def close(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.thread.join(timeout_s)
