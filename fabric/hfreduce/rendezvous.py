"""Rendezvous: every rank learns every rank's host and HFReduce address.

As torch.distributed's env:// method: rank 0 serves a one-shot store at
MASTER_ADDR:MASTER_PORT; each rank (rank 0 too) connects, sends one JSON line
{rank, host, address}, and receives the full table once all WORLD_SIZE ranks
have checked in. The store then closes; links between ranks are opened
directly afterwards. The connection is control traffic (CONTROL class).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

from fireflyfs.common.traffic import TrafficClass, mark_socket

log = logging.getLogger(__name__)

line_bytes_max = 1 << 20


class RendezvousError(RuntimeError):
    """The ranks could not all meet (timeout, duplicate rank, bad world size)."""


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            raise RendezvousError("rendezvous timed out") from None
        if not piece:
            raise RendezvousError("rendezvous peer closed the connection")
        data += piece
        if len(data) > line_bytes_max:
            raise RendezvousError("rendezvous message too long")
    return bytes(data)


class Store:
    """Rank 0's one-shot store: collects world_size entries, answers everyone, closes."""

    def __init__(self, host: str, port: int, world_size: int, timeout_s: float) -> None:
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.error: Exception | None = None
        self._listener = socket.create_server((host, port), backlog=max(16, world_size),
                                              reuse_port=False)
        mark_socket(self._listener, TrafficClass.CONTROL)
        self._thread = threading.Thread(target=self._serve, name="hfreduce-store", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        clients: dict[int, socket.socket] = {}
        entries: dict[int, dict] = {}
        try:
            while len(entries) < self.world_size:
                self._listener.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    sock, _ = self._listener.accept()
                except socket.timeout:
                    raise RendezvousError(f"only {len(entries)} of {self.world_size} ranks "
                                          f"checked in") from None
                mark_socket(sock, TrafficClass.CONTROL)
                entry = json.loads(_read_line(sock, deadline))
                rank = int(entry["rank"])
                if rank in entries or not 0 <= rank < self.world_size:
                    sock.close()
                    raise RendezvousError(f"rank {rank} checked in twice or is out of range")
                if int(entry["world_size"]) != self.world_size:
                    sock.close()
                    raise RendezvousError(f"rank {rank} says world size {entry['world_size']}, "
                                          f"rank 0 says {self.world_size}")
                entries[rank] = entry
                clients[rank] = sock
            table = json.dumps([entries[r] for r in range(self.world_size)]).encode() + b"\n"
            for sock in clients.values():
                sock.sendall(table)
        except Exception as exc:  # reported to rank 0's own join; the others time out clearly
            self.error = exc
            log.error("rendezvous store failed: %s", exc)
        finally:
            for sock in clients.values():
                sock.close()
            self._listener.close()

    def join(self) -> None:
        self._thread.join()


def exchange(master: tuple[str, int], rank: int, world_size: int, entry: dict,
             timeout_s: float, connected: socket.socket) -> list[dict]:
    """Send our entry on the already-connected socket, return the table of all ranks."""
    deadline = time.monotonic() + timeout_s
    entry = dict(entry, rank=rank, world_size=world_size)
    connected.sendall(json.dumps(entry).encode() + b"\n")
    table = json.loads(_read_line(connected, deadline))
    connected.close()
    if len(table) != world_size:
        raise RendezvousError(f"rendezvous at {master} returned {len(table)} ranks, want {world_size}")
    return table


def connect_store(master: tuple[str, int], timeout_s: float) -> socket.socket:
    """A connection to the store (retried while rank 0 starts); its local address is our address."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection(master, timeout=max(0.1, deadline - time.monotonic()))
            mark_socket(sock, TrafficClass.CONTROL)
            return sock
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RendezvousError(f"no rendezvous store at {master[0]}:{master[1]}: {exc}") from exc
            time.sleep(0.05)
