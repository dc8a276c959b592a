"""Sequential write and read throughput of one file through fsspec, next to loopback TCP.

    python bench/seq_throughput.py [--size 1GiB] [--repeats 3] [--url ffs://host:port]
                                   [--insecure] [--json]

Without --url it starts a local cluster (3 storage nodes of 2 targets, replication 1
unless --replicas says otherwise) in a
tmp dir and stops it at the end. The client writes the file in 4 MiB writes
from one reused buffer, then reads it back with 4 MiB ``readinto`` calls into
one reused buffer (the page cache is warm: this measures the software path, not
the disk). In the same run the same number of bytes goes through a plain
loopback TCP socket (sender in a second process, receiver ``recv_into`` a
reused 4 MiB buffer): the ceiling for any one-stream network file system on
this machine. The same bytes also go through a loopback TLS stream (TLS 1.3,
Python's ssl, as the cluster's secure default): the ceiling for an encrypted
one, since encryption, not the file system, bounds it. Also ``f.read()`` of the whole file next to the socket receiving
the same bytes into one fresh buffer of the file's size (first-touch page
faults dominate both). And for the write, the same bytes written to a local
file in the same 4 MiB calls with an fdatasync after each call: what a first
write that is durable when each call returns costs on this disk without
FireflyFS (its writes are durable on every replica when acknowledged:
docs/durability.md). Each figure is the best of ``--repeats`` rounds, the
rounds alternating the baselines and FireflyFS so a busy machine hurts both alike.
Prints MiB/s for each and the ratio to TCP; ``--json`` prints the same numbers
as one JSON object. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from fireflyfs.common.limits import MiB
from fireflyfs.common.process_tuning import keep_large_buffers_on_heap
from fireflyfs.common.units import parse_positive_size

block_bytes_default = 4 * MiB

_SENDER = r"""
import socket, ssl, sys
port, total, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
buf = memoryview(bytes(block))
with socket.create_connection(("127.0.0.1", port)) as s:
    if len(sys.argv) > 4:      # cert and key: the TLS server side, as a storage node is
        from fireflyfs.common import tls
        s = tls.server_context(tls.TlsFiles(sys.argv[4], sys.argv[5], sys.argv[4])).wrap_socket(
            s, server_side=True)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        s.sendall(buf[:n])
        sent += n
"""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tcp_loopback(total: int, block: int, fresh: bool = False, tls_dir: str | None = None) -> float:
    """Seconds to move total bytes over one loopback TCP stream (receiver here, sender a process).

    fresh: receive everything into one new buffer of total bytes (as ``f.read()`` must).
    tls_dir: the stream is TLS with a throwaway certificate made there (the sender is the
    TLS server, as a storage node is to a reader): the ceiling with the cluster's encryption.
    """
    tls_args, client_context = [], None
    if tls_dir is not None:
        from fireflyfs.common import tls

        ca, _ = tls.ensure_ca(os.path.join(tls_dir, "ca"))
        files = tls.issue(os.path.join(tls_dir, "ca"), os.path.join(tls_dir, "sender"), "sender",
                          ["127.0.0.1"])
        tls_args, client_context = [files.cert, files.key], tls.client_context(ca)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(total), str(block),
                                   *tls_args])
        try:
            connection, _ = server.accept()
            if client_context is not None:
                connection = client_context.wrap_socket(connection, server_side=False,
                                                        server_hostname="127.0.0.1")
            received = 0
            with connection:
                start = time.perf_counter()
                if fresh:
                    view = memoryview(bytearray(total))
                    while received < total:
                        n = connection.recv_into(view[received:], min(block, total - received))
                        if n == 0:
                            raise RuntimeError(f"sender closed after {received} of {total} bytes")
                        received += n
                else:
                    view = memoryview(bytearray(block))
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


def local_durable_write(directory: str, total: int, block: int) -> float:
    """Seconds to write total bytes to a new local file in block-sized calls, fdatasync after each."""
    buffer = memoryview(bytes(block))
    path = os.path.join(directory, f"local-write-{uuid.uuid4().hex[:8]}.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        start = time.perf_counter()
        written = 0
        while written < total:
            written += os.write(fd, buffer[:min(block, total - written)])
            os.fdatasync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)


def ffs_write_read(fs, path: str, total: int, block: int) -> tuple[float, float, float]:
    """(write seconds, readinto seconds, whole read() seconds) of a sequential file, verified."""
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
    with fs.open(path, "rb", cache_type="none") as handle:
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
    start = time.perf_counter()
    with fs.open(path, "rb", cache_type="none") as handle:
        data = handle.read()
    whole_s = time.perf_counter() - start
    if len(data) != total or data[:block] != source[:block] or data[-n_last(total, block):] != \
            source[:n_last(total, block)]:
        raise RuntimeError("read() returned different bytes than were written")
    del data
    return write_s, read_s, whole_s


def wait_prefill(local, storage_nodes: int, timeout_s: float = 120.0) -> None:
    """Until every storage node logged that its chunk pools are prefilled (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = [local.log_file(f"storage-{n}").read_text(errors="replace") for n in range(1, storage_nodes + 1)]
        if all(text.count("chunk pool prefilled") >= local.targets_per_node for text in logs):
            return
        time.sleep(0.2)
    progress("chunk pool prefill did not finish in time; measuring anyway")


def n_last(total: int, block: int) -> int:
    return total % block or block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_positive_size, default=1024 * MiB, help="file size (default 1GiB)")
    parser.add_argument("--block", type=parse_positive_size, default=block_bytes_default,
                        help="bytes per write/readinto (default 4MiB)")
    parser.add_argument("--url", help="an existing cluster (ffs://host:port); default: start one")
    parser.add_argument("--storage-nodes", type=int, default=3)
    parser.add_argument("--targets-per-node", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1,
                        help="chain length of the local cluster (default 1, as the issue's targets)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each figure is the best")
    parser.add_argument("--pool-prefill-mib", type=int, default=0,
                        help="local cluster: per target, chunk files made before the run (storage "
                             "--chunk-pool-prefill-mib), so writes overwrite cached pages")
    parser.add_argument("--insecure", action="store_true",
                        help="local cluster without TLS or tokens (loopback development mode)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import fsspec

    from fireflyfs.deploy.local_cluster import LocalCluster

    malloc_tuned = keep_large_buffers_on_heap()
    tmp_dir = None
    local = None
    best = {"tcp": float("inf"), "tcp_fresh": float("inf"), "write": float("inf"), "read": float("inf"),
            "read_whole": float("inf"), "local_write": float("inf"), "tls": float("inf")}
    try:
        url = args.url
        if url is None:
            tmp_dir = tempfile.mkdtemp(prefix="ffs-bench-")
            extra_env = {"FFS_CHUNK_POOL_PREFILL_MIB": str(args.pool_prefill_mib)} if args.pool_prefill_mib else {}
            local = LocalCluster(tmp_dir, storage_nodes=args.storage_nodes,
                                 targets_per_node=args.targets_per_node, replicas=args.replicas,
                                 python=sys.executable, extra_env=extra_env, insecure=args.insecure)
            progress(f"starting a local cluster in {tmp_dir} ...")
            url = local.up()
            if args.pool_prefill_mib:
                wait_prefill(local, args.storage_nodes)
        fs, _ = fsspec.url_to_fs(url)
        base = f"/bench-{uuid.uuid4().hex[:8]}"
        fs.makedirs(base, exist_ok=True)
        try:
            for repeat in range(args.repeats):
                progress(f"round {repeat + 1}/{args.repeats}: loopback TCP {args.size / MiB:.0f} MiB ...")
                best["tcp"] = min(best["tcp"], tcp_loopback(args.size, args.block))
                best["tcp_fresh"] = min(best["tcp_fresh"], tcp_loopback(args.size, args.block, fresh=True))
                with tempfile.TemporaryDirectory(prefix="ffs-bench-tls-") as tls_dir:
                    best["tls"] = min(best["tls"], tcp_loopback(args.size, args.block, tls_dir=tls_dir))
                best["local_write"] = min(best["local_write"],
                                          local_durable_write(tmp_dir or tempfile.gettempdir(), args.size, args.block))
                progress(f"round {repeat + 1}/{args.repeats}: ffs write+read on {url} ...")
                path = f"{base}/seq-{repeat}.bin"
                write_s, read_s, whole_s = ffs_write_read(fs, path, args.size, args.block)
                best["write"] = min(best["write"], write_s)
                best["read"] = min(best["read"], read_s)
                best["read_whole"] = min(best["read_whole"], whole_s)
                fs.rm(path)
        finally:
            fs.rm(base, recursive=True)
    finally:
        if local is not None:
            local.down()
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    mib = args.size / MiB
    tcp_s, fresh_s = best["tcp"], best["tcp_fresh"]
    result = {
        "size_bytes": args.size, "block_bytes": args.block, "url": url if args.url else "local",
        "replicas": args.replicas if args.url is None else None, "repeats": args.repeats,
        "write_s": round(best["write"], 4), "read_s": round(best["read"], 4),
        "read_whole_s": round(best["read_whole"], 4), "tcp_s": round(tcp_s, 4),
        "tcp_fresh_s": round(fresh_s, 4), "local_write_s": round(best["local_write"], 4),
        "local_write_mib_s": round(mib / best["local_write"], 1),
        "write_ratio_to_local_disk": round(best["local_write"] / best["write"], 3),
        "write_mib_s": round(mib / best["write"], 1), "read_mib_s": round(mib / best["read"], 1),
        "read_whole_mib_s": round(mib / best["read_whole"], 1),
        "tcp_mib_s": round(mib / tcp_s, 1), "tcp_fresh_mib_s": round(mib / fresh_s, 1),
        "write_ratio_to_tcp": round(tcp_s / best["write"], 3),
        "read_ratio_to_tcp": round(tcp_s / best["read"], 3),
        "tls_mib_s": round(mib / best["tls"], 1),
        "read_ratio_to_tls": round(best["tls"] / best["read"], 3),
        "insecure": bool(args.insecure) if args.url is None else None,
        "read_whole_ratio_to_tcp_fresh": round(fresh_s / best["read_whole"], 3),
        "malloc_tuned": malloc_tuned, "pool_prefill_mib": args.pool_prefill_mib,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"size {mib:.0f} MiB, {args.block // 1024} KiB per call, best of {args.repeats}, "
              f"chunk pool prefill {args.pool_prefill_mib} MiB per target")
        print(f"{'path':<34}{'MiB/s':>10}{'ratio':>9}")
        rows = [("ffs sequential write", "write_mib_s", "write_ratio_to_local_disk"),
                ("local disk write, fdatasync/call", "local_write_mib_s", None),
                ("ffs sequential write", "write_mib_s", "write_ratio_to_tcp"),
                ("ffs sequential readinto", "read_mib_s", "read_ratio_to_tcp"),
                ("loopback TCP (reused 4 MiB)", "tcp_mib_s", None),
                ("ffs sequential readinto", "read_mib_s", "read_ratio_to_tls"),
                ("loopback TLS (reused 4 MiB)", "tls_mib_s", None),
                ("ffs f.read() of the whole file", "read_whole_mib_s", "read_whole_ratio_to_tcp_fresh"),
                ("loopback TCP (one fresh buffer)", "tcp_fresh_mib_s", None)]
        for name, value, ratio in rows:
            print(f"{name:<34}{result[value]:>10.1f}{(result[ratio] if ratio else 1.0):>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
