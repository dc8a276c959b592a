"""The Storage gRPC servicer: a thin shell over routing fences and the targets' engines.

Behaviour other components rely on:

* Every request is fenced by RoutingView.resolve (see routing_view.py):
  Unavailable before registration, StaleChainVersion, NotHead.
* BatchRead: at most limits.batch_read_ios_max IOs and at most
  ``batch_read_bytes_max`` bytes asked in total, else TooLarge for the whole
  call; otherwise one ReadResult per IO, in order, each with its own IoStatus
  (error name + message; empty on success). A read past the chunk's committed
  end returns the shorter data (possibly empty); a chunk that does not exist
  reads as empty data with chunk_length 0 and commit_version 0 (a hole: the
  client zero-fills up to the file length). ``checksum`` is the CRC32C of the
  returned data when verify_checksum is set. Stored bytes that fail their
  block CRC give ChecksumMismatch for that IO, never data.
* Write: chain head only; client CRC32C checked before storing; offset + len
  must fit in chunk_size; exactly-once per (client_id, channel, seqnum).
* TruncateChunk: see ChunkEngine.truncate (missing chunk + length 0 stays missing).
* RemoveChunks: end_index 0 means no upper bound; answers the count removed.
* QueryLastChunk: per query, found=False when the chain's target holds no chunk
  of the inode; else last_index (highest chunk index held), last_length (its
  committed length) and chunk_count (chunks of the inode on this target).
* Update: UNIMPLEMENTED until chain replication lands.
"""

from __future__ import annotations

import logging

import crc32c
import grpc

from fireflyfs.common import limits
from fireflyfs.common.errors import FfsError, Internal, InvalidArgument, TooLarge, error_name
from fireflyfs.common.rpc import map_servicer_errors
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2

from .chunk_engine import chunk_key
from .routing_view import RoutingView
from .target import Target

log = logging.getLogger(__name__)

# The reply must fit in one gRPC message with room for framing.
batch_read_bytes_max = limits.batch_read_reply_bytes_max
query_last_chunk_queries_max = limits.query_last_chunk_queries_max


class Unimplemented(Internal):
    """An RPC this node does not serve yet."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED


def _status(exc: FfsError) -> storage_pb2.IoStatus:
    return storage_pb2.IoStatus(error=error_name(exc), message=str(exc))


@map_servicer_errors
class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, node_id: int, targets: dict[int, Target], routing: RoutingView) -> None:
        self._node_id = node_id
        self._targets = targets
        self._routing = routing

    def _target(self, chain_id: int, chain_version: int, *, write: bool) -> Target:
        target_id = self._routing.resolve(chain_id, chain_version, write=write)
        target = self._targets.get(target_id)
        if target is None:
            raise Internal(f"routing names target {target_id} local to node {self._node_id}, "
                           f"but the node has no such target")
        return target

    def BatchRead(self, request: storage_pb2.BatchReadRequest, context) -> storage_pb2.BatchReadReply:
        ios = request.ios
        if len(ios) > limits.batch_read_ios_max:
            raise TooLarge(f"batch of {len(ios)} reads exceeds {limits.batch_read_ios_max}")
        asked = sum(io.length for io in ios)
        if asked > batch_read_bytes_max:
            raise TooLarge(f"batch asks {asked} bytes, more than {batch_read_bytes_max} per reply")
        reply = storage_pb2.BatchReadReply()
        for io in ios:
            result = reply.results.add()
            try:
                target = self._target(io.chain_id, io.chain_version, write=False)
                data, meta = target.engine.read(chunk_key(io.chunk.inode, io.chunk.index),
                                                io.offset, io.length)
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

    def Write(self, request: storage_pb2.WriteRequest, context) -> storage_pb2.WriteReply:
        target = self._target(request.chain_id, request.chain_version, write=True)
        outcome = target.write(chunk_key(request.chunk.inode, request.chunk.index), request.offset,
                               request.data, request.chunk_size, request.chain_version,
                               request.checksum, request.client_id, request.channel, request.seqnum)
        return storage_pb2.WriteReply(commit_version=outcome.commit_version,
                                      chunk_length=outcome.chunk_length,
                                      chunk_checksum=outcome.chunk_checksum)

    def Update(self, request: storage_pb2.UpdateRequest, context) -> storage_pb2.UpdateReply:
        raise Unimplemented("Storage.Update (chain forwarding) is not implemented yet: "
                            "chains have one replica")

    def TruncateChunk(self, request: storage_pb2.TruncateChunkRequest,
                      context) -> storage_pb2.TruncateChunkReply:
        target = self._target(request.chain_id, request.chain_version, write=True)
        meta = target.engine.truncate(chunk_key(request.chunk.inode, request.chunk.index),
                                      request.length, request.chunk_size, request.chain_version)
        if meta is None:
            return storage_pb2.TruncateChunkReply()
        return storage_pb2.TruncateChunkReply(commit_version=meta.commit_version,
                                              chunk_length=meta.length)

    def RemoveChunks(self, request: storage_pb2.RemoveChunksRequest,
                     context) -> storage_pb2.RemoveChunksReply:
        target = self._target(request.chain_id, request.chain_version, write=True)
        end = request.end_index or None
        if end is not None and end < request.begin_index:
            raise InvalidArgument(f"remove chunks [{request.begin_index}, {end}) of inode "
                                  f"{request.inode}: end before begin")
        removed = target.engine.remove_range(request.inode, request.begin_index, end)
        return storage_pb2.RemoveChunksReply(removed=removed)

    def QueryLastChunk(self, request: storage_pb2.QueryLastChunkRequest,
                       context) -> storage_pb2.QueryLastChunkReply:
        if len(request.queries) > query_last_chunk_queries_max:
            raise TooLarge(f"{len(request.queries)} last-chunk queries exceed "
                           f"{query_last_chunk_queries_max}")
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

    def SpaceInfo(self, request: types_pb2.Empty, context) -> storage_pb2.SpaceInfoReply:
        reply = storage_pb2.SpaceInfoReply()
        for target_id in sorted(self._targets):
            space = self._targets[target_id].space()
            reply.targets.add(target_id=target_id, capacity_bytes=space.capacity_bytes,
                              used_bytes=space.used_bytes, free_bytes=space.free_bytes,
                              chunk_count=space.chunk_count)
        return reply
