"""Runs CRAQ chain updates on a storage node: craq.ChainOp decides, this module does the I/O.

One request thread drives one ChainOp under the chunk's lock: STAGE and COMMIT
go to the target's chunk engine, FORWARD sends the update to the successor's
node and waits for its reply (peers.py: a bulk UPDATE frame, or Storage.Update),
WAIT sleeps with capped exponential backoff and retries with the routing the
node holds by then (so a dead successor's removal from the chain, a new
successor, or becoming the tail all take effect), REPLY/FAIL end the call.
The op gives up after ``op_deadline_s`` with Unavailable: the chunk stays
pending, and the next head write or a resync rolls it forward.

A client write is first admitted against the head target's free-space
reserve (space_guard.py: NoSpace when it would grow the chunk into the
reserve); the updates it forwards are not, successors use the reserve.

Client-originated updates (Write, TruncateChunk, RemoveChunks at the head)
are admitted up to ``client_ops_max`` at a time; more answer Unavailable
(retryable). Every update holds a request thread on each replica while it
travels the chain, so without a bound two nodes heading chains through each
other could fill both thread pools with heads waiting on Updates that have no
thread left to run on.

RemoveChunks is not versioned: each replica removes its own chunks in the
range under their locks and forwards the request to its successor (retrying
until routing changes), so a replica that missed it is fixed by the next
retry of the caller or by resync (remote-only chunks are removed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

import crc32c

from fireflyfs.common.errors import FfsError, NotFound, Retryable, StaleChainVersion, Unavailable, require
from fireflyfs.proto import storage_pb2, types_pb2

from . import access
from .chain_update import ChainUpdate
from .chunk_meta import ChunkMeta, chunk_key, split_key
from .craq import Action, ChainOp, ChainView, ChunkState, Do, UpdateKind, Mutation
from .peers import Peers
from .routing_view import RoutingView
from .target import Target, WriteOutcome

log = logging.getLogger(__name__)

op_deadline_s_default = 30.0
client_ops_max_default = 32          # half the default request thread pool (server.py)
backoff_s_first = 0.05
backoff_s_max = 1.0


def state_of(meta: ChunkMeta | None) -> ChunkState | None:
    if meta is None:
        return None
    return ChunkState(meta.commit_version, meta.update_version, meta.chain_version, meta.length,
                      meta.chunk_checksum)


def meta_info(key: bytes, meta: ChunkMeta) -> storage_pb2.ChunkMetaInfo:
    inode, index = split_key(key)
    return storage_pb2.ChunkMetaInfo(
        chunk=types_pb2.ChunkId(inode=inode, index=index), length=meta.length,
        commit_version=meta.commit_version, update_version=meta.update_version,
        chain_version=meta.chain_version, chunk_checksum=meta.chunk_checksum)


class ChainDriver:
    def __init__(self, routing: RoutingView, peers: Peers, *, op_deadline_s: float = op_deadline_s_default,
                 client_ops_max: int = client_ops_max_default,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        self.routing = routing
        self.peers = peers
        self.op_deadline_s = op_deadline_s
        self.client_ops_max = client_ops_max
        self._client_ops = threading.BoundedSemaphore(client_ops_max)
        self._clock = clock
        self._sleep = sleep
        self._closing = threading.Event()

    def close(self) -> None:
        """Stopping: updates waiting to retry give up now instead of outliving the engines."""
        self._closing.set()

    @contextlib.contextmanager
    def _client_op(self) -> Iterator[None]:
        if not self._client_ops.acquire(blocking=False):
            raise Unavailable(f"storage node {self.routing.node_id} is busy: {self.client_ops_max} client "
                              f"updates in flight; retry")
        try:
            yield
        finally:
            self._client_ops.release()

    # ------------------------------------------------------------------ client requests at the head

    def write(self, target: Target, request: storage_pb2.WriteRequest) -> WriteOutcome:
        return self.write_data(target, request.chain_id, request.chain_version, request.chunk.inode,
                               request.chunk.index, request.offset, request.data, request.checksum,
                               request.chunk_size, request.client_id, request.channel, request.seqnum)

    def write_data(self, target: Target, chain_id: int, chain_version: int, inode: int, index: int,
                   offset: int, data: bytes | memoryview, checksum: int, chunk_size: int,
                   client_id: str = "", channel: int = 0, seqnum: int = 0) -> WriteOutcome:
        """A client write at the head (gRPC Write or the bulk path); data is only read during the call."""
        key = chunk_key(inode, index)
        mutation = Mutation(UpdateKind.WRITE, chunk_size, offset=offset, data=data)

        def apply() -> WriteOutcome:
            target.space_guard.admit_write(key, offset, len(data))   # the head decides for the chain
            state = require(self._run(target, key, chain_id, chain_version, mutation, checksum=checksum),
                            "the chunk state after a client write")
            return WriteOutcome(state.commit_version, state.length, state.checksum)

        with self._client_op():
            return target.deduplicated(client_id, channel, seqnum, key, apply)

    def truncate(self, target: Target, request: storage_pb2.TruncateChunkRequest) -> ChunkState | None:
        """A missing chunk cut to 0, or a committed one already at that length, is left alone."""
        key = chunk_key(request.chunk.inode, request.chunk.index)
        mutation = Mutation(UpdateKind.TRUNCATE, request.chunk_size, length=request.length)

        def noop(meta: ChunkMeta | None) -> bool:
            if meta is None:
                return request.length == 0
            return meta.committed and meta.length == request.length and meta.chunk_size == request.chunk_size

        with self._client_op():
            return self._run(target, key, request.chain_id, request.chain_version, mutation, noop=noop)

    # ------------------------------------------------------------------ chain-internal requests

    def update(self, target: Target, update: ChainUpdate,
               caller_active: Callable[[], bool] | None = None,
               noop: Callable[[ChunkMeta | None], bool] | None = None) -> ChunkState | None:
        """A chain update from the predecessor, by either transport (or a local repair: from_target 0).

        noop, checked under the chunk lock: when it says so, nothing is applied
        and the chunk's current state is returned (None: the chunk is absent).
        """
        key = chunk_key(update.inode, update.index)
        if update.full_replace:
            mutation = Mutation(UpdateKind.REPLACE, update.chunk_size, data=update.data)
        elif update.truncate:
            mutation = Mutation(UpdateKind.TRUNCATE, update.chunk_size, length=update.truncate_length)
        else:
            mutation = Mutation(UpdateKind.WRITE, update.chunk_size, offset=update.offset, data=update.data)
        state = self._run(target, key, update.chain_id, update.chain_version, mutation,
                          update_version=update.update_version, full_replace=update.full_replace,
                          from_target=update.from_target, checksum=update.checksum,
                          caller_active=caller_active, noop=noop)
        return state if noop is not None else require(state, "the chunk state after a chain update")

    def forwarded(self, targets: dict[int, Target], update: ChainUpdate,
                  caller_active: Callable[[], bool] | None = None) -> ChunkState:
        """An update from the predecessor, by either transport: from a node of the chain (or an
        admin tool: fsck --repair), to a local SERVING or SYNCING member at its chain version."""
        access.require_node("forwarding an update", admin_too=True)
        chain = self.routing.checked_chain(update.chain_id, update.chain_version)
        target = targets.get(update.to_target)
        if target is None:
            raise NotFound(f"target {update.to_target} is not on storage node {self.routing.node_id}")
        state = chain.state_of(update.to_target)
        if state not in (types_pb2.SERVING, types_pb2.SYNCING):
            raise StaleChainVersion(
                f"chain {update.chain_id} version {update.chain_version}: target {update.to_target} is "
                f"{types_pb2.PublicTargetState.Name(state or 0)}, expected SERVING/SYNCING")
        access.require_chain_peer(self.routing, update.to_target, "forwarding an update", admin_too=True)
        return require(self.update(target, update, caller_active=caller_active), "the chunk state after an update")

    def push(self, target: Target, key: bytes, chain_id: int, syncing_target: int | None,
             lock_timeout_s: float | None = None) -> bool:
        """Make the successor's copy of key equal ours, under the chunk lock; False if not needed.

        Resync (syncing_target set): the chunk as it is, or a RemoveChunk when we have none.
        Roll-forward (syncing_target None): only a pending leftover, pushed down the chain and
        committed here, so no replica keeps answering ChunkNotCommitted for it.
        """
        deadline = self._clock() + self.op_deadline_s
        slot = target.in_flight.enter()
        try:
            with target.locks.hold(key, self.op_deadline_s if lock_timeout_s is None else lock_timeout_s):
                chain = self._chain(chain_id)
                target.in_flight.set_version(slot, chain.version)
                meta = target.engine.get_meta(key)
                if syncing_target is None and (meta is None or meta.committed):
                    return False
                if meta is None:
                    syncing_target = require(syncing_target, "the syncing target of a removal push")
                    inode, index = split_key(key)
                    self.peers.call(syncing_target, "RemoveChunk", storage_pb2.RemoveChunkRequest(
                        chain_id=chain_id, chain_version=chain.version, target_id=syncing_target,
                        chunk=types_pb2.ChunkId(inode=inode, index=index)))
                    return True
                op = ChainOp(target.id, chain, chain.version, None, push=True)
                action = op.admit(state_of(meta))
                if syncing_target is not None and action.do is Do.FORWARD and action.to_target != syncing_target:
                    raise StaleChainVersion(f"chain {chain_id}: successor of {target.id} is "
                                            f"{action.to_target}, not the syncing {syncing_target}")
                self._drive(target, op, key, action, deadline, slot, checksum=None)
                return True
        finally:
            target.in_flight.leave(slot)

    def remove_one(self, target: Target, key: bytes) -> bool:
        with target.locks.hold(key, self.op_deadline_s):
            return target.engine.remove(key)

    def remove_chunks(self, target: Target, request: storage_pb2.RemoveChunksRequest) -> int:
        """Remove the range here, then have the successor do the same (the whole chain, in order)."""
        if request.from_target:
            return self._remove_chunks(target, request)
        with self._client_op():
            return self._remove_chunks(target, request)

    def _remove_chunks(self, target: Target, request: storage_pb2.RemoveChunksRequest) -> int:
        end = request.end_index or None
        removed = 0
        for key in target.engine.keys_in_range(request.inode, request.begin_index, end):
            removed += self.remove_one(target, key)
        deadline = self._clock() + self.op_deadline_s
        backoff = backoff_s_first
        while True:
            chain = self._chain(request.chain_id)
            successor = chain.successor(target.id)
            if target.id not in chain.members:
                raise StaleChainVersion(f"chain {chain.chain_id} version {chain.version}: target "
                                        f"{target.id} left the chain while removing chunks")
            if successor is None:
                return removed
            forward = storage_pb2.RemoveChunksRequest()
            forward.CopyFrom(request)
            forward.chain_version, forward.from_target, forward.to_target = chain.version, target.id, successor
            try:
                self.peers.call(successor, "RemoveChunks", forward, timeout_s=self._remaining(deadline))
                return removed
            except Retryable as exc:
                backoff = self._backoff(deadline, backoff, exc, f"remove chunks of {request.inode}")

    # ------------------------------------------------------------------ the op loop

    def _chain(self, chain_id: int) -> ChainView:
        self.routing.check_fence()
        chain = self.routing.chain(chain_id)
        if chain is None:
            self.routing.refresh_wanted.set()
            raise StaleChainVersion(f"chain {chain_id} is not in routing of node {self.routing.node_id}")
        return chain

    def _remaining(self, deadline: float) -> float:
        return max(deadline - self._clock(), 0.1)

    def _backoff(self, deadline: float, backoff: float, error: FfsError, what: str) -> float:
        if self._clock() >= deadline:
            raise Unavailable(f"{what}: gave up after {self.op_deadline_s:.0f}s: {error}") from error
        if self._closing.is_set():
            raise Unavailable(f"{what}: storage node {self.routing.node_id} is stopping") from error
        self._sleep(backoff)
        return min(backoff * 2, backoff_s_max)

    def _run(self, target: Target, key: bytes, chain_id: int, request_chain_version: int,
             mutation: Mutation, *, update_version: int | None = None, full_replace: bool = False,
             from_target: int = 0, checksum: int | None = None,
             noop: Callable[[ChunkMeta | None], bool] | None = None,
             caller_active: Callable[[], bool] | None = None) -> ChunkState | None:
        deadline = self._clock() + self.op_deadline_s
        slot = target.in_flight.enter()   # before reading routing: see resync's drain
        try:
            with target.locks.hold(key, self.op_deadline_s):
                if caller_active is not None and not caller_active():
                    raise Unavailable("the predecessor gave up on this update before it got the chunk lock")
                chain = self._chain(chain_id)
                target.in_flight.set_version(slot, chain.version)
                meta = target.engine.get_meta(key)
                if noop is not None and noop(meta):
                    return state_of(meta)
                op = ChainOp(target.id, chain, request_chain_version, mutation, update_version=update_version,
                             full_replace=full_replace, from_target=from_target)
                action = op.admit(state_of(meta))
                return self._drive(target, op, key, action, deadline, slot, checksum)
        finally:
            target.in_flight.leave(slot)

    def _drive(self, target: Target, op: ChainOp, key: bytes, action: Action, deadline: float, slot: int,
               checksum: int | None) -> ChunkState:
        engine = target.engine
        backoff = backoff_s_first
        while True:
            if action.do is Do.STAGE:
                mutation = require(op.mutation, "the mutation of a STAGE action")
                meta = engine.stage(key, mutation.kind, action.version, action.chain_version,
                                    mutation.chunk_size, commit=action.commit, offset=mutation.offset,
                                    data=mutation.data, length=mutation.length,
                                    checksum=checksum if mutation.kind is not UpdateKind.TRUNCATE else None)
                action = op.staged(state_of(meta))
            elif action.do is Do.COMMIT:
                action = op.committed(state_of(engine.commit(key, action.version, action.chain_version)))
            elif action.do is Do.FORWARD:
                update = self._forwarded(target, op, key, action, checksum)
                try:
                    reply = self.peers.update(action.to_target, update,
                                              timeout_s=min(self.peers.rpc_timeout_s, self._remaining(deadline)))
                    action = op.replied(reply.commit_version, reply.chunk_checksum)
                except FfsError as exc:
                    log.info("target %d: update %d of %s to target %d failed: %s: %s", target.id,
                             action.version, key.hex(), action.to_target, type(exc).__name__, exc)
                    action = op.failed(exc)
            elif action.do is Do.WAIT:
                backoff = self._backoff(deadline, backoff, require(action.error, "the error of a WAIT action"),
                                        f"target {target.id} chain {op.chain.chain_id} update of {key.hex()}")
                chain = self._chain(op.chain.chain_id)
                target.in_flight.set_version(slot, chain.version)
                action = op.retry(chain)
            elif action.do is Do.REPLY:
                return require(action.state, "the chunk state of a REPLY action")
            else:
                raise require(action.error, "the error of a FAIL action")

    def _forwarded(self, target: Target, op: ChainOp, key: bytes, action: Action,
                   checksum: int | None) -> ChainUpdate:
        """The update to send to the successor. A write's data goes on as it came, with the CRC
        this replica checked it against (stage verified it), not one computed again."""
        inode, index = split_key(key)
        common = dict(chain_id=op.chain.chain_id, chain_version=action.chain_version, inode=inode, index=index,
                      update_version=action.version, from_target=target.id, to_target=action.to_target)
        if action.full_replace:
            meta = require(target.engine.get_meta(key), f"the chunk {key.hex()} a full replace sends")
            data, _ = target.engine.read(key, 0, meta.length, allow_pending=True)
            return ChainUpdate(**common, chunk_size=meta.chunk_size, data=data, checksum=crc32c.crc32c(data),
                               full_replace=True, chunk_chain_version=meta.chain_version)
        mutation = require(op.mutation, "the mutation an update forwards")
        if mutation.kind is UpdateKind.TRUNCATE:
            return ChainUpdate(**common, chunk_size=mutation.chunk_size, truncate=True,
                               truncate_length=mutation.length)
        data = mutation.data
        return ChainUpdate(**common, chunk_size=mutation.chunk_size, offset=mutation.offset, data=data,
                           checksum=checksum if checksum is not None else crc32c.crc32c(data))
