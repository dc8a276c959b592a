"""Client side of the bulk data path: pooled connections to storage nodes' bulk listeners.

The protocol is proto/bulk_wire.py (why it exists, with numbers:
storage_service/bulk_server.py). A ``BulkConnection`` sends a read batch or a
write as one frame and receives the reply straight into the caller's views
(``recv_into``; small pieces go through one scratch buffer and a copy, which
beats a syscall per 4 KiB piece). It checks the CRC32C of every segment the
server sent against the CRC the server named (stored block CRCs for whole
blocks), so bytes are verified from the disk to the caller's buffer.

``BulkPool`` keeps idle connections per node address and belongs to one
process: after ``fork()`` it drops the parent's sockets (closing an inherited
descriptor in the child leaves the parent's connection open) and connects
afresh. A connection that failed mid-frame is closed, never reused.
"""

from __future__ import annotations

import collections
import os
import struct
import threading

import crc32c

from fireflyfs.common import errors
from fireflyfs.common.errors import ChecksumMismatch, Unavailable
from fireflyfs.common import pacing
from fireflyfs.common.traffic import TrafficClass
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.common.tls import process_tls
from fireflyfs.proto.bulk_io import Sender, closed_by_peer, connect, recv_exact
from .storage_transport import ReadOutcome

_CRC = struct.Struct("<I")
small_piece_bytes_max = 64 * 1024      # pieces this small are received through the scratch buffer
scratch_bytes_initial = 256 * 1024
idle_connections_per_node_max = 16


class BulkTransportError(Unavailable):
    """The connection broke, timed out or spoke nonsense: retry elsewhere or later."""


class BulkConnection:
    """One TCP connection to a storage node's bulk listener, used by one thread at a time."""

    def __init__(self, address: str, timeout_s: float, connect_timeout_s: float | None = None) -> None:
        self.address = address
        self.pid = os.getpid()
        try:      # TLS when this process has it: the node's certificate checked against the CA
            self.sock = connect(address, timeout_s, connect_timeout_s or timeout_s, process_tls.bulk_client)
        except OSError as exc:
            raise BulkTransportError(f"bulk connect to {address}: {exc}") from exc
        self.broken = False
        self._header = bytearray(wire.HEADER.size)
        self._scratch = bytearray(scratch_bytes_initial)
        self._rts_pending: collections.deque = collections.deque()   # per sent read: its limiter or None
        self._rts_current = None        # the limiter of the reply being received (client/rts.py)
        self._permit_held = False

    def close(self) -> None:
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- framing ------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> BulkTransportError:
        self.close()
        return BulkTransportError(f"bulk {what} on {self.address}: {type(exc).__name__}: {exc}")

    def _scratch_view(self, size: int) -> memoryview:
        if len(self._scratch) < size:
            self._scratch = bytearray(max(size, 2 * len(self._scratch)))
        return memoryview(self._scratch)[:size]

    def _reply_header(self, op: int, count: int, data_max: int) -> tuple[int, int, int]:
        """(status, meta_len, data_len) of the next reply; an error reply raises its error."""
        recv_exact(self.sock, memoryview(self._header))
        reply_op, status, reply_count, meta_len, data_len = wire.parse_header(self._header)
        if reply_op == wire.OP_RTS:      # request-to-send: take a permit, grant, then the reply
            self._grant(reply_count, count, meta_len, data_len)
            recv_exact(self.sock, memoryview(self._header))
            reply_op, status, reply_count, meta_len, data_len = wire.parse_header(self._header)
        if status == wire.STATUS_ERROR:
            if reply_op != op or data_len or meta_len > wire.error_text_bytes_max:
                raise wire.ProtocolError(f"malformed error reply (op {reply_op}, meta {meta_len})")
            text = self._scratch_view(meta_len)
            recv_exact(self.sock, text)
            raise wire.error_from_text(text, f"bulk {wire.OPS[op]} on {self.address}")
        wire.check_reply(reply_op, op, reply_count, count, meta_len, data_len, data_max)
        return status, meta_len, data_len

    # ---- reads --------------------------------------------------------------

    def _grant(self, rts_count: int, count: int, meta_len: int, data_len: int) -> None:
        """Answer the server's RTS: a permit of this process's limiter (waiting if K are out), GRANT."""
        limiter = self._rts_current
        if limiter is None or self._permit_held or rts_count != count or meta_len != wire.RTS_META.size \
                or data_len:
            raise wire.ProtocolError("unexpected request-to-send frame")
        (nbytes,) = wire.RTS_META.unpack(self._recv_meta(meta_len))
        try:
            limiter.acquire(what=f"{nbytes} bytes from {self.address}")
        except errors.FfsError as exc:      # RtsPermitTimeout: the server waits for a grant; drop it
            raise self._fail("read", exc) from exc
        self._permit_held = True
        self.sock.sendall(wire.header(wire.OP_GRANT, 0, 0, 0))

    def _end_transfer(self) -> None:
        if self._permit_held:
            self._permit_held = False
            self._rts_current.release()
        self._rts_current = None

    def send_read(self, ios: list[tuple[int, int, int, int, int, int]], rts=None,
                  capabilities: list[bytes] = ()) -> None:
        """Send one read frame: (chain_id, chain_version, inode, index, offset, length) per IO,
        with the read capabilities of their inodes (common/capability.py).

        rts: a GrantLimiter (client/rts.py): the server sends the data only once
        recv_read has granted it a permit. Paced as storage traffic if configured
        (common/pacing.py).
        """
        op = wire.OP_READ if rts is None else wire.OP_READ_RTS
        caps_len = sum(len(cap) for cap in capabilities)
        meta = bytearray(wire.header(op, len(ios), len(ios) * wire.READ_IO.size + caps_len, 0))
        pacing.pace(TrafficClass.STORAGE, sum(io[5] for io in ios))
        pack = wire.READ_IO.pack
        for io in ios:
            meta += pack(*io)
        for cap in capabilities:
            meta += cap
        try:
            self.sock.sendall(meta)
        except OSError as exc:
            raise self._fail("read request", exc) from exc
        self._rts_pending.append(rts)

    def recv_read(self, ios: list[tuple[int, int, int, int, int, int]], outs: list[memoryview]
                  ) -> list[ReadOutcome]:
        """The reply to send_read(ios): bytes land in outs[i][:data_len], CRCs checked.

        A whole-request error reply raises its FfsError (the connection stays
        usable); a broken or garbled connection raises BulkTransportError.
        """
        self._rts_current = self._rts_pending.popleft() if self._rts_pending else None
        try:
            return self._recv_read(ios, outs)
        except wire.ProtocolError as exc:
            raise self._fail("read reply", exc) from exc
        except errors.FfsError:
            raise
        except OSError as exc:   # ConnectionError, TimeoutError, ...
            raise self._fail("read reply", exc) from exc
        finally:
            self._end_transfer()     # the permit goes back once the data is in (or the read failed)

    def _recv_read(self, ios, outs) -> list[ReadOutcome]:
        count = len(ios)
        asked = sum(io[5] for io in ios)
        _, meta_len, data_len = self._reply_header(wire.OP_READ, count, asked)
        heads_len = count * wire.READ_HEAD.size
        if meta_len < heads_len:
            raise wire.ProtocolError(f"read reply meta of {meta_len} bytes for {count} IOs")
        meta = bytes(self._recv_meta(meta_len))
        outcomes: list[ReadOutcome] = []
        crc_lists: list[tuple[int, int]] = []     # (meta position of the CRCs, block size)
        position = heads_len
        total = 0
        for number, (error_len, io_len, block_size, chunk_length, commit_version) in enumerate(
                wire.READ_HEAD.iter_unpack(meta[:heads_len])):
            outcome = ReadOutcome(io_len, chunk_length, commit_version)
            if error_len:
                if io_len:
                    raise wire.ProtocolError("read reply IO with both an error and data")
                outcome.error = wire.error_from_text(meta[position:position + error_len],
                                                     f"bulk read on {self.address}")
                position += error_len
                crc_lists.append((position, 0))
            elif io_len:
                if io_len > ios[number][5] or block_size <= 0:
                    raise wire.ProtocolError(f"read reply IO of {io_len} bytes (asked {ios[number][5]}, "
                                             f"block size {block_size})")
                crc_lists.append((position, block_size))
                position += 4 * wire.segment_count(ios[number][4], io_len, block_size)
                total += io_len
            else:
                crc_lists.append((position, 0))
            outcomes.append(outcome)
        if position != meta_len or total != data_len:
            raise wire.ProtocolError(f"read reply sizes disagree (meta {position}/{meta_len}, "
                                     f"data {total}/{data_len})")
        self._recv_data(outcomes, outs)
        for number, outcome in enumerate(outcomes):
            crc_at, block_size = crc_lists[number]
            if outcome.data_len and not _crcs_match(outs[number], ios[number][4], outcome.data_len,
                                                    block_size, meta, crc_at):
                outcome.checksum_failed = True
                outcome.error = ChecksumMismatch(
                    f"chunk {ios[number][2]}:{ios[number][3]} bytes {ios[number][4]}.."
                    f"{ios[number][4] + outcome.data_len} from {self.address}: CRC32C mismatch "
                    "against the stored block checksums")
        return outcomes

    def _recv_meta(self, meta_len: int) -> memoryview:
        view = self._scratch_view(meta_len)
        recv_exact(self.sock, view)
        return view

    def _recv_data(self, outcomes: list[ReadOutcome], outs: list[memoryview]) -> None:
        run: list[int] = []
        run_bytes = 0

        def flush() -> None:
            nonlocal run, run_bytes
            if not run:
                return
            scratch = self._scratch_view(run_bytes)
            recv_exact(self.sock, scratch)
            position = 0
            for number in run:
                size = outcomes[number].data_len
                outs[number][:size] = scratch[position:position + size]
                position += size
            run, run_bytes = [], 0

        for number, outcome in enumerate(outcomes):
            size = outcome.data_len
            if not size:
                continue
            if size <= small_piece_bytes_max:
                run.append(number)
                run_bytes += size
                continue
            flush()
            recv_exact(self.sock, outs[number][:size])
        flush()

    # ---- streamed reads (one IO per frame, consumed piecewise) ----------------

    def begin_stream(self, io: tuple[int, int, int, int, int, int]) -> "ReplyStream":
        """Read the header of the reply to send_read([io]); its bytes then come through the stream.

        An error reply (whole request or the IO) raises its FfsError; the
        connection is then at a frame boundary and stays usable.
        """
        if self._rts_pending:
            self._rts_pending.popleft()      # streams never ask for request-to-send
        try:
            _, meta_len, data_len = self._reply_header(wire.OP_READ, 1, io[5])
            if meta_len < wire.READ_HEAD.size:
                raise wire.ProtocolError(f"read reply meta of {meta_len} bytes")
            meta = bytes(self._recv_meta(meta_len))
        except wire.ProtocolError as exc:
            raise self._fail("read reply", exc) from exc
        except errors.FfsError:
            raise
        except OSError as exc:
            raise self._fail("read reply", exc) from exc
        error_len, io_len, block_size, chunk_length, commit_version = wire.READ_HEAD.unpack_from(meta)
        if error_len:
            if io_len or meta_len != wire.READ_HEAD.size + error_len:
                raise self._fail("read reply", wire.ProtocolError("error IO with data"))
            raise wire.error_from_text(meta[wire.READ_HEAD.size:], f"bulk read on {self.address}")
        segments = wire.segment_count(io[4], io_len, block_size) if io_len else 0
        if (io_len != data_len or io_len > io[5] or (io_len and block_size <= 0)
                or meta_len != wire.READ_HEAD.size + 4 * segments):
            raise self._fail("read reply", wire.ProtocolError(
                f"stream reply sizes disagree (data {io_len}/{data_len}, meta {meta_len})"))
        crcs = struct.unpack_from(f"<{segments}I", meta, wire.READ_HEAD.size)
        return ReplyStream(self, io, io_len, block_size, crcs)

    # ---- writes -------------------------------------------------------------

    def write(self, chain_id: int, chain_version: int, inode: int, index: int, offset: int,
              data: memoryview, checksum: int, chunk_size: int, client_id: bytes, channel: int,
              seqnum: int, capability: bytes = b"") -> tuple[int, int, int]:
        """One chunk write to the chain head: (commit_version, chunk_length, chunk_checksum)."""
        meta = wire.WRITE_REQUEST.pack(chain_id, chain_version, inode, index, offset, chunk_size, checksum,
                                       channel, seqnum, len(client_id)) + client_id + capability
        pacing.pace(TrafficClass.STORAGE, len(data))
        sender = Sender(self.sock)
        sender.add(wire.header(wire.OP_WRITE, 1, len(meta), len(data)) + meta)
        sender.add(data)
        try:
            sender.flush()
            _, meta_len, data_len = self._reply_header(wire.OP_WRITE, 1, 0)
            if meta_len != wire.WRITE_REPLY.size:
                raise wire.ProtocolError(f"write reply meta of {meta_len} bytes")
            return wire.WRITE_REPLY.unpack(self._recv_meta(meta_len))
        except wire.ProtocolError as exc:
            raise self._fail("write", exc) from exc
        except errors.FfsError:
            raise
        except OSError as exc:
            raise self._fail("write", exc) from exc


class ReplyStream:
    """The data of one streamed read reply, received piecewise into the caller's buffers.

    Each segment's CRC32C is computed as its bytes arrive (continuing across
    calls). No byte reaches the caller before its whole segment is checked: a
    call that ends inside a segment also receives the rest of that segment
    into a carry buffer (at most one block), checks it, and hands the carried
    bytes out at the next call.
    """

    def __init__(self, connection: BulkConnection, io, data_len: int, block_size: int,
                 crcs: tuple[int, ...]) -> None:
        self.connection = connection
        self.io = io
        self.data_len = data_len
        self.received = 0             # bytes handed to the caller
        self._pulled = 0              # bytes taken off the socket (and checked, up to the carry's end)
        self._block_size = block_size
        self._crcs = crcs
        self._segment = 0
        self._running = 0
        self._carry = memoryview(b"")

    @property
    def remaining(self) -> int:
        return self.data_len - self.received

    def recv_into(self, view: memoryview) -> None:
        """Receive exactly len(view) (<= remaining) bytes into view, checking CRCs first."""
        size = len(view)
        if size > self.remaining:
            raise ValueError(f"asked {size} bytes of a stream with {self.remaining} left")
        carried = min(len(self._carry), size)
        if carried:
            view[:carried] = self._carry[:carried]
            self._carry = self._carry[carried:]
        if carried < size:
            self._pull(view[carried:])
            tail = self._segment_end(self._pulled) - self._pulled
            if tail:    # the caller's view ended inside a segment: take and check the rest of it now
                carry = memoryview(bytearray(tail))
                self._pull(carry)
                self._carry = carry
        self.received += size

    def _segment_end(self, pulled: int) -> int:
        """Stream position where the segment holding position ``pulled`` ends (pulled itself at a boundary)."""
        offset = self.io[4]
        chunk_position = offset + pulled
        if chunk_position % self._block_size == 0 or pulled >= self.data_len:
            return pulled
        return min((chunk_position // self._block_size + 1) * self._block_size, offset + self.data_len) - offset

    def _pull(self, view: memoryview) -> None:
        try:
            recv_exact(self.connection.sock, view)
        except OSError as exc:
            raise self.connection._fail("read data", exc) from exc
        self._check(view, len(view))
        self._pulled += len(view)

    def _check(self, view: memoryview, size: int) -> None:
        block_size, offset = self._block_size, self.io[4]
        start = offset + self._pulled         # chunk offset of view[0]
        end = start + size
        position = 0
        while position < size:
            chunk_position = start + position
            segment_end = min((chunk_position // block_size + 1) * block_size, offset + self.data_len)
            if chunk_position % block_size == 0:     # at a segment start
                # A run of whole blocks (the bulk of a large read): one comprehension, one comparison.
                blocks = (min(end, offset + self.data_len) - chunk_position) // block_size
                if blocks > 1:
                    stop = position + blocks * block_size
                    computed = [crc32c.crc32c(view[at:at + block_size])
                                for at in range(position, stop, block_size)]
                    expected = self._crcs[self._segment:self._segment + blocks]
                    if tuple(computed) != expected:
                        bad = next(i for i, (a, b) in enumerate(zip(computed, expected)) if a != b)
                        self._mismatch(self._segment + bad)
                    self._segment += blocks
                    position = stop
                    continue
            step = min(segment_end - chunk_position, size - position)
            self._running = crc32c.crc32c(view[position:position + step], self._running)
            position += step
            if chunk_position + step == segment_end:
                if self._running != self._crcs[self._segment]:
                    self._mismatch(self._segment)
                self._segment += 1
                self._running = 0

    def _mismatch(self, segment: int) -> None:
        self.connection.close()
        raise ChecksumMismatch(
            f"chunk {self.io[2]}:{self.io[3]} segment {segment} from {self.connection.address}: "
            "CRC32C mismatch against the stored block checksum")


def _crcs_match(out: memoryview, offset: int, data_len: int, block_size: int, meta: bytes,
                crc_at: int) -> bool:
    if offset // block_size == (offset + data_len - 1) // block_size:    # one segment: the common case
        return crc32c.crc32c(out[:data_len]) == _CRC.unpack_from(meta, crc_at)[0]
    position = crc_at
    for start, end in wire.segments(offset, data_len, block_size):
        if crc32c.crc32c(out[start:end]) != _CRC.unpack_from(meta, position)[0]:
            return False
        position += 4
    return True


class BulkPool:
    """Idle bulk connections per node address, for this process only (rebuilt after fork)."""

    def __init__(self, timeout_s: float, connect_timeout_s: float = 5.0,
                 idle_per_node_max: int = idle_connections_per_node_max) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.idle_per_node_max = idle_per_node_max
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: dict[str, list[BulkConnection]] = {}

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            stale = [c for conns in self._idle.values() for c in conns]
            self._reset()
            for connection in stale:   # the child's copies of the parent's descriptors
                connection.close()

    def get(self, address: str) -> BulkConnection:
        """An idle connection that is still open, else a new one.

        The server closes connections idle past its limit (bulk_idle_s_max); a
        closed one is readable (EOF) while idle, so it is dropped here instead of
        failing its next request as if the node were unreachable.
        """
        self._check_pid()
        while True:
            with self._lock:
                idle = self._idle.get(address)
                connection = idle.pop() if idle else None
            if connection is None:
                return BulkConnection(address, self.timeout_s, self.connect_timeout_s)
            if not closed_by_peer(connection.sock):
                return connection
            connection.close()

    def put(self, connection: BulkConnection) -> None:
        """Return a healthy connection for reuse (a broken one, or one from another pid, is closed)."""
        self._check_pid()
        if connection.broken or connection.pid != self._pid:
            connection.close()
            return
        with self._lock:
            idle = self._idle.setdefault(connection.address, [])
            if len(idle) < self.idle_per_node_max:
                idle.append(connection)
                return
        connection.close()

    def forget(self, address: str) -> None:
        """Close the idle connections to address (its node restarted or failed)."""
        self._check_pid()
        with self._lock:
            idle = self._idle.pop(address, [])
        for connection in idle:
            connection.close()

    def close(self) -> None:
        self._check_pid()
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
