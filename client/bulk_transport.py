"""The storage transport over the nodes' bulk listeners, with gRPC where there is none.

Reads and chunk writes to a node that advertises a bulk listener
(``Route.bulk_address``) go over a pooled ``BulkConnection`` (bulk_client.py):
a read request is sent at once and its reply left in the socket until the
client asks for it, so the client keeps several requests in flight from one
thread (``ReadLimits.pipelined``), each reply received straight into the
caller's buffer with its CRC32C checked. Everything else (the control calls,
and nodes without a bulk listener) goes to the gRPC transport. A connection
that broke is closed, the node's idle ones are dropped, and the failure is
``NodeUnreachable``; a connection whose request merely failed (an error
reply) goes back to the pool.

With request-to-send on (``ClientConfig.rts_enabled``, client/rts.py) every
read asks the server to wait for a permit of this process's limiter.

The connection pools are per process and timeout (``shared_bulk_pool``); a
forked child keeps the pool objects and each drops the parent's sockets on
first use.
"""

from __future__ import annotations

import os
import threading

from fireflyfs.common.errors import FfsError
from .bulk_client import BulkConnection, BulkPool, BulkTransportError
from .config import ClientConfig
from .grpc_transport import GrpcStorageTransport
from .routing import Route
from .rts import limiter_for as rts_limiter_for
from .storage_transport import LastChunk, NodeUnreachable, ReadIO, ReadLimits, ReadOutcome, WriteAck, describe


class BulkStorageTransport:
    """StorageTransport over bulk connections for reads and writes, gRPC for the rest."""

    def __init__(self, pool: BulkPool, grpc: GrpcStorageTransport, config: ClientConfig) -> None:
        self.pool = pool
        self.grpc = grpc
        self.rts = rts_limiter_for(config)     # request-to-send permits (None: off)
        self._read_limits = ReadLimits(config.bulk_read_bytes_max, config.bulk_read_ios_max, pipelined=True)

    def _broken(self, what: str, route: Route, exc: BulkTransportError) -> NodeUnreachable:
        self.pool.forget(route.bulk_address)
        return NodeUnreachable(f"{what} on {describe(route)}: {exc}")

    # ---- reads ------------------------------------------------------------

    def read_limits(self, route: Route) -> ReadLimits:
        return self._read_limits if route.bulk_address else self.grpc.read_limits(route)

    def send_read(self, route: Route, ios: list[ReadIO]):
        if not route.bulk_address:
            return self.grpc.send_read(route, ios)
        try:
            connection = self.pool.get(route.bulk_address)
            connection.send_read(ios, self.rts, self.grpc.capabilities.for_inodes(io[2] for io in ios))
        except BulkTransportError as exc:
            raise self._broken("BatchRead", route, exc) from exc
        return connection

    def receive_read(self, route: Route, sent, ios: list[ReadIO], views: list[memoryview]) -> list[ReadOutcome]:
        if type(sent) is not BulkConnection:
            return self.grpc.receive_read(route, sent, ios, views)
        try:
            outcomes = sent.recv_read(ios, views)
        except BulkTransportError as exc:
            raise self._broken("BatchRead", route, exc) from exc
        except FfsError:     # the whole request failed (a fence, TooLarge, ...): the connection is fine
            self.pool.put(sent)
            raise
        self.pool.put(sent)
        return outcomes

    # ---- writes and control calls -------------------------------------------

    def write(self, route: Route, inode_id: int, chunk_index: int, offset: int, data: memoryview,
              checksum: int, chunk_size: int, client_id: str, channel: int, seqnum: int) -> WriteAck:
        if not route.bulk_address:
            return self.grpc.write(route, inode_id, chunk_index, offset, data, checksum, chunk_size, client_id,
                                   channel, seqnum)
        try:
            connection = self.pool.get(route.bulk_address)
            commit_version, chunk_length, chunk_checksum = connection.write(
                route.chain_id, route.chain_version, inode_id, chunk_index, offset, data, checksum, chunk_size,
                client_id.encode(), channel, seqnum, self.grpc.capabilities.get(inode_id, write=True))
        except BulkTransportError as exc:
            raise self._broken("Write", route, exc) from exc
        except FfsError as exc:
            self.pool.put(connection)
            raise type(exc)(f"Write on {describe(route)}: {exc}") from exc
        self.pool.put(connection)
        return WriteAck(commit_version, chunk_length, chunk_checksum)

    def truncate_chunk(self, route: Route, inode_id: int, chunk_index: int, length: int,
                       chunk_size: int) -> None:
        self.grpc.truncate_chunk(route, inode_id, chunk_index, length, chunk_size)

    def remove_chunks(self, route: Route, inode_id: int, begin_index: int, end_index: int = 0) -> int:
        return self.grpc.remove_chunks(route, inode_id, begin_index, end_index)

    def query_last_chunks(self, routes: list[Route], inode_id: int) -> list[LastChunk | None]:
        return self.grpc.query_last_chunks(routes, inode_id)

    def report_bad_chunk(self, route: Route, inode_id: int, chunk_index: int) -> None:
        self.grpc.report_bad_chunk(route, inode_id, chunk_index)


_bulk_pools: dict[float, BulkPool] = {}
_bulk_pools_lock = threading.Lock()


def shared_bulk_pool(timeout_s: float) -> BulkPool:
    """One pool of bulk connections per process (and timeout), shared by every client in it.

    A forked child keeps the pool objects; each drops the parent's sockets on first use.
    """
    pool = _bulk_pools.get(timeout_s)
    if pool is None:
        with _bulk_pools_lock:
            pool = _bulk_pools.setdefault(timeout_s, BulkPool(timeout_s))
    return pool


def _after_fork_in_child() -> None:
    global _bulk_pools_lock
    _bulk_pools_lock = threading.Lock()   # a parent thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)
