"""Streams over one file: a sequential reader with readahead and a write-behind writer.

SequentialReader: a front-to-back reader sends chunk read requests ahead
(``readahead_chunks`` chunks past the current read, each on its own bulk
connection, so the stripe's nodes work in parallel) and leaves the replies in
the kernel's socket buffers until the caller asks: then the bytes are
``recv_into`` the caller's buffer directly, CRC-checked as they arrive. The
readahead costs no copy and no memory of ours. A read that does not continue
where the last one ended drops the pipeline (its connections are closed, not
drained) and starts a new one. Any failure (a node gone, a stale chain, a
chunk mid-write, a bad CRC) drops the pipeline and reads the rest through
``StorageClient.read_into``, which owns retries and failover; so does a file
whose nodes have no bulk listener. Bytes that fail their CRC are reported to
the node that sent them (it repairs its copy) before the general path reads
them from a replica.

WriteBehind: buffered writes cut at chunk boundaries (every Storage write
fills a whole chunk, except at the ends), each full chunk sent on an IO thread
while the caller fills the next buffer, at most ``write_behind_chunks`` in
flight. The caller's bytes are copied once into a pooled chunk buffer (the
caller may reuse its buffer at once, and a retried write still has its data).
An error surfaces at the next write, flush or close; ``flush`` writes the
buffered tail and returns only when every chunk is acknowledged (committed,
and with the storage default durable, on every replica of its chain).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from concurrent.futures import Future

from fireflyfs.common.errors import ChecksumMismatch, FfsError
from fireflyfs.common.layout import Layout
from .buffers import ReadRequest, zero_fill
from .bulk_client import BulkConnection, ReplyStream
from .routing import Route

_pool_bytes_max = 64 * 1024 * 1024


class _BufferPool:
    """Reused chunk-sized bytearrays: no fresh (page-faulting) 4 MiB buffer per chunk written."""

    def __init__(self, bytes_max: int = _pool_bytes_max) -> None:
        self._lock = threading.Lock()
        self._free: dict[int, list[bytearray]] = {}
        self._bytes = 0
        self._bytes_max = bytes_max

    def get(self, size: int) -> bytearray:
        with self._lock:
            free = self._free.get(size)
            if free:
                self._bytes -= size
                return free.pop()
        return bytearray(size)

    def put(self, buffer: bytearray) -> None:
        with self._lock:
            if self._bytes + len(buffer) <= self._bytes_max:
                self._free.setdefault(len(buffer), []).append(buffer)
                self._bytes += len(buffer)


buffer_pool = _BufferPool()


def _after_fork_in_child() -> None:
    buffer_pool._lock = threading.Lock()   # a parent thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclasses.dataclass(slots=True)
class _Ahead:
    offset: int                    # file offset of the piece
    length: int                    # bytes of the file in it (the reply may be shorter: zeros follow)
    io: tuple[int, int, int, int, int, int]
    route: Route
    connection: BulkConnection
    stream: ReplyStream | None = None
    consumed: int = 0


class _NoBulk(Exception):
    """The chunk's node has no bulk listener (or bulk is off): use the general path."""


class SequentialReader:
    """Readahead over bulk connections for one open file (see the module docstring)."""

    def __init__(self, storage, inode_id: int, layout: Layout, file_length: int) -> None:
        self._storage = storage
        self._inode_id = inode_id
        self._layout = layout
        self._length = file_length
        self._window_bytes_max = max(0, storage.config.readahead_chunks) * layout.chunk_size
        self._window_bytes = 0        # grows while reads stay sequential, 0 after a jump
        self._ahead: collections.deque[_Ahead] = collections.deque()
        self._sent_end = 0
        self._last_end = -1
        self._bulk = storage.bulk is not None     # a bulk connection pool to stream from

    def readinto(self, offset: int, out: memoryview) -> int:
        """Fill out with bytes from offset (fewer at EOF); returns the count."""
        count = min(len(out), self._length - offset)
        if count <= 0:
            return 0
        out = out[:count]
        position = 0
        sequential = offset == self._last_end
        self._last_end = offset + count
        if sequential:
            self._window_bytes = min(self._window_bytes_max,
                                     max(2 * self._window_bytes, self._layout.chunk_size))
        else:
            self._window_bytes = 0
        if self._bulk:
            if not self._ahead or self._ahead[0].offset + self._ahead[0].consumed != offset:
                self.close()
                self._sent_end = offset
            try:
                while position < count:
                    self._send_ahead(offset + count)
                    head = self._ahead[0]
                    take = min(head.length - head.consumed, count - position)
                    self._deliver(head, out[position:position + take])
                    position += take
                    if head.consumed == head.length:
                        self._ahead.popleft()
                        self._release(head)
                self._send_ahead(offset + count)
                return count
            except _NoBulk:
                self._bulk = False
                self.close()
            except ChecksumMismatch:
                head = self._ahead[0] if self._ahead else None
                if head is not None and head.stream is not None:     # whole blocks the node did not check
                    self._storage.reporter.report(head.route, self._inode_id, head.io[3])
                self.close()    # the general path below reads another replica
            except FfsError:
                self.close()    # the general path below retries, fails over, or names the error
        failure = self._storage.read_into(
            [ReadRequest(self._inode_id, self._layout, self._length, offset + position, count - position)],
            [out[position:]])[0]
        if failure is not None:
            raise failure
        return count

    def _send_ahead(self, read_end: int) -> None:
        limit = min(self._length, read_end + self._window_bytes)
        chunk_size = self._layout.chunk_size
        storage = self._storage
        # Readahead asks for whole chunk pieces; a read with no window asks for its own bytes only.
        piece_end_max = limit if not self._window_bytes else self._length
        while self._sent_end < limit:
            index, within = divmod(self._sent_end, chunk_size)
            length = min(chunk_size - within, piece_end_max - self._sent_end)
            routes = storage.routing.serving_routes(storage.routing.chain_id_for(self._layout, index))
            route = storage.selector.pick(routes)
            if not route.bulk_address:
                storage.selector.done(route.node_id)
                raise _NoBulk()
            io = (route.chain_id, route.chain_version, self._inode_id, index, within, length)
            try:
                connection = storage.bulk.get(route.bulk_address)
                connection.send_read([io], capabilities=storage.capabilities.for_inodes([self._inode_id]))
            except FfsError:
                storage.selector.done(route.node_id)
                storage.selector.mark_failed(route.node_id)
                storage.bulk.forget(route.bulk_address)
                raise
            self._ahead.append(_Ahead(self._sent_end, length, io, route, connection))
            self._sent_end += length

    @staticmethod
    def _deliver(head: _Ahead, view: memoryview) -> None:
        if head.stream is None:
            head.stream = head.connection.begin_stream(head.io)
        stream = head.stream
        data = min(len(view), stream.remaining)
        if data:
            stream.recv_into(view[:data])
        if data < len(view):
            zero_fill(view[data:])     # a hole, or a chunk shorter than the file
        head.consumed += len(view)

    def _release(self, head: _Ahead) -> None:
        self._storage.selector.done(head.route.node_id)
        if head.stream is not None and head.stream.remaining == 0:
            self._storage.bulk.put(head.connection)
        else:
            head.connection.close()     # a reply still (partly) in flight: never reuse mid-frame

    def close(self) -> None:
        """Drop the readahead (connections with replies in flight are closed)."""
        while self._ahead:
            head = self._ahead.popleft()
            self._storage.selector.done(head.route.node_id)
            head.connection.close()


class WriteBehind:
    """Chunk-aligned buffered writes of one file with a window of chunk writes in flight."""

    def __init__(self, storage, inode_id: int, layout: Layout, offset: int) -> None:
        self._storage = storage
        self._inode_id = inode_id
        self._layout = layout
        self._window = max(1, storage.config.write_behind_chunks)
        self._start = offset                 # file offset of the buffer's first byte
        self._fill = 0
        self._buffer: bytearray | None = None
        self._inflight: collections.deque[tuple[Future, bytearray]] = collections.deque()
        self._error: BaseException | None = None
        self.acknowledged_end = offset       # every byte before it is committed (when nothing failed)

    @property
    def end(self) -> int:
        """File offset after the last byte written to this stream."""
        return self._start + self._fill

    def write(self, data) -> int:
        self._raise_error()
        view = memoryview(data).cast("B")
        size = len(view)
        chunk_size = self._layout.chunk_size
        while view:
            if self._buffer is None:
                self._buffer = buffer_pool.get(chunk_size)
            room = (self._start // chunk_size + 1) * chunk_size - self._start
            take = min(room - self._fill, len(view))
            self._buffer[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == room:
                self._submit()
        return size

    def _submit(self) -> None:
        buffer, fill, start = self._buffer, self._fill, self._start
        self._buffer, self._fill, self._start = None, 0, start + fill
        if buffer is None or not fill:
            if buffer is not None:
                buffer_pool.put(buffer)
            return
        while len(self._inflight) >= self._window:
            self._wait_oldest()
        executor = self._storage._pool.executor()
        future = executor.submit(self._storage.write, self._inode_id, self._layout, start,
                                 memoryview(buffer)[:fill])
        self._inflight.append((future, buffer))

    def _wait_oldest(self) -> None:
        future, buffer = self._inflight.popleft()
        try:
            future.result()
        except BaseException as exc:  # noqa: BLE001 - kept and raised at the next call
            self._error = self._error or exc
        buffer_pool.put(buffer)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Write the buffered tail and wait until everything written is acknowledged.

        Writing may go on afterwards: the next bytes fill the rest of the tail's
        chunk and go in a write of their own."""
        try:
            self._submit()
        finally:
            while self._inflight:
                self._wait_oldest()
        self._raise_error()
        self.acknowledged_end = self._start

    def abort(self) -> None:
        """Wait for the writes in flight and drop the buffered tail (after a failure)."""
        while self._inflight:
            self._wait_oldest()
        if self._buffer is not None:
            buffer_pool.put(self._buffer)
            self._buffer = None
