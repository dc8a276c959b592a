"""Bulk TCP traffic for the testbed: ``python -m fireflyfs.deploy.testbed_probe sink|source ...``.

A source sends as fast as TCP allows for some seconds on a socket marked
with a traffic class; a sink receives from any number of sources and prints
one JSON line: bytes and goodput per traffic class tag. Tests use it to see
the bottleneck's rate and the HTB class each DSCP lands in; the isolation
benchmark can use it as background load.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

from fireflyfs.common.traffic import TrafficClass, mark_socket

block_bytes = 64 * 1024


def sink(listen: str, seconds: float, sources: int) -> dict:
    host, port = listen.rsplit(":", 1)
    server = socket.create_server((host, int(port)))
    server.settimeout(seconds + 10)
    totals: dict[str, list[float]] = {}
    lock = threading.Lock()

    def drain(conn: socket.socket) -> None:
        tag = conn.recv(16).decode().strip()
        buffer = bytearray(block_bytes)
        received, first, last = 0, None, None
        while True:
            n = conn.recv_into(buffer)
            if not n:
                break
            now = time.monotonic()
            first = first or now
            last = now
            received += n
        conn.close()
        with lock:
            entry = totals.setdefault(tag, [0, float("inf"), 0.0])
            entry[0] += received
            entry[1] = min(entry[1], first or now)
            entry[2] = max(entry[2], last or now)

    threads = []
    print(json.dumps({"listening": listen}), flush=True)
    for _ in range(sources):
        conn, _ = server.accept()
        thread = threading.Thread(target=drain, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    server.close()
    return {tag: {"bytes": int(b), "seconds": round(e - s, 3),
                  "mbit": round(b * 8 / max(e - s, 1e-6) / 1e6, 2)} for tag, (b, s, e) in totals.items()}


def source(to: str, traffic_class: str, seconds: float, tag: str, congestion: str | None = None) -> int:
    host, port = to.rsplit(":", 1)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    mark_socket(sock, TrafficClass(traffic_class))
    if congestion:      # e.g. cubic, which fills queues (the namespace default may be bbr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
    sock.sendall(tag.encode().ljust(16))
    payload = bytes(block_bytes)
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(payload)
        sent += len(payload)
    sock.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.deploy.testbed_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    sink_parser = sub.add_parser("sink")
    sink_parser.add_argument("--listen", required=True)
    sink_parser.add_argument("--seconds", type=float, default=5)
    sink_parser.add_argument("--sources", type=int, default=1)
    source_parser = sub.add_parser("source")
    source_parser.add_argument("--to", required=True)
    source_parser.add_argument("--traffic-class", default="storage")
    source_parser.add_argument("--seconds", type=float, default=2)
    source_parser.add_argument("--tag", default=None)
    source_parser.add_argument("--congestion", default=None, help="TCP congestion control, e.g. cubic")
    args = parser.parse_args(argv)
    if args.command == "sink":
        print(json.dumps(sink(args.listen, args.seconds, args.sources)), flush=True)
    else:
        source(args.to, args.traffic_class, args.seconds, args.tag or args.traffic_class, args.congestion)
    return 0


if __name__ == "__main__":
    sys.exit(main())
