"""The storage node's bulk listener: chunk bytes over a framed binary protocol (bulk_wire.py).

Why not only gRPC: ``bench/data_plane.py`` on the 2-vCPU dev VM, five runs
while other work shared the machine. Throughput swings with that load (ranges
below); the CPU each GiB costs in the client / the server (socket: receiver /
sender) does not, and it is what bounds a 2-core machine::

                                              MiB/s        CPU ms per GiB
    plain socket, recv_into a reused 4 MiB    2250-5030    110-150 / 80-180
    gRPC unary, 4 MiB reply (raw bytes)        710-1220    500-700 / 300-360
    gRPC unary, 4 MiB request                  910-1050    260-280 / 660-720
    bulk read, 4 MiB, 4 in flight              690-2670    240-340 / 220-260
    bulk write, 4 MiB, pooled chunk files      380-1380    160-190 / 400-540
    random 4 KiB reads, 256 per request     17-56 k/s     4-4.5 us / 13-18 us per read

gRPC moves every payload through a protobuf ``bytes`` object: the server
copies the file into it, HTTP/2 frames it in 16 KiB pieces, and the client
receives into a fresh object it then copies into the caller's buffer (three
copies and an allocation per reply, on the GIL-holding thread). Here a read
reply is a small header plus the chunk file's pages handed to the socket with
``sendfile`` (no copy in this process), and the client ``recv_into``s them
straight into the caller's buffer; CRC32C is checked once, by the client,
against the stored block CRCs (edge blocks are verified here). A write is one
``sendmsg`` of header + data from the caller's memory and one ``recv_into`` a
reused buffer here, then the same chain driver as a gRPC Write (chain and
version checks, fences, exactly-once, CRAQ forwarding to successors). The
forwarding itself travels here too: a replica sends each chain update to its
successor's listener as an UPDATE frame (bulk_peers.py), and this handler
receives it into a budgeted buffer and runs ``ChainDriver.forwarded`` on it,
so no hop copies the bytes into a protobuf message.

End to end through fsspec (``bench/seq_throughput.py --size 1GiB``, R=1, same
VM): 4 MiB ``readinto`` 2.3-2.4 GB/s = 0.47-0.57 of the socket, 4 MiB writes
1.4-1.5 GB/s = 0.29-0.35 (0.35 with the chunk pool prefilled), ``f.read()``
of the whole file 0.67-0.71 of the socket into one fresh buffer; before this
path: ~0.55 and ~0.21 GB/s.

Threads with blocking sockets rather than asyncio: every request ends in
blocking work (LMDB, pread, sendfile, the chain driver waiting on successors),
and the bytes move in C with the GIL released (recv_into, sendfile, crc32c).
The same minimal framed server measured both ways (data_plane ``loop``/``echo``
rows): 4 MiB replies 2200-3400 MiB/s with threads vs 1600-3100 with uvloop,
64-byte round trips 43-60 k/s vs 16-55 k/s; an event loop would add a hop per
request and a thread pool for the blocking work anyway. One thread per
connection; clients keep a few pooled connections per node and process.

What one listener holds against a hostile or broken peer (``BulkLimits``,
bulk_connections.py; defaults in common/limits.py): at most
``connections_max`` connections and ``connections_per_peer_max`` from one
address (more are closed at accept); a request's frame header is checked
before anything is allocated for it, and its buffer comes from one budget of
``inflight_bytes_max`` bytes, ``inflight_bytes_per_peer_max`` of them per
address (bulk_buffers.py), waited for at most ``budget_wait_s_max`` (then an
Unavailable reply, the connection kept); a watchdog cuts connections idle for
``idle_s_max`` and requests (or replies) that take more than
``request_s_max`` in all; a failing ``accept`` (EMFILE: out of descriptors)
backs off instead of spinning.
"""

from __future__ import annotations

import dataclasses
import logging
import select
import socket
import struct
import threading
import time
from typing import Callable

from fireflyfs.common import auth, capability, metrics
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import (ChecksumMismatch, FfsError, InvalidArgument, NotFound, PermissionDenied,
                                     TooLarge, Unauthenticated, Unavailable)
from fireflyfs.common.layout import validate_chunk_size
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.traffic import TrafficClass, mark_socket

from fireflyfs.proto import bulk_wire as wire
from fireflyfs.proto.bulk_io import (IdleTimeout, Sender, closed_by_peer, discard, readable_now, recv_exact,
                                     recv_header, set_timeouts, tune)
from fireflyfs.common.rpc import refused
from . import access
from .access import ANONYMOUS, CapabilityGate
from .bulk_buffers import BufferBudget
from .bulk_connections import BulkLimits, BurstLog, Connection, Phase
from .chain_driver import ChainDriver
from .chain_update import ChainUpdate
from .chunk_engine import ReadExtent
from .chunk_meta import chunk_key
from .repair import RepairQueue, RepairSource
from .routing_view import RoutingView
from .rts import GrantGate
from .target import Target

log = logging.getLogger(__name__)
_READ_BYTES, _WRITE_BYTES, _UPDATE_BYTES = (metrics.BULK_BYTES.labels(op) for op in ("read", "write", "update"))

peer_timeout_s_default = 60.0      # one recv or send that moves nothing for this long drops the peer
accept_backoff_s_min = 0.01        # after a failed accept (EMFILE...), doubling per failure
accept_backoff_s_max = 1.0
_DROPPED = memoryview(bytearray(64 * KiB))   # where refused request bytes go (shared: never read)
linger_s_max = 1.0                 # after a malformed frame: how long, and how much, the rest is drained
linger_bytes_max = 4 * MiB


class BulkHandler:
    """Protocol logic of one connection's requests, over the node's targets (no listening socket)."""

    def __init__(self, node_id: int, targets: dict[int, Target], routing: RoutingView,
                 driver: ChainDriver, repairs: RepairQueue | None = None,
                 capabilities: CapabilityGate | None = None,
                 authenticate: Callable[[str | None], Principal] | None = None) -> None:
        self.node_id = node_id
        # Chain updates (op UPDATE) carry the sending node's token, checked as gRPC's are
        # (access.StorageAuthenticator); None: security is off, every sender trusted.
        self.authenticate = authenticate
        # Bulk callers are clients (no token travels here): each read and write needs a capability.
        # None (in-process protocol tests): none checked.
        self.capabilities = capabilities or CapabilityGate(None)
        self.targets = targets
        self.routing = routing
        self.driver = driver
        self.repairs = repairs      # chunks whose edge blocks fail their CRC here go to repair
        self.rts = GrantGate.from_env()     # request-to-send policy (rts.py)
        self._bad_frames = BurstLog(log, logging.WARNING)

    def _target(self, chain_id: int, chain_version: int, *, write: bool) -> Target:
        target_id = self.routing.resolve(chain_id, chain_version, write=write)
        target = self.targets.get(target_id)
        if target is None:
            raise NotFound(f"target {target_id} is not on storage node {self.node_id}")
        return target

    def serve(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
              stopping: Callable[[], bool] = lambda: False, chain_budget: BufferBudget | None = None) -> None:
        """Answer frames until the peer closes, a frame is malformed, the connection is cut or the node stops.

        Each frame header is checked before anything is allocated for the frame;
        its buffer then comes from the listener's budget. Chain updates from other nodes take
        theirs from chain_budget (default: the same budget): a head write holds its buffer while
        it waits on its successor, so if the updates it waits for needed the same budget, heads
        on nodes that forward to each other could hold it all and wait on one another.
        """
        sock = connection.sock
        header = bytearray(wire.HEADER.size)
        header_view = memoryview(header)
        write_meta = memoryview(bytearray(max(wire.write_meta_bytes_max, wire.update_meta_bytes_max)))
        connection.enter(Phase.IDLE)
        while not stopping():
            try:
                if not recv_header(sock, header_view, connection.receiving):
                    return
            except IdleTimeout:
                continue        # a pooled client connection between requests: the watchdog times it
            if not self._serve_frame(connection, budget, bulk_limits, header, write_meta, chain_budget or budget):
                return
            connection.enter(Phase.IDLE)

    def _serve_frame(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
                     header: bytearray, write_meta: memoryview, chain_budget: BufferBudget) -> bool:
        """One request, its header received; False when the connection must close (a malformed frame)."""
        try:
            op, status, count, meta_len, data_len = wire.parse_header(header)
            wire.check_request(op, count, meta_len, data_len)
            if status != wire.STATUS_OK:
                raise wire.ProtocolError(f"request frame with status {status}")
        except wire.ProtocolError as exc:
            # Replies carry READ, WRITE or UPDATE (a read-to-send's reply is a READ), whatever the
            # request said.
            self._reject(connection, header[4] if header[4] in (wire.OP_WRITE, wire.OP_UPDATE) else wire.OP_READ,
                         exc)
            return False
        if op == wire.OP_GRANT:      # late: its read already timed out (bulk_wire.py)
            return True
        if op == wire.OP_WRITE:
            return self._serve_write(connection, budget, bulk_limits, write_meta[:meta_len], data_len)
        if op == wire.OP_UPDATE:
            return self._serve_update(connection, chain_budget, bulk_limits, write_meta[:meta_len], data_len)
        received = self._receive_read(connection, budget, bulk_limits, meta_len, count)
        if received is not None:
            connection.enter(Phase.WORKING)
            self.read(connection, received[0], rts=op == wire.OP_READ_RTS, capabilities=received[1])
        return True

    def _buffer(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
                nbytes: int) -> bytearray | None:
        """A buffer for nbytes of this request from the budget, waiting at most until the request's
        deadline; None: the budget stayed full."""
        wait_s = min(bulk_limits.budget_wait_s_max, connection.deadline(bulk_limits) - connection.now())
        return budget.acquire(nbytes, max(0.0, wait_s), connection.peer_host)

    def _reject(self, connection: Connection, op: int, exc: wire.ProtocolError) -> None:
        """Answer a malformed frame with its error; the caller then closes the connection.

        The peer may still be sending the rest of the frame: closing a socket
        with unread bytes sends a reset, which can destroy the error reply in
        flight, so the server half-closes and drops what still comes, for a
        bounded time and amount (a "lingering close").
        """
        sock = connection.sock
        self._bad_frames.event("node %d: bad bulk frame from %s: %s", self.node_id, _peer(sock), exc)
        connection.enter(Phase.SENDING)
        _send_error(sock, op, exc)
        deadline = connection.now() + linger_s_max
        left = linger_bytes_max
        try:
            sock.shutdown(socket.SHUT_WR)
            set_timeouts(sock, linger_s_max)
            while left > 0 and connection.now() < deadline:
                count = sock.recv_into(_DROPPED, min(left, len(_DROPPED)))
                if not count:
                    return
                left -= count
        except OSError:
            pass

    def _refuse(self, connection: Connection, op: int, unread_bytes: int, exc: FfsError) -> None:
        """Drop the rest of a well-formed frame, then answer it with exc: the connection stays usable."""
        discard(connection.sock, unread_bytes, _DROPPED)
        connection.enter(Phase.SENDING)
        _send_error(connection.sock, op, exc)

    def _busy(self, connection: Connection, budget: BufferBudget) -> Unavailable:
        return Unavailable(f"bulk listener of storage node {self.node_id} is busy: request buffers hold "
                           f"{budget.in_use_bytes} of {budget.capacity_bytes} bytes, "
                           f"{budget.peer_bytes(connection.peer_host)} of {budget.peer_bytes_max} for "
                           f"{connection.peer_host}")

    # ------------------------------------------------------------------ reads

    def _receive_read(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
                      meta_len: int, count: int) -> tuple[list[tuple[int, ...]], list[bytes]] | None:
        """The IOs and capabilities of a read frame; None when it was refused (answered)."""
        if not meta_len:
            return [], []
        buffer = self._buffer(connection, budget, bulk_limits, meta_len)
        if buffer is None:
            self._refuse(connection, wire.OP_READ, meta_len, self._busy(connection, budget))
            return None
        try:
            meta = memoryview(buffer)[:meta_len]
            recv_exact(connection.sock, meta)
            return wire.unpack_read_request_meta(meta, count)
        finally:
            budget.release(buffer, connection.peer_host)

    # ------------------------------------------------------------------ reads

    def read(self, connection: Connection, ios: list[tuple[int, ...]], rts: bool = False,
             capabilities: list[bytes] = ()) -> None:
        sock, count = connection.sock, len(ios)
        asked = sum(io[5] for io in ios)
        if asked > wire.read_bytes_max:
            connection.enter(Phase.SENDING)
            _send_error(sock, wire.OP_READ, TooLarge(f"bulk read asks {asked} bytes, more than "
                                                     f"{wire.read_bytes_max} per reply"))
            return
        try:
            self.capabilities.require(capabilities, (io[2] for io in ios), capability.READ,
                                      "reading chunks (bulk)", principal=ANONYMOUS)
        except FfsError as exc:
            refused("bulk read", _peer(sock), exc, who="a bulk client")
            connection.enter(Phase.SENDING)
            _send_error(sock, wire.OP_READ, exc)
            return
        heads = bytearray(count * wire.READ_HEAD.size)
        extras: list = []           # in IO order: an error text, or the CRCs of a run of IOs with data
        crcs: list[int] = []
        extents: list[ReadExtent] = []
        data_len = 0
        targets: dict[tuple[int, int], Target | FfsError] = {}   # one fence check per chain and request
        sending = False
        try:
            # The chunk metas of each target's IOs come from one read transaction.
            keys: list[bytes] = []
            by_target: dict[int, list[int]] = {}
            for number, (chain_id, chain_version, inode, index, _, _) in enumerate(ios):
                target = targets.get((chain_id, chain_version))
                if target is None:
                    try:
                        target = self._target(chain_id, chain_version, write=False)
                    except FfsError as exc:
                        target = exc
                    targets[(chain_id, chain_version)] = target
                keys.append(chunk_key(inode, index))
                if not isinstance(target, FfsError):
                    by_target.setdefault(target.id, []).append(number)
            found: list = [None] * count
            for target_id, numbers in by_target.items():
                results = self.targets[target_id].engine.read_extents(
                    [(keys[n], ios[n][4], ios[n][5]) for n in numbers])
                for n, result in zip(numbers, results):
                    if isinstance(result, ChecksumMismatch) and self.repairs is not None:
                        self.repairs.offer(target_id, keys[n], RepairSource.READ)
                    elif not isinstance(result, FfsError):
                        extents.append(result)      # closed in the finally below, whatever happens
                    found[n] = result
            for number, (chain_id, chain_version, _, _, _, _) in enumerate(ios):
                try:
                    target = targets[(chain_id, chain_version)]
                    if isinstance(target, FfsError):
                        raise target
                    extent = found[number]
                    if isinstance(extent, FfsError):
                        raise extent
                except FfsError as exc:
                    text = wire.error_text(exc)
                    wire.READ_HEAD.pack_into(heads, number * wire.READ_HEAD.size, len(text), 0, 0, 0, 0)
                    if crcs:        # the IOs before this one: their CRCs, then this one's error text
                        extras.append(struct.pack(f"<{len(crcs)}I", *crcs))
                        crcs = []
                    extras.append(text)
                    continue
                chunk = extent.meta
                length = extent.end - extent.start
                wire.READ_HEAD.pack_into(heads, number * wire.READ_HEAD.size, 0, length,
                                         chunk.block_size if chunk else 0, chunk.length if chunk else 0,
                                         chunk.commit_version if chunk else 0)
                crcs.extend(extent.crcs)
                data_len += length
            if crcs:
                extras.append(struct.pack(f"<{len(crcs)}I", *crcs))
            if rts and data_len:     # the data is ready: ask the client before sending it
                if not self._granted(connection, count, data_len):
                    return
                self.rts.begin_sending()
                sending = True
            connection.enter(Phase.SENDING)
            sender = Sender(sock)
            meta_len = len(heads) + sum(len(extra) for extra in extras)
            sender.add(wire.header(wire.OP_READ, count, meta_len, data_len))
            sender.add(heads)
            for extra in extras:
                sender.add(extra)
            for extent in found:          # in IO order: the data follows the heads
                if extent is None or isinstance(extent, FfsError):
                    continue
                for part in extent.parts:
                    if isinstance(part, tuple):
                        sender.add_file(extent.fd, part[0], part[1])
                    else:
                        sender.add(part)
            sender.flush()
            _READ_BYTES.inc(data_len)
        finally:
            if sending:
                self.rts.end_sending()
            for extent in extents:
                extent.close()

    def _granted(self, connection: Connection, count: int, data_len: int) -> bool:
        """Request-to-send: RTS, then wait for GRANT; False (error reply sent) after the timeout."""
        sock = connection.sock
        self.rts.asking()
        sender = Sender(sock)
        sender.add(wire.header(wire.OP_RTS, count, wire.RTS_META.size, 0))
        sender.add(wire.RTS_META.pack(data_len))
        sender.flush()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not readable_now(sock) and not poller.poll(self.rts.grant_timeout_s * 1000):
            exc = self.rts.timed_out(count, data_len, _peer(sock))
            log.info("node %d: %s", self.node_id, exc)
            connection.enter(Phase.SENDING)
            _send_error(sock, wire.OP_READ, exc)
            return False
        header = bytearray(wire.HEADER.size)
        connection.enter(Phase.RECEIVING)       # a grant trickled in is cut like a request
        if not recv_header(sock, memoryview(header)):
            raise ConnectionError("bulk peer closed the connection instead of granting a transfer")
        try:
            op, status, reply_count, meta_len, reply_data_len = wire.parse_header(header)
            if op != wire.OP_GRANT or status or reply_count or meta_len or reply_data_len:
                raise wire.ProtocolError(f"expected a grant, got a {wire.OPS[op]} frame")
        except wire.ProtocolError as exc:
            _send_error(sock, wire.OP_READ, exc)
            raise ConnectionError(f"request-to-send: {exc}") from exc
        return True

    # ------------------------------------------------------------------ writes

    def _serve_write(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
                     meta: memoryview, data_len: int) -> bool:
        """One write frame, after its header: False when the connection must close (a malformed frame)."""
        sock = connection.sock
        recv_exact(sock, meta)
        try:
            fields, client_id, write_capability = wire.unpack_write_request(meta)
        except wire.ProtocolError as exc:
            self._reject(connection, wire.OP_WRITE, exc)
            return False
        try:
            _check_write_bounds(fields, data_len)
        except InvalidArgument as exc:
            self._refuse(connection, wire.OP_WRITE, data_len, exc)
            return True

        def apply(data: memoryview) -> bytes:
            try:
                self.capabilities.require((write_capability,), (fields[2],), capability.WRITE,
                                          "writing a chunk (bulk)", principal=ANONYMOUS)
            except FfsError as exc:
                refused("bulk write", _peer(sock), exc, who="a bulk client")
                raise
            return self.write(fields, client_id, data)

        return self._apply_data(connection, budget, bulk_limits, wire.OP_WRITE, data_len, apply)

    def _apply_data(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits, op: int,
                    data_len: int, apply: Callable[[memoryview], bytes]) -> bool:
        """Receive a frame's data into a budgeted buffer, apply(data), answer with the reply meta
        it returns or the FfsError it raises; the connection stays usable either way."""
        sock = connection.sock
        buffer = self._buffer(connection, budget, bulk_limits, data_len) if data_len else bytearray(0)
        if buffer is None:
            self._refuse(connection, op, data_len, self._busy(connection, budget))
            return True
        try:
            data = memoryview(buffer)[:data_len]
            recv_exact(sock, data)
            connection.enter(Phase.WORKING)
            try:
                reply = apply(data)
            except FfsError as exc:
                connection.enter(Phase.SENDING)
                _send_error(sock, op, exc)
                return True
            (_UPDATE_BYTES if op == wire.OP_UPDATE else _WRITE_BYTES).inc(data_len)
        finally:
            if data_len:
                budget.release(buffer, connection.peer_host)
        connection.enter(Phase.SENDING)
        sender = Sender(sock)
        sender.add(wire.header(op, 1, len(reply), 0))
        sender.add(reply)
        sender.flush()
        return True

    def write(self, fields: tuple[int, ...], client_id: str, data: memoryview) -> bytes:
        """Apply one write frame (fields from wire.unpack_write_request); the reply's meta."""
        chain_id, chain_version, inode, index, offset, chunk_size, checksum, channel, seqnum = fields
        target = self._target(chain_id, chain_version, write=True)
        outcome = self.driver.write_data(target, chain_id, chain_version, inode, index, offset, data,
                                         checksum, chunk_size, client_id, channel, seqnum)
        return wire.WRITE_REPLY.pack(outcome.commit_version, outcome.chunk_length, outcome.chunk_checksum)


    # ------------------------------------------------------------------ chain updates

    def _serve_update(self, connection: Connection, budget: BufferBudget, bulk_limits: BulkLimits,
                      meta: memoryview, data_len: int) -> bool:
        """One UPDATE frame from a predecessor, after its header; False when the connection must close."""
        sock = connection.sock
        recv_exact(sock, meta)
        try:
            fields, token = wire.unpack_update_request(meta)
            update = ChainUpdate.from_wire(fields, memoryview(b""))
        except wire.ProtocolError as exc:
            self._reject(connection, wire.OP_UPDATE, exc)
            return False
        try:
            principal = self.authenticate(token or None) if self.authenticate is not None else auth.SUPERUSER
            with auth.acting_as(principal):      # no buffer for anyone but a node (or an admin tool)
                access.require_node("forwarding an update", admin_too=True)
            validate_chunk_size(update.chunk_size)
            end = data_len if update.full_replace else update.offset + data_len
            if end > update.chunk_size:
                raise InvalidArgument(f"chunk {update.inode}:{update.index}: update [{end - data_len}, {end}) "
                                      f"exceeds chunk size {update.chunk_size}")
        except FfsError as exc:
            if isinstance(exc, (Unauthenticated, PermissionDenied)):
                refused("bulk chain update", _peer(sock), exc, who="a bulk peer")
            self._refuse(connection, wire.OP_UPDATE, data_len, exc)
            return True

        def apply(data: memoryview) -> bytes:
            try:
                with auth.acting_as(principal):
                    state = self.driver.forwarded(self.targets, dataclasses.replace(update, data=data),
                                                  caller_active=lambda: not closed_by_peer(sock))
            except PermissionDenied as exc:     # a node, but no peer of that chain
                refused("bulk chain update", _peer(sock), exc, who=principal.describe())
                raise
            return wire.WRITE_REPLY.pack(state.commit_version, state.length, state.checksum)

        return self._apply_data(connection, budget, bulk_limits, wire.OP_UPDATE, data_len, apply)


def _check_write_bounds(fields: tuple[int, ...], data_len: int) -> None:
    """InvalidArgument for a write that cannot fit its chunk, before a buffer is taken for its data
    (the chunk engine checks the same again)."""
    inode, index, offset, chunk_size = fields[2:6]
    validate_chunk_size(chunk_size)
    if offset + data_len > chunk_size:
        raise InvalidArgument(f"chunk {inode}:{index}: write [{offset}, {offset + data_len}) "
                              f"exceeds chunk size {chunk_size}")


def _peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


def _send_error(sock: socket.socket, op: int, exc: FfsError) -> None:
    text = wire.error_text(exc)
    try:
        sender = Sender(sock)
        sender.add(wire.header(op, 0, len(text), 0, status=wire.STATUS_ERROR))
        sender.add(text)
        sender.flush()
    except OSError:
        pass


class BulkServer:
    """Listens on host:port (0: ephemeral) and serves each connection on its own thread, within limits."""

    def __init__(self, handler: BulkHandler, listen: str, *, peer_timeout_s: float = peer_timeout_s_default,
                 limits: BulkLimits = BulkLimits(), clock: Callable[[], float] = time.monotonic,
                 tls_context=None) -> None:
        self.tls_context = tls_context      # an ssl server context (the node's TLS), None: plaintext
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"bulk listen address {listen!r} is not host:port")
        self.handler = handler
        self.peer_timeout_s = peer_timeout_s
        self.limits = limits
        self.budget = BufferBudget(limits.inflight_bytes_max, limits.inflight_bytes_per_peer_max, clock)
        # Chain updates from other nodes (authenticated before they get a buffer) have their own.
        self.chain_budget = BufferBudget(limits.inflight_bytes_max, limits.inflight_bytes_max, clock)
        self._clock = clock
        self._sock = socket.create_server((host, int(port)), backlog=128)
        try:
            mark_socket(self._sock, TrafficClass.STORAGE)
        except (OSError, ValueError):
            pass
        self.port = self._sock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self._accept = self._sock.accept     # replaced in tests to inject failures
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, Connection] = {}
        self._per_peer: dict[str, int] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._threads_started: list[threading.Thread] = []
        self._refusals = BurstLog(log, logging.WARNING)
        self._cuts = BurstLog(log, logging.INFO)
        self.refused_count = 0
        self.cut_count = 0
        self.accept_failures = 0

    def start(self) -> None:
        for target, name in ((self._accept_loop, "bulk-accept"), (self._watch_loop, "bulk-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads_started.append(thread)

    # ---- accepting ---------------------------------------------------------------

    def _accept_loop(self) -> None:
        """Accept until stopped; a failing accept (EMFILE, ENFILE, ENOBUFS...) backs off, never spins."""
        delay_s = 0.0
        failures = 0
        while not self._stopping.is_set():
            try:
                sock, address = self._accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                self.accept_failures += 1
                if not failures:
                    log.warning("bulk accept on %s fails (%s); backing off up to %g s until it works again",
                                self.address, exc, accept_backoff_s_max)
                failures += 1
                delay_s = min(accept_backoff_s_max, max(accept_backoff_s_min, delay_s * 2))
                self._stopping.wait(delay_s)
                continue
            if failures:
                log.warning("bulk accept on %s works again after %d failures", self.address, failures)
                failures, delay_s = 0, 0.0
            if not self._admit(sock, (address[0], address[1])):
                self._stopping.wait(accept_backoff_s_min)     # no thread to be had: let some end

    def _admit(self, sock: socket.socket, peer: tuple[str, int]) -> bool:
        """Serve sock on a new thread, or close it when a cap is reached; False if no thread could start."""
        connection = Connection(sock, peer, self._clock)
        peer_host = connection.peer_host
        with self._lock:
            refusal = None
            if len(self._connections) >= self.limits.connections_max:
                refusal = f"{len(self._connections)} connections open (at most {self.limits.connections_max})"
            elif self._per_peer.get(peer_host, 0) >= self.limits.connections_per_peer_max:
                refusal = (f"{self._per_peer[peer_host]} connections from {peer_host} "
                           f"(at most {self.limits.connections_per_peer_max} per peer)")
            else:
                self._connections[sock] = connection
                self._per_peer[peer_host] = self._per_peer.get(peer_host, 0) + 1
                thread = threading.Thread(target=self._serve, args=(connection,), name="bulk-conn", daemon=True)
                self._threads.add(thread)
        if refusal is not None:
            self.refused_count += 1
            self._refusals.event("bulk %s: refusing a connection from %s: %s", self.address, peer_host, refusal)
            sock.close()
            return True
        try:
            thread.start()
        except RuntimeError as exc:      # out of threads or memory: refuse this one, keep the node up
            log.warning("bulk %s: cannot start a connection thread: %s", self.address, exc)
            self._forget(connection, thread)
            sock.close()
            return False
        return True

    def _forget(self, connection: Connection, thread: threading.Thread) -> None:
        with self._lock:
            if self._connections.pop(connection.accepted_sock, None) is not None:
                left = self._per_peer[connection.peer_host] - 1
                if left:
                    self._per_peer[connection.peer_host] = left
                else:
                    del self._per_peer[connection.peer_host]
            self._threads.discard(thread)

    def _serve(self, connection: Connection) -> None:
        sock = connection.sock
        try:
            tune(sock, self.peer_timeout_s)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)   # a vanished client host
            if self.tls_context is not None:      # TLS: the handshake, on this thread
                sock = connection.sock = self.tls_context.wrap_socket(sock, server_side=True)
            self.handler.serve(connection, self.budget, self.limits, self._stopping.is_set, self.chain_budget)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("bulk connection from %s ended: %s", _peer(sock), exc)
        except OSError as exc:
            if not self._stopping.is_set() and connection.cut_reason is None:
                log.info("bulk connection from %s failed: %s", _peer(sock), exc)
        except Exception:   # a bug: log it, drop this connection, keep the node serving
            log.exception("bulk connection from %s crashed", _peer(sock))
        finally:
            self._forget(connection, threading.current_thread())
            sock.close()

    # ---- the watchdog ------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self.limits.watch_interval_s):
            self.cut_overdue(self._clock())

    def cut_overdue(self, now: float) -> int:
        """Cut every connection idle, receiving or sending for too long (bulk_connections.py); how many."""
        with self._lock:
            connections = list(self._connections.values())
        cut = 0
        for connection in connections:
            reason = connection.cut_if_overdue(now, self.limits)
            if reason is not None:
                cut += 1
                self.cut_count += 1
                self._cuts.event("bulk %s: cut a connection from %s: %s", self.address, connection.peer_host,
                                 reason)
        return cut

    # ---- state and stop ------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def connections_from(self, peer_host: str) -> int:
        with self._lock:
            return self._per_peer.get(peer_host, 0)

    def describe_connections(self) -> list[tuple[str, int, Phase, str | None]]:
        """(peer host, peer port, phase, why it was cut or None) of each open connection."""
        with self._lock:
            connections = list(self._connections.values())
        return [(c.peer_host, c.peer_port, c.phase, c.cut_reason) for c in connections]

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop accepting, cut every connection (in-flight requests fail on the client: retryable),
        and wait up to grace_s for the connection threads, so none touches a closed engine."""
        self._stopping.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        with self._lock:
            threads = list(self._threads) + self._threads_started
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
