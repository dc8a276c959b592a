"""Chunk IO against storage nodes: the data path, with no metadata service in it.

StorageClient is the layer above one storage transport (storage_transport.py:
bulk listeners with gRPC where there is none, in production; gRPC alone with
``bulk_enabled=0`` (FFS_CLIENT_BULK_ENABLED=0); an in-process one in tests).
It owns what spans nodes and attempts; the transport only carries one request
to one node.

A file range is split into chunk pieces by the layout math and each piece
routed to its chain (RoutingCache; one lookup per chain and round). Pieces for
one node travel together, cut into requests under the transport's
``ReadLimits``. Pipelined requests (bulk) are sent from the calling thread
ahead of their replies, at most ``node_requests_inflight_max`` per node and
``requests_inflight_max`` in total (ClientConfig), and each reply is received
straight into the caller's buffer, CRC32C checked against the stored block
checksums; the others (gRPC) run on the IO threads meanwhile. Writes go to the
chain head, one write per chunk piece with its CRC32C, chunks in parallel on
the IO threads (at most ``node_requests_inflight_max`` per node); the head
answers only after every replica of the chain committed, and only that answer
acknowledges the write.

Failover (CRAQ, 3FS's client rules):
- reads pick, per piece, the SERVING replica whose node has the fewest of our
  requests outstanding (ReplicaSelector); a node that just failed (the
  transport said ``NodeUnreachable``) is skipped while another serves;
- a chunk mid-write answers ChunkNotCommitted: a short pause and the read is
  asked again, from the tail (which commits first) after a couple of tries;
- bytes that fail their CRC32C (the node's own check, the check in transit,
  or the bulk path's end-to-end check of whole blocks) are read again at once
  from another serving replica; only when every replica failed (a lone
  replica: twice) does that piece's request fail with ChecksumMismatch. Bad
  bytes the node could not have seen (bulk's unverified whole blocks) are
  reported to it off the read path (bad_replicas.py), and it repairs its copy;
- StaleChainVersion, NotHead, Unavailable, deadlines and broken connections
  refresh the routing and retry with exponential backoff until
  ``retry_time_s`` has passed, then raise an error naming the chain, target
  and node that failed last.

Writes carry (client_id, channel, seqnum) so a retried write is applied at
most once: each in-flight write holds a channel, and a channel's seqnum only
grows. This class is also used by the metadata service (truncate, remove,
copy, length recovery).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import Callable, Iterable, Iterator, TypeVar

import crc32c

from fireflyfs.common import errors
from fireflyfs.common.errors import ChecksumMismatch, ChunkNotCommitted, FfsError, Retryable, Unavailable
from fireflyfs.common.layout import Layout
from .buffers import ReadRequest, as_bytes, new_bytes, request_size, zero_fill
from .bad_replicas import BadReplicaReporter
from .bulk_client import BulkPool, BulkTransportError, small_piece_bytes_max
from .bulk_transport import BulkStorageTransport, shared_bulk_pool
from .capabilities import Capabilities
from .channels import ChannelPool, shared_pool
from .config import ClientConfig
from .grpc_transport import GrpcStorageTransport
from .replica_select import ReplicaSelector
from .retry import RetryBudget
from .routing import Route, RoutingCache
from .storage_transport import NodeUnreachable, ReadIO, StorageTransport, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

copy_window_chunks = 4


@dataclasses.dataclass(slots=True)
class _Piece:
    request: int          # index into the output buffers
    out_offset: int       # where the piece's bytes go in that buffer
    inode_id: int
    layout: Layout
    chunk_index: int
    offset: int           # within the chunk
    length: int
    not_committed: int = 0   # ChunkNotCommitted answers so far
    checksum_failures: int = 0   # replies whose bytes failed their CRC (bad bytes, or a racing truncate)
    bad_targets: tuple[int, ...] = ()      # replicas whose bytes failed: read from the others
    checksum_error: FfsError | None = None   # the last such failure, raised when no replica is left


_Batch = list[tuple[_Piece, Route]]      # one read request: pieces for one node, each with its route
_BatchResult = tuple[list[_Piece], list[Retryable]]    # (pieces to retry, why)


class _WriteChannels:
    """Exactly-once slots: a free list of channel ids and a growing seqnum per channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._seqnums: dict[int, int] = {}

    def acquire(self) -> tuple[int, int]:
        with self._lock:
            channel = self._free.pop() if self._free else len(self._seqnums) + 1
            seqnum = self._seqnums.get(channel, 0) + 1
            self._seqnums[channel] = seqnum
            return channel, seqnum

    def release(self, channel: int) -> None:
        with self._lock:
            self._free.append(channel)


class StorageClient:
    """Reads and writes file chunks directly on storage nodes.

    transport: what carries requests (default: bulk with gRPC fallback, or gRPC
    alone when ``config.bulk_enabled`` is 0). pool: the gRPC channels and the IO
    threads that run parallel requests.
    """

    def __init__(self, routing: RoutingCache, client_id: str, pool: ChannelPool | None = None,
                 config: ClientConfig | None = None, retry_time_s: float | None = None,
                 verify_checksums: bool = True,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 selector: ReplicaSelector | None = None,
                 transport: StorageTransport | None = None,
                 capabilities: Capabilities | None = None) -> None:
        config = config or ClientConfig.from_env()
        if retry_time_s is not None:
            config = dataclasses.replace(config, retry_time_s=retry_time_s)
        self.routing = routing
        self.client_id = client_id
        self.config = config
        self._pool = pool or shared_pool()
        self._sleep = sleep
        self._clock = clock
        self.selector = selector or ReplicaSelector(config.failed_node_avoid_s, clock)
        self._channels = _WriteChannels()
        # What storage wants to see for a client's reads and writes (common/capability.py); the
        # FfsClient passes its cache, filled by opens and renewed from meta.
        self.capabilities = capabilities or Capabilities()
        self.grpc = GrpcStorageTransport(self._pool, config, verify_checksums, self.capabilities)
        if transport is None:
            transport = self.grpc
            if config.bulk_enabled:
                timeout_s = max(config.storage_read_timeout_s, config.storage_write_timeout_s)
                transport = BulkStorageTransport(shared_bulk_pool(timeout_s), self.grpc, config)
        self.transport: StorageTransport = transport
        self.reporter = BadReplicaReporter(self.transport.report_bad_chunk,
                                           lambda send: self._pool.executor().submit(send), clock)
        # SequentialReader (streams.py) streams readahead over these connections; None: no bulk transport.
        self.bulk: BulkPool | None = transport.pool if isinstance(transport, BulkStorageTransport) else None
        self._node_slots: dict[int, threading.BoundedSemaphore] = {}   # chunk writes in flight per node
        self._node_slots_lock = threading.Lock()

    @classmethod
    def for_mgmtd(cls, mgmtd_address: str, client_id: str, **kwargs) -> "StorageClient":
        pool = kwargs.get("pool") or shared_pool()
        config = kwargs.get("config") or ClientConfig.from_env()
        kwargs["config"] = config
        return cls(RoutingCache.for_mgmtd(mgmtd_address, pool, config.mgmtd_timeout_s), client_id, **kwargs)

    # ---- plumbing -------------------------------------------------------

    def _unreachable(self, route: Route, exc: NodeUnreachable) -> Unavailable:
        """The node is avoided for a while; the caller sees Unavailable, as for any other outage."""
        self.selector.mark_failed(route.node_id)
        return Unavailable(str(exc))

    @contextlib.contextmanager
    def _reaching(self, route: Route) -> Iterator[None]:
        try:
            yield
        except NodeUnreachable as exc:
            raise self._unreachable(route, exc) from exc

    def call(self, route: Route, method: str, request, timeout_s: float | None = None):
        """One Storage RPC by name over gRPC, for tools that need more than the data path (fsck)."""
        with self._reaching(route):
            return self.grpc.call(route, method, request, timeout_s)

    def _refresh_routing(self) -> None:
        try:
            self.routing.refresh()
        except Retryable:
            pass  # mgmtd unreachable too: keep the old routing, try again

    def retrying(self, operation: Callable[[], T], what: str) -> T:
        """Run operation until it succeeds, a non-retryable error, or the retry budget is spent."""
        budget = RetryBudget(what, self.config, clock=self._clock, sleep=self._sleep)
        while True:
            try:
                return operation()
            except ChunkNotCommitted as exc:
                budget.pause(exc)
            except Retryable as exc:
                log.info("%s: %s: %s; refreshing routing and retrying", what, type(exc).__name__, exc)
                budget.backoff(exc)
                self._refresh_routing()

    def _parallel(self, calls: list[Callable[[], T]]) -> list[T]:
        """Run calls in the IO pool (inline when there is only one); first error wins."""
        if len(calls) == 1:
            return [calls[0]()]
        executor = self._pool.executor()
        futures: list[Future] = [executor.submit(call) for call in calls]
        results, first_error = [], None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                results.append(None)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results

    @contextlib.contextmanager
    def _node_slot(self, node_id: int) -> Iterator[None]:
        """At most node_requests_inflight_max chunk writes of this client to one node at a time."""
        slots = self._node_slots.get(node_id)
        if slots is None:
            with self._node_slots_lock:
                slots = self._node_slots.setdefault(
                    node_id, threading.BoundedSemaphore(self.config.node_requests_inflight_max))
        with slots:
            yield

    def _stripe_routes(self, layout: Layout) -> list[Route]:
        return [self.routing.head_route(chain_id) for chain_id in self.routing.stripe_chain_ids(layout)]

    # ---- reads ----------------------------------------------------------

    def read(self, inode_id: int, layout: Layout, file_length: int, offset: int,
             length: int) -> bytes:
        """Bytes [offset, offset+length) clamped at file_length; holes read as zeros."""
        return self.read_many([ReadRequest(inode_id, layout, file_length, offset, length)])[0]

    def read_ranges(self, inode_id: int, layout: Layout, file_length: int,
                    ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several (offset, length) ranges of one file in one batched round."""
        return self.read_many([ReadRequest(inode_id, layout, file_length, offset, length)
                               for offset, length in ranges])

    def read_many(self, requests: list[ReadRequest]) -> list[bytes]:
        """Ranges of any files: requests per node (split by size), nodes in parallel.

        Raises the first request's error (see ``read_into`` for per-request errors).
        """
        results = [new_bytes(request_size(request)) for request in requests]
        failures = self.read_into(requests, [view for _, view in results])
        for failure in failures:
            if failure is not None:
                raise failure
        return [as_bytes(data) for data, _ in results]

    def read_into(self, requests: list[ReadRequest], outs: list[memoryview]
                  ) -> list[errors.FfsError | None]:
        """Read each request into its out view (at least ``request_size`` bytes long).

        Every byte of out[:request_size(request)] is written: stored data, or
        zeros for holes and for chunks shorter than the file. Returns one error
        (or None) per request: a non-retryable failure of any of its pieces, or
        the last retryable one when the retry budget ran out.
        """
        failures: list[errors.FfsError | None] = [None] * len(requests)
        pending: list[_Piece] = []
        append = pending.append
        numbers: Iterable[int] = range(len(requests))
        if self.bulk is not None and type(self.transport) is BulkStorageTransport:
            numbers = self._read_small_fast(requests, outs)
        for number in numbers:
            request = requests[number]
            offset, layout = request.offset, request.layout
            if offset < 0 or request.length < 0:
                raise errors.InvalidArgument(f"negative offset or length ({offset}, {request.length})")
            size = request_size(request)
            if len(outs[number]) < size:
                raise errors.InvalidArgument(f"request {number}: out buffer of {len(outs[number])} "
                                             f"bytes for {size} bytes")
            if not size:
                continue
            chunk_index, within = divmod(offset, layout.chunk_size)
            if within + size <= layout.chunk_size:     # the common case: inside one chunk
                append(_Piece(number, 0, request.inode_id, layout, chunk_index, within, size))
                continue
            out = 0
            for chunk_index, within, piece in layout.chunk_ranges(offset, size):
                append(_Piece(number, out, request.inode_id, layout, chunk_index, within, piece))
                out += piece

        def attempt() -> None:
            nonlocal pending
            while pending:
                pending, error = self._read_round(pending, outs, failures)
                if pending and error is not None:
                    raise error
                # error None: only pieces whose bytes failed on one replica are left: at once to another

        try:
            self.retrying(attempt, f"read of {len(requests)} range(s)")
        except Retryable as exc:
            for piece in pending:
                if failures[piece.request] is None:
                    failures[piece.request] = exc
        return failures

    def _read_small_fast(self, requests: list[ReadRequest], outs: list[memoryview]) -> list[int]:
        """The short path of small reads (training samples); returns the numbers of the
        requests left for the general path, which has every retry and failover rule.

        A request inside one chunk, of at most ``small_piece_bytes_max`` bytes, goes
        in one bulk request per node: a replicated chain's pieces of this call all to
        one replica, the least busy when the call starts. Only a piece whose reply is
        complete and clean (CRCs checked as on the general path) counts as read; any
        error (a broken connection, ChunkNotCommitted, a bad CRC, a fence), a routing
        miss, a node without a bulk listener or a larger request is left to the
        general path, which reads it again from the start. Why: a tuple per IO
        instead of a piece object, a route pick and a list entry per round, which
        is most of the client's CPU per sample.
        """
        left: list[int] = []
        chains_of: dict[int, list[int]] = {}        # by id(layout): hashing a Layout costs ~0.5 us
        route_of: dict[int, Route | None] = {}
        by_address: dict[str, tuple[Route, list[int], list[ReadIO]]] = {}
        limit = small_piece_bytes_max
        for number, request in enumerate(requests):
            offset, layout = request.offset, request.layout
            size = min(offset + request.length, request.file_length) - offset
            chunk_size = layout.chunk_size
            chunk_index, within = divmod(offset, chunk_size)
            if not 0 < size <= limit or offset < 0 or within + size > chunk_size or len(outs[number]) < size:
                left.append(number)
                continue
            chain_ids = chains_of.get(id(layout))   # the requests keep every layout alive meanwhile
            if chain_ids is None:
                try:
                    chain_ids = chains_of[id(layout)] = self.routing.stripe_chain_ids(layout)
                except Retryable:
                    return list(range(len(requests)))
            chain_id = chain_ids[chunk_index % layout.stripe_size]
            route = route_of.get(chain_id, False)
            if route is False:
                route = route_of[chain_id] = self._fast_route(chain_id)
            if route is None:
                left.append(number)
                continue
            io = (route.chain_id, route.chain_version, request.inode_id, chunk_index, within, size)
            group = by_address.get(route.bulk_address)
            if group is None:
                by_address[route.bulk_address] = (route, [number], [io])
            else:
                group[1].append(number)
                group[2].append(io)
        held = [(route.node_id, len(numbers)) for route, numbers, _ in by_address.values()]
        for node_id, count in held:
            self.selector.hold(node_id, count)
        sent: list = []
        try:
            for route, numbers, ios in by_address.values():
                if len(ios) > self.config.bulk_read_ios_max or \
                        sum(io[5] for io in ios) > self.config.bulk_read_bytes_max:
                    left.extend(numbers)            # more than one request: the general path cuts them
                    continue
                try:
                    connection = self.bulk.get(route.bulk_address)
                    connection.send_read(ios, self.transport.rts,
                                         self.capabilities.for_inodes(io[2] for io in ios))
                except BulkTransportError:
                    self._fast_broken(route)
                    left.extend(numbers)
                    continue
                sent.append((connection, route, numbers, ios))
            while sent:
                connection, route, numbers, ios = sent.pop(0)
                try:
                    outcomes = connection.recv_read(ios, [outs[n] for n in numbers])
                except BulkTransportError:
                    self._fast_broken(route)
                    left.extend(numbers)
                    continue
                except FfsError:                    # the whole request refused; the connection is fine
                    self.bulk.put(connection)
                    left.extend(numbers)
                    continue
                self.bulk.put(connection)
                for number, io, outcome in zip(numbers, ios, outcomes):
                    if outcome.error is not None:
                        if outcome.checksum_failed:  # bytes the node sent unchecked: tell it
                            self.reporter.report(route_of[io[0]], io[2], io[3])
                        left.append(number)
                    elif outcome.data_len < io[5]:
                        zero_fill(outs[number][outcome.data_len:io[5]])   # a hole, or a short chunk
        finally:
            for connection, *_ in sent:            # replies never read: the connection is mid-frame
                connection.close()
            for node_id, count in held:
                self.selector.done(node_id, count)
        left.sort()
        return left

    def _fast_route(self, chain_id: int) -> Route | None:
        """The replica the short read path asks for chain_id in this call; None: leave the
        chain to the general path (no serving replica, or no bulk listener on the chosen one)."""
        try:
            routes = self.routing.serving_routes(chain_id)
        except Retryable:
            return None
        if len(routes) == 1:
            route = routes[0]
        else:
            route = self.selector.pick(routes)
            self.selector.done(route.node_id)      # pick counts one; the batch holds its real count
        return route if route.bulk_address else None

    def _fast_broken(self, route: Route) -> None:
        """A bulk connection broke: drop the node's pooled ones and avoid it a while (as the
        general path does on NodeUnreachable)."""
        self.bulk.forget(route.bulk_address)
        self.selector.mark_failed(route.node_id)

    def _route_pieces(self, pending: list[_Piece], failed: list[_Piece], why: list[Retryable],
                      failures: list[errors.FfsError | None]) -> dict[str, _Batch]:
        """Pieces grouped by the node address that serves them.

        One routing lookup per chain and round, not per piece; each piece of a
        replicated chain goes to the replica with the fewest requests
        outstanding (3FS's LoadBalance); pieces that met ChunkNotCommitted
        twice go to the tail, which commits first; pieces whose bytes failed
        their CRC on a replica go to another (``_replicas_left``).
        """
        stripes: dict[Layout, list[int]] = {}
        by_chain: dict[int, list[_Piece]] = {}
        for piece in pending:
            layout = piece.layout
            chain_ids = stripes.get(layout)
            if chain_ids is None:
                try:
                    chain_ids = stripes[layout] = self.routing.stripe_chain_ids(layout)
                except Retryable as exc:
                    failed.append(piece)
                    why.append(exc)
                    continue
            chain_id = chain_ids[piece.chunk_index % layout.stripe_size]
            group = by_chain.get(chain_id)
            if group is None:
                by_chain[chain_id] = [piece]
            else:
                group.append(piece)
        by_address: dict[str, _Batch] = {}
        tail_after = self.config.not_committed_tries_before_tail
        for chain_id, pieces in by_chain.items():
            try:
                routes = self.routing.serving_routes(chain_id)
            except Retryable as exc:
                failed.extend(pieces)
                why.extend([exc] * len(pieces))
                continue
            if any(piece.bad_targets for piece in pieces):
                pieces = [piece for piece in pieces if self._replicas_left(piece, routes, failures)]
            tail = routes[-1]

            def for_tail(piece: _Piece) -> bool:
                return piece.not_committed >= tail_after and tail.target_id not in piece.bad_targets

            to_tail = [piece for piece in pieces if for_tail(piece)]
            if to_tail:
                pieces = [piece for piece in pieces if not for_tail(piece)]
                self.selector.hold(tail.node_id, len(to_tail))
                by_address.setdefault(tail.address, []).extend((piece, tail) for piece in to_tail)
            if not pieces:
                continue
            if len(routes) == 1:
                route = routes[0]
                self.selector.hold(route.node_id, len(pieces))
                by_address.setdefault(route.address, []).extend((piece, route) for piece in pieces)
                continue
            for piece in pieces:     # replicas: each piece to the least busy one (3FS's LoadBalance)
                route = self.selector.pick(self._replicas_left(piece, routes) if piece.bad_targets else routes)
                by_address.setdefault(route.address, []).append((piece, route))
        return by_address

    @staticmethod
    def _replicas_left(piece: _Piece, routes: list[Route],
                       failures: list[errors.FfsError | None] | None = None) -> list[Route]:
        """The serving replicas whose bytes have not failed this piece; with failures given, a piece
        with none left fails its request (after one more read if the chain has a lone replica)."""
        left = [route for route in routes if route.target_id not in piece.bad_targets]
        if not left and piece.checksum_failures < 2:
            left = routes       # a lone replica: once more, a truncate may have raced the read
        if not left and failures is not None:
            failures[piece.request] = failures[piece.request] or piece.checksum_error
        return left

    def _read_round(self, pending: list[_Piece], outs: list[memoryview],
                    failures: list[errors.FfsError | None]) -> tuple[list[_Piece], Retryable | None]:
        """Send every pending piece once; (pieces left, the error to retry them for).

        The error is ChunkNotCommitted only when that is all that went wrong, so
        the caller pauses briefly instead of backing off and refreshing routing.
        """
        failed: list[_Piece] = []
        failures_retry: list[Retryable] = []
        by_address = self._route_pieces(pending, failed, failures_retry, failures)
        blocking_batches: list[_Batch] = []
        pipelined_batches: list[_Batch] = []
        for items in by_address.values():
            read_limits = self.transport.read_limits(items[0][1])
            batches = pipelined_batches if read_limits.pipelined else blocking_batches
            batches.extend(_split_batches(items, read_limits.bytes_max, read_limits.ios_max))
        calls = [lambda b=batch: self._read_batch(b, outs, failures) for batch in blocking_batches]
        futures: list[Future] = []
        if calls and pipelined_batches:   # blocking batches on IO threads while this thread pipelines
            executor = self._pool.executor()
            futures = [executor.submit(call) for call in calls]
            calls = []
        outcomes = self._read_pipelined(pipelined_batches, outs, failures) if pipelined_batches else []
        outcomes += self._parallel(calls) if calls else []
        first_error = None
        for future in futures:
            try:
                outcomes.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        for left, why in outcomes:
            failed.extend(left)
            failures_retry.extend(why)
        if not failed:
            return [], None
        if not failures_retry:
            return failed, None      # only pieces to read from another replica (see _receive)
        others = [exc for exc in failures_retry if not isinstance(exc, ChunkNotCommitted)]
        return failed, (others or failures_retry or [Unavailable("reads left over")])[-1]

    def _read_batch(self, batch: _Batch, outs: list[memoryview],
                    failures: list[errors.FfsError | None]) -> _BatchResult:
        """One read request, sent and answered in turn (a transport that does not pipeline)."""
        route = batch[0][1]
        ios = [_io(piece, piece_route) for piece, piece_route in batch]
        try:
            sent = self.transport.send_read(route, ios)
        except FfsError as exc:
            return self._request_failed(batch, exc, failures)
        return self._receive(route, sent, batch, ios, outs, failures)

    def _read_pipelined(self, batches: list[_Batch], outs: list[memoryview],
                        failures: list[errors.FfsError | None]) -> list[_BatchResult]:
        """Read requests from this thread: sent ahead (bounded per node and in total), replies
        received in order straight into outs while the nodes work on the next ones."""
        transport = self.transport
        queue = collections.deque(batches)
        inflight: collections.deque = collections.deque()
        per_node: collections.Counter = collections.Counter()
        node_max = self.config.node_requests_inflight_max
        total_max = self.config.requests_inflight_max
        results: list[_BatchResult] = []
        while queue or inflight:
            skipped = 0
            while queue and len(inflight) < total_max and skipped < len(queue):
                batch = queue[0]
                route = batch[0][1]
                if per_node[route.address] >= node_max:
                    queue.rotate(-1)
                    skipped += 1
                    continue
                queue.popleft()
                ios = [(piece_route.chain_id, piece_route.chain_version, piece.inode_id, piece.chunk_index,
                        piece.offset, piece.length) for piece, piece_route in batch]
                try:
                    sent = transport.send_read(route, ios)
                except FfsError as exc:
                    results.append(self._request_failed(batch, exc, failures))
                    continue
                inflight.append((sent, batch, ios))
                per_node[route.address] += 1
            if not inflight:
                continue
            sent, batch, ios = inflight.popleft()
            route = batch[0][1]
            per_node[route.address] -= 1
            results.append(self._receive(route, sent, batch, ios, outs, failures))
        return results

    def _request_failed(self, batch: _Batch, exc: FfsError, failures: list[errors.FfsError | None]
                        ) -> _BatchResult:
        """A whole read request failed: every piece is retried, or (not retryable) fails its request."""
        route = batch[0][1]
        self.selector.done(route.node_id, len(batch))
        if isinstance(exc, NodeUnreachable):
            return [piece for piece, _ in batch], [self._unreachable(route, exc)]
        if isinstance(exc, Retryable):
            return [piece for piece, _ in batch], [exc]
        for piece, _ in batch:
            failures[piece.request] = failures[piece.request] or exc
        return [], []

    def _receive(self, route: Route, sent, batch: _Batch, ios: list[ReadIO], outs: list[memoryview],
                 failures: list[errors.FfsError | None]) -> _BatchResult:
        """The reply to one sent request, into outs; (pieces to retry, why).

        A non-retryable failure of a piece goes into failures[its request].
        """
        views = [outs[piece.request][piece.out_offset:piece.out_offset + piece.length] for piece, _ in batch]
        try:
            outcomes = self.transport.receive_read(route, sent, ios, views)
        except FfsError as exc:
            return self._request_failed(batch, exc, failures)
        except BaseException:
            self.selector.done(route.node_id, len(batch))
            raise
        self.selector.done(route.node_id, len(batch))
        failed: list[_Piece] = []
        why: list[Retryable] = []
        for (piece, piece_route), outcome, view in zip(batch, outcomes, views):
            exc = outcome.error
            if exc is None:
                if outcome.data_len < piece.length:
                    zero_fill(view[outcome.data_len:])     # a hole, or a chunk shorter than the file
                continue
            if isinstance(exc, ChecksumMismatch):     # bad bytes on this replica: another one, at once
                piece.checksum_failures += 1
                piece.bad_targets += (piece_route.target_id,)
                piece.checksum_error = ChecksumMismatch(
                    f"chunk {piece.inode_id}:{piece.chunk_index} on {describe(piece_route)}: {exc} "
                    f"({piece.checksum_failures} replica read(s) failed)")
                if outcome.checksum_failed:     # the node sent them unchecked: tell it
                    self.reporter.report(piece_route, piece.inode_id, piece.chunk_index)
                failed.append(piece)
                continue
            if isinstance(exc, Retryable):
                if isinstance(exc, ChunkNotCommitted):
                    piece.not_committed += 1
                failed.append(piece)
                why.append(type(exc)(f"chunk {piece.inode_id}:{piece.chunk_index} on {describe(piece_route)}: "
                                     f"{exc}"))
                continue
            failures[piece.request] = failures[piece.request] or type(exc)(
                f"chunk {piece.inode_id}:{piece.chunk_index} on {describe(piece_route)}: {exc}")
        return failed, why

    # ---- writes ---------------------------------------------------------

    def write(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        """Write data at offset: one chunk write per chunk piece, chunks in parallel
        (at most ``node_requests_inflight_max`` per node, and the IO threads in total).

        Returns once the head of every chain touched answered that the chain committed.
        """
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        calls, position = [], 0
        for chunk_index, within, piece in layout.chunk_ranges(offset, len(view)):
            part = view[position:position + piece]
            calls.append(lambda c=chunk_index, w=within, p=part:
                         self._write_piece(inode_id, layout, c, w, p))
            position += piece
        if calls:
            self._parallel(calls)

    def _write_piece(self, inode_id: int, layout: Layout, chunk_index: int, offset: int,
                     part: memoryview) -> None:
        checksum = crc32c.crc32c(part)
        channel, seqnum = self._channels.acquire()
        try:
            def attempt() -> None:
                route = self.routing.chain_for(layout, chunk_index, for_write=True)
                with self._node_slot(route.node_id), self.selector.holding(route.node_id):
                    try:
                        ack = self.transport.write(route, inode_id, chunk_index, offset, part, checksum,
                                                   layout.chunk_size, self.client_id, channel, seqnum)
                    except NodeUnreachable as exc:
                        raise self._unreachable(route, exc) from exc
                if ack.commit_version == 0:
                    raise errors.Internal(f"Write of chunk {inode_id}:{chunk_index} on {describe(route)}: "
                                          "the head answered without a commit version")

            self.retrying(attempt, f"write of chunk {inode_id}:{chunk_index}")
        finally:
            self._channels.release(channel)

    # ---- whole-file operations (also used by the metadata service) -------

    def file_length_from_chunks(self, inode_id: int, layout: Layout) -> int:
        """The file length the stored chunks imply: end of the last chunk, 0 if none."""
        def attempt() -> int:
            by_address: dict[str, list[Route]] = {}
            for route in self._stripe_routes(layout):
                by_address.setdefault(route.address, []).append(route)
            calls = [lambda r=routes: self._query_last(r, inode_id) for routes in by_address.values()]
            length = 0
            for lasts in self._parallel(calls):
                for last in lasts:
                    if last is not None:
                        length = max(length, last.last_index * layout.chunk_size + last.last_length)
            return length

        return self.retrying(attempt, f"query length of {inode_id}")

    def _query_last(self, routes: list[Route], inode_id: int):
        with self._reaching(routes[0]):
            return self.transport.query_last_chunks(routes, inode_id)

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        """Cut the file's chunks to new_length (the metadata length is the caller's job)."""
        if new_length < 0:
            raise errors.InvalidArgument(f"negative length {new_length}")
        last_index, tail = divmod(new_length, layout.chunk_size)
        first_removed = last_index + 1 if tail else last_index
        self._remove_from(inode_id, layout, first_removed)
        if tail:
            def attempt() -> None:
                route = self.routing.chain_for(layout, last_index)
                try:
                    with self._reaching(route):
                        self.transport.truncate_chunk(route, inode_id, last_index, tail, layout.chunk_size)
                except errors.NotFound:
                    pass   # no such chunk: it is a hole, nothing to cut

            self.retrying(attempt, f"truncate {inode_id}:{last_index}")

    def remove_file_chunks(self, inode_id: int, layout: Layout) -> int:
        """Remove every chunk of the file; returns how many were removed."""
        return self._remove_from(inode_id, layout, 0)

    def _remove_from(self, inode_id: int, layout: Layout, begin_index: int) -> int:
        def remove(route: Route) -> int:
            with self._reaching(route):
                return self.transport.remove_chunks(route, inode_id, begin_index)

        def attempt() -> int:
            return sum(self._parallel([lambda r=route: remove(r) for route in self._stripe_routes(layout)]))

        return self.retrying(attempt, f"remove chunks of {inode_id} from {begin_index}")

    def copy_file_chunks(self, src_inode: int, src_layout: Layout, length: int,
                         dst_inode: int, dst_layout: Layout) -> None:
        """Copy [0, length) of src into dst, a few chunks at a time; zero windows stay holes."""
        window = max(src_layout.chunk_size, dst_layout.chunk_size) * copy_window_chunks
        for offset in range(0, length, window):
            data = self.read(src_inode, src_layout, length, offset, window)
            if data != bytes(len(data)):
                self.write(dst_inode, dst_layout, offset, data)


def _io(piece: _Piece, route: Route) -> ReadIO:
    return (route.chain_id, route.chain_version, piece.inode_id, piece.chunk_index, piece.offset, piece.length)


def _split_batches(items: _Batch, bytes_max: int, ios_max: int) -> Iterable[_Batch]:
    """Cut one node's reads into requests under the IO-count and size limits."""
    batch: _Batch = []
    batch_bytes = 0
    for item in items:
        if batch and (len(batch) >= ios_max
                      or batch_bytes + item[0].length > bytes_max):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += item[0].length
    if batch:
        yield batch
