"""A packet capture on loopback in pure Python (AF_PACKET), to read DSCP marks off the wire.

Needs root (CAP_NET_RAW); ``capture_available()`` says whether this process
can capture, so tests skip cleanly elsewhere. No tcpdump needed.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

ETH_P_ALL = 0x0003
TCP_FLAG_RST = 0x04


def capture_available() -> bool:
    if not hasattr(socket, "AF_PACKET") or os.geteuid() != 0:
        return False
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except OSError:
        return False
    return True


class LoopbackCapture:
    """Records (src port, dst port, TOS byte) of every IPv4 TCP packet seen on lo, resets excepted."""

    def __init__(self, interface: str = "lo") -> None:
        self.packets: list[tuple[int, int, int]] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # The capture sees all of lo: a roomy buffer keeps other processes' bulk traffic
        # from crowding out the few packets a test looks for.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self._sock.bind((interface, 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LoopbackCapture":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, meta = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if meta[2] == socket.PACKET_OUTGOING:
                continue   # lo shows each packet twice: outgoing and incoming
            ip = frame[14:]
            if len(ip) < 24 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
                continue
            header_bytes = (ip[0] & 0x0F) * 4
            src_port, dst_port = struct.unpack("!HH", ip[header_bytes:header_bytes + 4])
            if len(ip) > header_bytes + 13 and ip[header_bytes + 13] & TCP_FLAG_RST:
                # The kernel answers with a RST from no socket (tcp_v4_send_reset) and copies
                # the TOS of the segment it answers: the peer's mark, not this side's.
                continue
            self.packets.append((src_port, dst_port, ip[1]))

    def tos_from_port(self, port: int) -> set[int]:
        """TOS bytes of packets sent from port (by the side that owns port)."""
        return {tos for src, _, tos in self.packets if src == port}

    def tos_to_port(self, port: int) -> set[int]:
        """TOS bytes of packets sent to port (by its peers)."""
        return {tos for _, dst, tos in self.packets if dst == port}
