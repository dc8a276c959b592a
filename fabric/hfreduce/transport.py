"""TCP links between HFReduce ranks: marked, framed by size, identified by a hello.

Each rank listens on one port. A link is opened by the side that knows whom
it wants (a child to its tree parent, a local member to its host leader, a
ring rank to its right neighbour) and starts with a fixed hello naming the
link's purpose and the sender's rank, so the listener can sort accepted
sockets without any further handshake. Every socket, listener included, is
marked with the HFREDUCE traffic class and has Nagle off (chunks are sent
whole and the next step waits for them).

Data needs no framing: both ends know from the allreduce arguments how many
bytes come next, and a per-call header (checked on every tree edge) catches
ranks that disagree.
"""

from __future__ import annotations

import enum
import socket
import struct
import time

from fireflyfs.common.traffic import TrafficClass, mark_socket

HELLO = struct.Struct("!4sBI")
MAGIC = b"HFR1"
socket_buffer_bytes = 4 * 1024 * 1024


class LinkKind(enum.IntEnum):
    TREE0 = 0
    TREE1 = 1
    LOCAL = 2
    RING = 3


class LinkError(ConnectionError):
    """A peer closed its link or sent something unexpected."""


def _tune(sock: socket.socket) -> None:
    mark_socket(sock, TrafficClass.HFREDUCE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, socket_buffer_bytes)
        except OSError:
            pass


def listen(host: str, backlog: int = 128) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _tune(sock)
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock


def connect(address: tuple[str, int], kind: LinkKind, rank: int, timeout_s: float) -> socket.socket:
    """Open a link to address and introduce ourselves; retries until timeout_s (peer starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
        _tune(sock)          # marked before connect: the SYN carries the class too
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            sock.connect(address)
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sock.settimeout(None)
    sock.sendall(HELLO.pack(MAGIC, int(kind), rank))
    return sock


def accept(listener: socket.socket, deadline: float) -> tuple[LinkKind, int, socket.socket]:
    """One introduced link: (kind, peer rank, socket)."""
    listener.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        sock, _ = listener.accept()
    except socket.timeout:
        raise TimeoutError("HFReduce peers did not connect in time") from None
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    _tune(sock)
    hello = bytearray(HELLO.size)
    recv_into(sock, memoryview(hello))
    sock.settimeout(None)
    magic, kind, rank = HELLO.unpack(hello)
    if magic != MAGIC:
        sock.close()
        raise LinkError(f"not an HFReduce peer (hello {bytes(hello)!r})")
    return LinkKind(kind), rank, sock


def recv_into(sock: socket.socket, view: memoryview) -> None:
    """Fill view exactly from sock (raises LinkError if the peer closes first)."""
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    while view.nbytes:
        received = sock.recv_into(view)
        if received == 0:
            raise LinkError("HFReduce peer closed the link")
        view = view[received:]


def send(sock: socket.socket, data) -> None:
    sock.sendall(memoryview(data).cast("B"))
