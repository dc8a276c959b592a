"""The storage transport over gRPC: Storage.* RPCs through the process's ChannelPool.

Every call maps gRPC failures to FfsError in one place (``call``): a status
the server set comes back as the class it raised; a node that is down or did
not answer in time becomes ``NodeUnreachable``, and an UNAVAILABLE status also
drops the channel (the node may have restarted on a new port). A read carries
CRC32C of the returned bytes when ``verify_checksums`` is set, checked here:
a mismatch in transit is that piece's ChecksumMismatch.
"""

from __future__ import annotations

import crc32c
import grpc

from fireflyfs.common import errors, limits
from fireflyfs.common.errors import ChecksumMismatch, Retryable, Unavailable
from fireflyfs.common.rpc import rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from .channels import ChannelPool
from .config import ClientConfig
from .routing import Route
from .capabilities import Capabilities
from .storage_transport import LastChunk, NodeUnreachable, ReadIO, ReadLimits, ReadOutcome, WriteAck, describe


class GrpcStorageTransport:
    """StorageTransport over Storage.* RPCs; each BatchRead blocks, so reads are not pipelined."""

    def __init__(self, pool: ChannelPool, config: ClientConfig, verify_checksums: bool = True,
                 capabilities: Capabilities | None = None) -> None:
        self.capabilities = capabilities or Capabilities()   # what storage wants to see (common/capability.py)
        self._pool = pool
        self._config = config
        self._verify_checksums = verify_checksums
        self._read_limits = ReadLimits(limits.batch_read_request_bytes_target, limits.batch_read_ios_max,
                                       pipelined=False)

    def call(self, route: Route, method: str, request, timeout_s: float | None = None):
        """One Storage RPC to route's node; a Retryable failure names the method and the route."""
        stub = self._pool.stub(route.address, storage_pb2_grpc.StorageStub)
        try:
            with rpc_errors_mapped():
                return getattr(stub, method)(request, timeout=timeout_s or self._config.storage_other_timeout_s)
        except Retryable as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAVAILABLE:
                self._pool.forget(route.address)   # it may have restarted elsewhere: reconnect
            kind = NodeUnreachable if isinstance(exc, Unavailable) else type(exc)
            raise kind(f"{method} on {describe(route)}: {exc}") from exc

    # ---- reads ------------------------------------------------------------

    def read_limits(self, route: Route) -> ReadLimits:
        return self._read_limits

    def send_read(self, route: Route, ios: list[ReadIO]) -> storage_pb2.BatchReadRequest:
        """Nothing goes out yet: the BatchRead is one blocking call, made by receive_read."""
        return storage_pb2.BatchReadRequest(verify_checksum=self._verify_checksums, ios=[
            storage_pb2.ReadIO(chain_id=chain_id, chain_version=chain_version,
                               chunk=types_pb2.ChunkId(inode=inode, index=index), offset=offset, length=length)
            for chain_id, chain_version, inode, index, offset, length in ios],
            capabilities=self.capabilities.for_inodes(io[2] for io in ios))

    def receive_read(self, route: Route, sent: storage_pb2.BatchReadRequest, ios: list[ReadIO],
                     views: list[memoryview]) -> list[ReadOutcome]:
        reply = self.call(route, "BatchRead", sent, self._config.storage_read_timeout_s)
        if len(reply.results) != len(ios):
            raise errors.Internal(f"BatchRead from {route.address}: {len(reply.results)} results "
                                  f"for {len(ios)} reads")
        outcomes: list[ReadOutcome] = []
        for result, view in zip(reply.results, views):
            if result.status.error:
                outcomes.append(ReadOutcome(error=errors.error_from_name(result.status.error,
                                                                         result.status.message)))
                continue
            data = result.data
            if self._verify_checksums and result.checksum != crc32c.crc32c(data):
                outcomes.append(ReadOutcome(error=ChecksumMismatch("CRC32C mismatch in transit")))
                continue
            count = min(len(data), len(view))
            view[:count] = memoryview(data)[:count]
            outcomes.append(ReadOutcome(count, result.chunk_length, result.commit_version))
        return outcomes

    # ---- writes and control calls -------------------------------------------

    def write(self, route: Route, inode_id: int, chunk_index: int, offset: int, data: memoryview,
              checksum: int, chunk_size: int, client_id: str, channel: int, seqnum: int) -> WriteAck:
        request = storage_pb2.WriteRequest(
            chain_id=route.chain_id, chain_version=route.chain_version,
            chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index), offset=offset,
            data=data if isinstance(data, bytes) else bytes(data), checksum=checksum, chunk_size=chunk_size,
            client_id=client_id, channel=channel, seqnum=seqnum,
            capability=self.capabilities.get(inode_id, write=True))
        reply = self.call(route, "Write", request, self._config.storage_write_timeout_s)
        return WriteAck(reply.commit_version, reply.chunk_length, reply.chunk_checksum)

    def truncate_chunk(self, route: Route, inode_id: int, chunk_index: int, length: int,
                       chunk_size: int) -> None:
        self.call(route, "TruncateChunk", storage_pb2.TruncateChunkRequest(
            chain_id=route.chain_id, chain_version=route.chain_version,
            chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index), length=length, chunk_size=chunk_size))

    def remove_chunks(self, route: Route, inode_id: int, begin_index: int, end_index: int = 0) -> int:
        return self.call(route, "RemoveChunks", storage_pb2.RemoveChunksRequest(
            chain_id=route.chain_id, chain_version=route.chain_version, inode=inode_id,
            begin_index=begin_index, end_index=end_index)).removed

    def query_last_chunks(self, routes: list[Route], inode_id: int) -> list[LastChunk | None]:
        request = storage_pb2.QueryLastChunkRequest(queries=[
            storage_pb2.LastChunkQuery(chain_id=r.chain_id, chain_version=r.chain_version, inode=inode_id)
            for r in routes], capabilities=self.capabilities.for_inodes([inode_id]))
        return last_chunks_from_reply(routes, self.call(routes[0], "QueryLastChunk", request))

    def report_bad_chunk(self, route: Route, inode_id: int, chunk_index: int) -> None:
        self.call(route, "ReportBadChunk", storage_pb2.ReportBadChunkRequest(
            target_id=route.target_id, chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index),
            capability=self.capabilities.get(inode_id)))


def last_chunks_from_reply(routes: list[Route], reply: storage_pb2.QueryLastChunkReply) -> list[LastChunk | None]:
    """Each route's last chunk (None: it holds none), or the first per-chain error a reply carries."""
    found: list[LastChunk | None] = []
    for route, result in zip(routes, reply.results):
        if result.status.error:
            raise errors.error_from_name(result.status.error,
                                         f"QueryLastChunk on {describe(route)}: {result.status.message}")
        found.append(LastChunk(result.last_index, result.last_length) if result.found else None)
    return found
