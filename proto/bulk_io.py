"""Socket helpers of the bulk protocol, shared by the storage node and the client.

Blocking sockets with kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) instead of
Python's socket timeouts: a Python timeout puts the socket in non-blocking
mode and adds a poll() before every call, and ``os.sendfile`` on such a
socket fails with EAGAIN instead of waiting. A kernel timeout makes a stuck
peer surface as ``TimeoutError`` after the deadline.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import struct
from typing import Callable

from fireflyfs.common.traffic import TrafficClass, mark_socket


iovecs_per_sendmsg_max = 512        # below IOV_MAX (1024)
sendfile_bytes_min = 64 * 1024      # smaller file ranges are read and sent from memory
_ZEROS = memoryview(bytes(1 << 20))


def set_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel send/receive timeouts on a blocking socket (0: none)."""
    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000)
    timeval = struct.pack("ll", whole, micro)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def tune(sock: socket.socket, timeout_s: float) -> None:
    """Blocking with kernel timeouts, no Nagle delay, and marked as storage traffic (common/traffic.py)."""
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    set_timeouts(sock, timeout_s)
    try:
        mark_socket(sock, TrafficClass.STORAGE)
    except (OSError, ValueError):
        pass     # marking is advisory; a bad override must not stop the data path


def connect(address: str, timeout_s: float, connect_timeout_s: float, tls_context=None) -> socket.socket:
    """A tuned connection to a bulk listener at host:port, wrapped in TLS when tls_context is
    given (the listener's certificate checked against its CA); OSError when it cannot be made."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=connect_timeout_s)
    try:
        tune(sock, timeout_s)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def _timed_out(exc: OSError) -> bool:
    # On TLS, the kernel timeout surfaces as the SSL layer wanting more (the socket stays blocking).
    return (isinstance(exc, (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError))
            or exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK))


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill view from sock; ConnectionError on EOF, TimeoutError when the peer stalls."""
    position, total = 0, len(view)
    while position < total:
        try:
            count = sock.recv_into(view[position:], total - position)
        except OSError as exc:
            if _timed_out(exc):
                raise TimeoutError(f"bulk peer sent nothing for the timeout ({position} of {total} bytes)") from exc
            raise
        if count == 0:
            raise ConnectionError(f"bulk peer closed the connection ({position} of {total} bytes read)")
        position += count


class IdleTimeout(TimeoutError):
    """No frame started within the timeout: the peer is idle, not stuck mid-frame."""


def recv_header(sock: socket.socket, view: memoryview, started: Callable[[], None] | None = None) -> bool:
    """Fill view (a frame header); False on a clean EOF before its first byte.

    started() runs once the first bytes are in: the server's request deadline starts there.
    """
    try:
        count = sock.recv_into(view, len(view))
    except OSError as exc:
        if _timed_out(exc):
            raise IdleTimeout("bulk peer sent no frame within the timeout") from exc
        raise
    if count == 0:
        return False
    if started is not None:
        started()
    if count < len(view):
        recv_exact(sock, view[count:])
    return True


def discard(sock: socket.socket, count: int, scratch: memoryview) -> None:
    """Read and drop count bytes."""
    while count > 0:
        step = min(count, len(scratch))
        recv_exact(sock, scratch[:step])
        count -= step


def readable_now(sock) -> bool:
    """Bytes a TLS socket already decrypted and holds: poll() on its descriptor does not see them."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def closed_by_peer(sock: socket.socket) -> bool:
    """True when an idle socket has something to read: the peer closed it (nothing else is due)."""
    if readable_now(sock):
        return True
    poller = select.poll()     # not select(): descriptors past 1024 are normal once RLIMIT_NOFILE is raised
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


class Sender:
    """Gathers buffers and sends them with few sendmsg calls; file ranges go by sendfile.

    On a TLS socket the kernel cannot send file pages itself (Python's ssl has no kernel TLS):
    buffers are joined and encrypted by sendall, file ranges read with pread first.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._buffers: list = []
        self.sent = 0

    def add(self, buffer) -> None:
        if len(buffer):
            self._buffers.append(buffer)

    def flush(self) -> None:
        buffers, self._buffers = self._buffers, []
        if self._tls and buffers:
            try:
                self.sock.sendall(b"".join(buffers) if len(buffers) > 1 else buffers[0])
            except OSError as exc:
                if _timed_out(exc):
                    raise TimeoutError("bulk peer stopped reading for the timeout") from exc
                raise
            self.sent += sum(len(buffer) for buffer in buffers)
            return
        while buffers:
            group = buffers[:iovecs_per_sendmsg_max]
            try:
                count = self.sock.sendmsg(group)
            except OSError as exc:
                if _timed_out(exc):
                    raise TimeoutError("bulk peer stopped reading for the timeout") from exc
                raise
            self.sent += count
            consumed = 0
            while consumed < len(group) and count >= len(group[consumed]):
                count -= len(group[consumed])
                consumed += 1
            buffers = buffers[consumed:]
            if count:
                buffers[0] = memoryview(buffers[0])[count:]

    def add_file(self, fd: int, offset: int, count: int) -> None:
        """Send [offset, offset+count) of fd; zeros if the file ends early (the CRC check catches it)."""
        if count < sendfile_bytes_min or self._tls:
            data = os.pread(fd, count, offset)
            self.add(data)
            if len(data) < count:
                self._add_zeros(count - len(data))
            return
        self.flush()
        out = self.sock.fileno()
        while count > 0:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except OSError as exc:
                if _timed_out(exc):
                    raise TimeoutError("bulk peer stopped reading for the timeout") from exc
                raise
            if sent == 0:   # the file got shorter (a racing truncate): keep the frame's length
                self._add_zeros(count)
                return
            self.sent += sent
            offset += sent
            count -= sent

    def _add_zeros(self, count: int) -> None:
        while count > 0:
            step = min(count, len(_ZEROS))
            self.add(_ZEROS[:step])
            count -= step
