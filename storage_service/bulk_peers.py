"""Chain updates to successors over their bulk listeners (proto/bulk_wire.py, op UPDATE).

Why not Storage.Update: at replication 3 a gRPC update moved each 4 MiB
through a protobuf message on both sides of every hop (serialized, framed by
HTTP/2 in 16 KiB pieces, parsed into a fresh bytes object), and the storage
processes spent about ten times the CPU per GiB of replication 1 instead of
three (issue 13's measurements; the numbers after this path are in
bench/replication_throughput.py's docstring). Here the sender hands its
buffer (the client's bytes as received, or the chunk read for a full
replace) to one ``sendmsg`` and the receiver ``recv_into``s a budgeted buffer
the chunk engine writes from.

Each update is one frame and one reply on a pooled connection, used by one
thread at a time; the sender's node token goes in the frame and the receiver
checks it as it checks gRPC call credentials (storage_service/access.py).
A connection that failed mid-frame is closed, never reused, and the failure is
Unavailable, as a dead peer is on gRPC, so the chain logic retries the same way.
"""

from __future__ import annotations

import threading

from fireflyfs.common import errors
from fireflyfs.common.errors import Unavailable
from fireflyfs.common.tls import process_tls
from fireflyfs.proto import bulk_wire as wire
from fireflyfs.proto.bulk_io import Sender, closed_by_peer, connect, recv_exact, set_timeouts

from .chain_update import ChainUpdate

idle_connections_per_peer_max = 32      # client_ops_max: updates one node forwards at once
connect_timeout_s = 5.0


class PeerTransportError(Unavailable):
    """The connection broke, timed out or spoke nonsense (not an error the successor answered)."""


class PeerConnection:
    """One connection to a successor's bulk listener."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        try:      # TLS when this node has it: the successor's certificate checked against the CA
            self.sock = connect(address, timeout_s, connect_timeout_s, process_tls.bulk_client)
        except OSError as exc:
            raise PeerTransportError(f"bulk connect to chain peer {address}: {exc}") from exc
        self.broken = False
        self._timeout_s = timeout_s
        self._header = bytearray(wire.HEADER.size)
        self._reply = bytearray(wire.error_text_bytes_max)

    def close(self) -> None:
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass

    def update(self, update: ChainUpdate, token: str, timeout_s: float) -> tuple[int, int, int]:
        """(commit_version, chunk_length, chunk_checksum) after the successor (and the chain behind
        it) applied the update; its error reply raises that FfsError (the connection stays usable)."""
        if timeout_s != self._timeout_s:
            set_timeouts(self.sock, timeout_s)
            self._timeout_s = timeout_s
        meta = update.wire_meta(token)
        sender = Sender(self.sock)
        sender.add(wire.header(wire.OP_UPDATE, 1, len(meta), len(update.data)) + meta)
        sender.add(update.data)
        try:
            sender.flush()
            recv_exact(self.sock, memoryview(self._header))
            op, status, count, meta_len, data_len = wire.parse_header(self._header)
            if status == wire.STATUS_ERROR:
                if op != wire.OP_UPDATE or data_len or meta_len > wire.error_text_bytes_max:
                    raise wire.ProtocolError(f"malformed error reply (op {op}, meta {meta_len})")
                text = memoryview(self._reply)[:meta_len]
                recv_exact(self.sock, text)
                raise wire.error_from_text(text, f"bulk update on {self.address}")
            if op != wire.OP_UPDATE or count != 1 or meta_len != wire.WRITE_REPLY.size or data_len:
                raise wire.ProtocolError(f"update reply op {op}, count {count}, meta {meta_len}, data {data_len}")
            reply = memoryview(self._reply)[:meta_len]
            recv_exact(self.sock, reply)
            return wire.WRITE_REPLY.unpack(reply)
        except wire.ProtocolError as exc:
            self.close()
            raise PeerTransportError(f"bulk update on {self.address}: {exc}") from exc
        except errors.FfsError:
            raise
        except OSError as exc:       # ConnectionError, TimeoutError, ...
            self.close()
            raise PeerTransportError(f"bulk update on {self.address}: {type(exc).__name__}: {exc}") from exc


class BulkPeers:
    """Idle connections per successor address; a node restarted on a new port gets new ones."""

    def __init__(self, token: str | None, timeout_s: float) -> None:
        self._token = token or ""
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._idle: dict[str, list[PeerConnection]] = {}

    def update(self, address: str, update: ChainUpdate, timeout_s: float) -> tuple[int, int, int]:
        connection = self._get(address)
        try:
            return connection.update(update, self._token, timeout_s)
        finally:
            self._put(connection)

    def _get(self, address: str) -> PeerConnection:
        """An idle connection the successor has not closed (it cuts idle ones), else a new one."""
        while True:
            with self._lock:
                idle = self._idle.get(address)
                connection = idle.pop() if idle else None
            if connection is None:
                return PeerConnection(address, self._timeout_s)
            if not closed_by_peer(connection.sock):
                return connection
            connection.close()

    def _put(self, connection: PeerConnection) -> None:
        if connection.broken:
            return
        with self._lock:
            idle = self._idle.setdefault(connection.address, [])
            if len(idle) < idle_connections_per_peer_max:
                idle.append(connection)
                return
        connection.close()

    def forget(self, address: str) -> None:
        """Close the idle connections to address (its node failed or moved)."""
        with self._lock:
            idle = self._idle.pop(address, [])
        for connection in idle:
            connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
