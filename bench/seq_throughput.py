"""Sequential write and read throughput of one file through fsspec, next to loopback TCP.

    python bench/seq_throughput.py [--size 1GiB] [--url ffs://host:port] [--json]

Without --url it starts a local cluster (3 storage nodes of 2 targets) in a
tmp dir and stops it at the end. The client writes the file in 4 MiB writes
from one reused buffer, then reads it back with 4 MiB ``readinto`` calls into
one reused buffer (the page cache is warm: this measures the software path, not
the disk). In the same run the same number of bytes goes through a plain
loopback TCP socket (sender in a second process, receiver ``recv_into`` a
reused 4 MiB buffer): the ceiling for any one-stream network file system on
this machine. Prints MiB/s for each and the ratio to TCP; ``--json`` prints the
same numbers as one JSON object. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

MiB = 1024 * 1024
block_bytes_default = 4 * MiB

_SENDER = r"""
import socket, sys
port, total, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
buf = memoryview(bytes(block))
with socket.create_connection(("127.0.0.1", port)) as s:
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        s.sendall(buf[:n])
        sent += n
"""


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1GiB, 256MiB, 4096)")
    factor = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 ** 4}[match.group(2).upper()]
    value = int(match.group(1)) * factor
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def tune_malloc() -> bool:
    """Keep big buffers on the heap (glibc), as the cluster processes do; see machine-limits.md."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 64 * MiB)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, 256 * MiB))
    except (OSError, AttributeError):
        return False


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tcp_loopback(total: int, block: int) -> float:
    """Seconds to move total bytes over one loopback TCP stream (receiver here, sender a process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(total), str(block)])
        try:
            connection, _ = server.accept()
            buf = bytearray(block)
            view = memoryview(buf)
            received = 0
            with connection:
                start = time.perf_counter()
                while received < total:
                    n = connection.recv_into(view, min(block, total - received))
                    if n == 0:
                        raise RuntimeError(f"sender closed after {received} of {total} bytes")
                    received += n
                elapsed = time.perf_counter() - start
        finally:
            if sender.wait(timeout=60) != 0:
                raise RuntimeError(f"TCP sender exited {sender.returncode}")
    return elapsed


def ffs_write_read(fs, path: str, total: int, block: int) -> tuple[float, float]:
    """(write seconds, read seconds) of a sequential file of total bytes, verified."""
    source = os.urandom(block)
    view = memoryview(source)
    start = time.perf_counter()
    with fs.open(path, "wb") as handle:
        written = 0
        while written < total:
            n = min(block, total - written)
            handle.write(view[:n])
            written += n
    write_s = time.perf_counter() - start

    size = fs.info(path)["size"]
    if size != total:
        raise RuntimeError(f"file size {size} after writing {total} bytes")
    buf = bytearray(block)
    start = time.perf_counter()
    with fs.open(path, "rb") as handle:
        read = 0
        first_ok = None
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            if first_ok is None:
                first_ok = buf[:n] == source[:n]
            read += n
    read_s = time.perf_counter() - start
    if read != total:
        raise RuntimeError(f"read {read} bytes of {total}")
    if not first_ok or buf[:n_last(total, block)] != source[:n_last(total, block)]:
        raise RuntimeError("read back different bytes than were written")
    return write_s, read_s


def n_last(total: int, block: int) -> int:
    return total % block or block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MiB, help="file size (default 1GiB)")
    parser.add_argument("--block", type=parse_size, default=block_bytes_default,
                        help="bytes per write/readinto (default 4MiB)")
    parser.add_argument("--url", help="an existing cluster (ffs://host:port); default: start one")
    parser.add_argument("--storage-nodes", type=int, default=3)
    parser.add_argument("--targets-per-node", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    malloc_tuned = tune_malloc()
    tmp_dir = None
    local = None
    try:
        progress(f"loopback TCP: {args.size / MiB:.0f} MiB ...")
        tcp_s = tcp_loopback(args.size, args.block)
        url = args.url
        if url is None:
            tmp_dir = tempfile.mkdtemp(prefix="ffs-bench-")
            local = LocalCluster(tmp_dir, storage_nodes=args.storage_nodes,
                                 targets_per_node=args.targets_per_node, python=sys.executable)
            progress(f"starting a local cluster in {tmp_dir} ...")
            url = local.up()
        fs, _ = fsspec.url_to_fs(url)
        path = f"/bench-{uuid.uuid4().hex[:8]}/seq.bin"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        progress(f"ffs write+read {args.size / MiB:.0f} MiB on {url} ...")
        try:
            write_s, read_s = ffs_write_read(fs, path, args.size, args.block)
        finally:
            fs.rm(path.rsplit("/", 1)[0], recursive=True)
    finally:
        if local is not None:
            local.down()
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    mib = args.size / MiB
    result = {
        "size_bytes": args.size, "block_bytes": args.block, "url": url if args.url else "local",
        "write_s": round(write_s, 4), "read_s": round(read_s, 4), "tcp_s": round(tcp_s, 4),
        "write_mib_s": round(mib / write_s, 1), "read_mib_s": round(mib / read_s, 1),
        "tcp_mib_s": round(mib / tcp_s, 1),
        "write_ratio_to_tcp": round(tcp_s / write_s, 3), "read_ratio_to_tcp": round(tcp_s / read_s, 3),
        "malloc_tuned": malloc_tuned,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"size {mib:.0f} MiB, {args.block // 1024} KiB per call")
        print(f"{'path':<22}{'MiB/s':>10}{'vs TCP':>9}")
        print(f"{'ffs sequential write':<22}{result['write_mib_s']:>10.1f}{result['write_ratio_to_tcp']:>9.2f}")
        print(f"{'ffs sequential read':<22}{result['read_mib_s']:>10.1f}{result['read_ratio_to_tcp']:>9.2f}")
        print(f"{'loopback TCP':<22}{result['tcp_mib_s']:>10.1f}{1:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
