"""The Storage gRPC servicer: a thin shell over routing fences, the chain driver and the engines.

Behaviour other components rely on:

* Every request is fenced by RoutingView (see routing_view.py): Unavailable
  before registration or when the node has not reached mgmtd for half the
  heartbeat timeout, StaleChainVersion, NotHead. Reads need a SERVING target;
  chain writes accept SERVING (head) or SYNCING (successors) targets.
* BatchRead: at most limits.batch_read_ios_max IOs and at most
  ``batch_read_bytes_max`` bytes asked in total, else TooLarge for the whole
  call; otherwise one ReadResult per IO, in order, each with its own IoStatus
  (error name + message; empty on success). A read past the chunk's committed
  end returns the shorter data (possibly empty); a chunk that does not exist
  reads as empty data with chunk_length 0 and commit_version 0 (a hole: the
  client zero-fills up to the file length). A chunk with a pending update
  answers ChunkNotCommitted (retryable: ask again or ask the tail).
  ``checksum`` is the CRC32C of the returned data when verify_checksum is set.
  Stored bytes that fail their block CRC give ChecksumMismatch for that IO.
* Write: chain head only; client CRC32C checked before storing; offset + len
  must fit in chunk_size; exactly-once per (client_id, channel, seqnum); the
  reply comes after every replica of the chain committed (CRAQ, chain_driver).
  NoSpace when it would grow a chunk into the head target's free-space
  reserve (space_guard.py), or when a disk or map is full.
* SpaceInfo: per target capacity, chunk bytes, free bytes, chunk metadata map
  use, the reserve, and a warning while past the fill threshold.
* Update: chain-internal, from the predecessor (craq.py has the version rules).
* TruncateChunk: through the chain like a write (missing chunk + length 0 stays
  missing; an unchanged length is a no-op).
* RemoveChunks: end_index 0 means no upper bound; removed on every replica in
  chain order; answers the count removed on the head.
* QueryLastChunk: per query, found=False when the chain's target holds no chunk
  of the inode; else last_index, last_length and chunk_count on that target.
* GetChunkMetas: one target's chunk metadata, paged (fsck); not fenced. With
  verify, every committed chunk is re-read and its bytes checked against its
  own block CRCs (ChunkEngine.verify), so fsck sees rot the metadata hides.
* SyncStart / SyncDone / RemoveChunk: resync of a SYNCING target (RemoveChunk
  also serves fsck --repair on a SERVING target).
* ReportBadChunk: a reader's hint that a local target's chunk failed its CRCs;
  queued for repair (repair.py re-verifies before it changes anything), as is
  any chunk a BatchRead here finds bad. Not fenced: a hint needs no routing.
* ScrubStatus: scrub progress and repair counters per local target (scrub.py).
"""

from __future__ import annotations

import logging

import crc32c

from fireflyfs.common import capability, limits
from fireflyfs.common.errors import (ChecksumMismatch, FfsError, InvalidArgument, NotFound, StaleChainVersion,
                                     TooLarge, error_name)
from fireflyfs.common.rpc import map_servicer_errors
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2

from . import access
from .chain_driver import ChainDriver, meta_info
from .chain_update import ChainUpdate
from .chunk_meta import chunk_key
from .repair import RepairQueue, RepairSource
from .routing_view import RoutingView
from .scrub import ScrubProgress, Scrubber
from .target import Target

log = logging.getLogger(__name__)

# The reply must fit in one gRPC message with room for framing.
batch_read_bytes_max = limits.batch_read_reply_bytes_max
query_last_chunk_queries_max = limits.query_last_chunk_queries_max
chunk_metas_page_default = 1000
chunk_metas_page_max = 10000
# A verifying page re-reads chunks: it ends after this many bytes, so one call stays short.
chunk_metas_verify_bytes_max = limits.chunk_metas_verify_bytes_max
chunk_metas_bad_blocks_max = limits.chunk_metas_bad_blocks_max


def _status(exc: FfsError) -> storage_pb2.IoStatus:
    return storage_pb2.IoStatus(error=error_name(exc), message=str(exc))


@map_servicer_errors
class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, node_id: int, targets: dict[int, Target], routing: RoutingView,
                 driver: ChainDriver, repairs: RepairQueue | None = None,
                 scrubber: Scrubber | None = None, capabilities: access.CapabilityGate | None = None) -> None:
        self._node_id = node_id
        # Clients' reads and writes need capabilities; None (in-process servicer tests): none checked.
        self._capabilities = capabilities or access.CapabilityGate(None)
        self._targets = targets
        self._routing = routing
        self._driver = driver
        self._repairs = repairs
        self._scrubber = scrubber

    def _target(self, chain_id: int, chain_version: int, *, write: bool) -> Target:
        return self._local(self._routing.resolve(chain_id, chain_version, write=write))

    def _local(self, target_id: int) -> Target:
        target = self._targets.get(target_id)
        if target is None:
            raise NotFound(f"target {target_id} is not on storage node {self._node_id}")
        return target

    def _member(self, chain_id: int, chain_version: int, target_id: int, states: tuple[int, ...]) -> Target:
        """A local target of the chain at this version, in one of states."""
        chain = self._routing.checked_chain(chain_id, chain_version)
        target = self._local(target_id)
        state = chain.state_of(target_id)
        if state not in states:
            raise StaleChainVersion(
                f"chain {chain_id} version {chain_version}: target {target_id} is "
                f"{types_pb2.PublicTargetState.Name(state or 0)}, expected "
                f"{'/'.join(types_pb2.PublicTargetState.Name(s) for s in states)}")
        return target

    # ------------------------------------------------------------------ reads

    def BatchRead(self, request: storage_pb2.BatchReadRequest, context) -> storage_pb2.BatchReadReply:
        ios = request.ios
        if len(ios) > limits.batch_read_ios_max:
            raise TooLarge(f"batch of {len(ios)} reads exceeds {limits.batch_read_ios_max}")
        asked = sum(io.length for io in ios)
        if asked > batch_read_bytes_max:
            raise TooLarge(f"batch asks {asked} bytes, more than {batch_read_bytes_max} per reply")
        self._capabilities.require(request.capabilities, (io.chunk.inode for io in ios), capability.READ,
                                   "reading chunks")
        reply = storage_pb2.BatchReadReply()
        for io in ios:
            result = reply.results.add()
            try:
                target = self._target(io.chain_id, io.chain_version, write=False)
                key = chunk_key(io.chunk.inode, io.chunk.index)
                try:
                    data, meta = target.engine.read(key, io.offset, io.length)
                except ChecksumMismatch:
                    if self._repairs is not None:
                        self._repairs.offer(target.id, key, RepairSource.READ)
                    raise
            except FfsError as exc:
                result.status.CopyFrom(_status(exc))
                continue
            result.data = data
            if request.verify_checksum:
                result.checksum = crc32c.crc32c(data)
            if meta is not None:
                result.chunk_length = meta.length
                result.commit_version = meta.commit_version
        return reply

    def QueryLastChunk(self, request: storage_pb2.QueryLastChunkRequest,
                       context) -> storage_pb2.QueryLastChunkReply:
        if len(request.queries) > query_last_chunk_queries_max:
            raise TooLarge(f"{len(request.queries)} last-chunk queries exceed "
                           f"{query_last_chunk_queries_max}")
        self._capabilities.require(request.capabilities, (query.inode for query in request.queries),
                                   capability.READ, "querying last chunks")
        reply = storage_pb2.QueryLastChunkReply()
        for query in request.queries:
            result = reply.results.add()
            try:
                target = self._target(query.chain_id, query.chain_version, write=False)
                last = target.engine.last_chunk(query.inode)
            except FfsError as exc:
                result.status.CopyFrom(_status(exc))
                continue
            if last is not None:
                result.found = True
                result.last_index = last.last_index
                result.last_length = last.last_length
                result.chunk_count = last.chunk_count
        return reply

    # ------------------------------------------------------------------ chain writes

    def Write(self, request: storage_pb2.WriteRequest, context) -> storage_pb2.WriteReply:
        self._capabilities.require((request.capability,), (request.chunk.inode,), capability.WRITE,
                                   "writing a chunk")
        target = self._target(request.chain_id, request.chain_version, write=True)
        outcome = self._driver.write(target, request)
        return storage_pb2.WriteReply(commit_version=outcome.commit_version,
                                      chunk_length=outcome.chunk_length,
                                      chunk_checksum=outcome.chunk_checksum)

    def Update(self, request: storage_pb2.UpdateRequest, context) -> storage_pb2.UpdateReply:
        state = self._driver.forwarded(self._targets, ChainUpdate.from_proto(request),
                                       caller_active=context.is_active)
        return storage_pb2.UpdateReply(commit_version=state.commit_version,
                                       chunk_checksum=state.checksum, chunk_length=state.length)

    def TruncateChunk(self, request: storage_pb2.TruncateChunkRequest,
                      context) -> storage_pb2.TruncateChunkReply:
        access.require_node("truncating a chunk")
        target = self._target(request.chain_id, request.chain_version, write=True)
        state = self._driver.truncate(target, request)
        if state is None:
            return storage_pb2.TruncateChunkReply()
        return storage_pb2.TruncateChunkReply(commit_version=state.commit_version,
                                              chunk_length=state.length)

    def RemoveChunks(self, request: storage_pb2.RemoveChunksRequest,
                     context) -> storage_pb2.RemoveChunksReply:
        if request.from_target:
            access.require_node("forwarding a chunk removal")
            target = self._member(request.chain_id, request.chain_version, request.to_target,
                                  (types_pb2.SERVING, types_pb2.SYNCING))
            access.require_chain_peer(self._routing, request.to_target, "forwarding a chunk removal")
        else:
            access.require_node("removing chunks")
            target = self._target(request.chain_id, request.chain_version, write=True)
        end = request.end_index or None
        if end is not None and end < request.begin_index:
            raise InvalidArgument(f"remove chunks [{request.begin_index}, {end}) of inode "
                                  f"{request.inode}: end before begin")
        return storage_pb2.RemoveChunksReply(removed=self._driver.remove_chunks(target, request))

    # ------------------------------------------------------------------ fsck and resync

    def GetChunkMetas(self, request: storage_pb2.GetChunkMetasRequest,
                      context) -> storage_pb2.GetChunkMetasReply:
        access.require_chain_peer(self._routing, request.target_id, "listing chunk metadata", meta_too=True,
                                  admin_too=True)
        target = self._local(request.target_id)
        reply = self._metas_page(target, request.start_after if request.HasField("start_after") else None,
                                 request.limit, storage_pb2.GetChunkMetasReply)
        if request.verify:
            self._verify_page(target, reply)
        return reply

    def SyncStart(self, request: storage_pb2.SyncStartRequest, context) -> storage_pb2.SyncStartReply:
        access.require_node("starting a resync")
        target = self._member(request.chain_id, request.chain_version, request.target_id,
                              (types_pb2.SYNCING,))
        access.require_chain_peer(self._routing, request.target_id, "starting a resync")
        return self._metas_page(target, request.start_after if request.HasField("start_after") else None,
                                request.limit, storage_pb2.SyncStartReply)

    def SyncDone(self, request: storage_pb2.SyncDoneRequest, context) -> types_pb2.Empty:
        access.require_node("ending a resync")
        target = self._member(request.chain_id, request.chain_version, request.target_id,
                              (types_pb2.SYNCING,))
        access.require_chain_peer(self._routing, request.target_id, "ending a resync")
        target.local.sync_done()
        self._routing.refresh_wanted.set()   # heartbeat soon: mgmtd promotes it to SERVING
        return types_pb2.Empty()

    def RemoveChunk(self, request: storage_pb2.RemoveChunkRequest, context) -> types_pb2.Empty:
        access.require_node("removing one replica's chunk", admin_too=True)   # admins: fsck --repair
        target = self._member(request.chain_id, request.chain_version, request.target_id,
                              (types_pb2.SERVING, types_pb2.SYNCING))
        access.require_chain_peer(self._routing, request.target_id, "removing one replica's chunk",
                                  admin_too=True)
        removed = self._driver.remove_one(target, chunk_key(request.chunk.inode, request.chunk.index))
        log.info("target %d: removed chunk %d:%d on request (%s)", target.id, request.chunk.inode,
                 request.chunk.index, "existed" if removed else "absent")
        return types_pb2.Empty()

    @staticmethod
    def _metas_page(target: Target, start_after, limit: int, reply_type):
        if limit > chunk_metas_page_max:
            raise TooLarge(f"chunk metas page of {limit} exceeds {chunk_metas_page_max}")
        limit = limit or chunk_metas_page_default
        start = chunk_key(start_after.inode, start_after.index) if start_after is not None else None
        page = target.engine.metas_after(start, limit + 1)
        reply = reply_type(more=len(page) > limit)
        for key, meta in page[:limit]:
            reply.metas.append(meta_info(key, meta))
        return reply

    @staticmethod
    def _verify_page(target: Target, reply: storage_pb2.GetChunkMetasReply) -> None:
        """Re-read each chunk of the page; cut the page once chunk_metas_verify_bytes_max are read.

        Each verified entry is rewritten from the meta the verdict was taken
        against, so metadata and verdict always describe the same version.
        """
        read_bytes = 0
        for position, info in enumerate(reply.metas):
            if read_bytes >= chunk_metas_verify_bytes_max:
                del reply.metas[position:]
                reply.more = True
                return
            key = chunk_key(info.chunk.inode, info.chunk.index)
            verdict = target.engine.verify(key)
            if verdict is None:
                continue          # pending, gone, or rewritten while we read: reported unverified
            read_bytes += verdict.meta.length
            info.CopyFrom(meta_info(key, verdict.meta))
            info.verified = True
            info.content_crc = verdict.content_crc
            info.bad_block_count = len(verdict.bad_blocks)
            info.bad_blocks.extend(verdict.bad_blocks[:chunk_metas_bad_blocks_max])
            if verdict.bad_blocks:
                log.warning("target %d: chunk %d:%d has %d rotten blocks (first %s)", target.id,
                            info.chunk.inode, info.chunk.index, len(verdict.bad_blocks),
                            list(verdict.bad_blocks[:chunk_metas_bad_blocks_max]))

    def SpaceInfo(self, request: types_pb2.Empty, context) -> storage_pb2.SpaceInfoReply:
        reply = storage_pb2.SpaceInfoReply()
        for target_id in sorted(self._targets):
            target = self._targets[target_id]
            space = target.space()
            reply.targets.add(target_id=target_id, capacity_bytes=space.capacity_bytes,
                              used_bytes=space.used_bytes, free_bytes=space.free_bytes,
                              chunk_count=space.chunk_count, map_used_bytes=space.map_used_bytes,
                              map_bytes=space.map_bytes, map_bytes_max=space.map_bytes_max,
                              reserve_bytes=target.space_guard.reserve_bytes(space),
                              warning=target.space_warning())
        return reply

    # ------------------------------------------------------------------ integrity

    def ReportBadChunk(self, request: storage_pb2.ReportBadChunkRequest,
                       context) -> storage_pb2.ReportBadChunkReply:
        self._capabilities.require((request.capability,), (request.chunk.inode,), capability.READ,
                                   "reporting a bad chunk")
        target = self._local(request.target_id)
        if self._repairs is None:
            return storage_pb2.ReportBadChunkReply(queued=False)
        key = chunk_key(request.chunk.inode, request.chunk.index)
        return storage_pb2.ReportBadChunkReply(queued=self._repairs.offer(target.id, key, RepairSource.REPORT))

    def ScrubStatus(self, request: types_pb2.Empty, context) -> storage_pb2.ScrubStatusReply:
        progress = self._scrubber.snapshot() if self._scrubber is not None else {}
        reply = storage_pb2.ScrubStatusReply(rate_bytes_per_s=self._scrubber.bytes_per_s if self._scrubber else 0)
        for target_id in sorted(self._targets):
            scrub = progress.get(target_id, ScrubProgress())
            status = reply.targets.add(
                target_id=target_id, pass_started_s=scrub.pass_started_s,
                pass_chunks_checked=scrub.pass_chunks_checked, pass_bytes_checked=scrub.pass_bytes_checked,
                pass_bytes_total=scrub.pass_bytes_total, last_pass_ended_s=scrub.last_pass_ended_s,
                last_pass_duration_s=scrub.last_pass_duration_s, passes_completed=scrub.passes_completed)
            if self._repairs is not None:
                counters = self._repairs.counters[target_id]
                status.bad_found, status.repaired = counters.bad_found, counters.repaired
                status.unrepairable = counters.unrepairable
                status.reports_received = counters.reports_received
                status.reports_unconfirmed = counters.reports_unconfirmed
                status.repairs_queued = self._repairs.queued(target_id)
        return reply
