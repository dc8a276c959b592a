"""A writer SIGKILLed while holding write sessions: lengths settle and GC goes on within the lease.

Goal (issue 10, must hold): a client process that dies holding write sessions
on several files no longer pins them: once its lease lapses the metadata
service ends its sessions as its Close would, so each surviving file's length
becomes what storage holds, and files another client unlinked meanwhile are
reclaimed by GC.
Method: a real cluster whose meta process runs with a short lease
(FFS_META_SESSION_LEASE_MS). A writer subprocess (a real FfsClient, whose
renewer thread keeps its sessions alive) creates files and writes seeded
amounts without closing them; the test first checks the sessions outlive
several leases while the writer lives, then unlinks some files through another
client, SIGKILLs the writer, and waits for the sessions to end, the lengths to
settle and the unlinked files' chunks to leave storage.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from fireflyfs.client.client import FfsClient
from fireflyfs.common.layout import Layout
from fireflyfs.common.limits import KiB

from ..conftest import announce_seed, seed_from_env

LEASE_MS = 1500
SETTLE_WAIT_S = 60           # a liveness bound (lease + reaper + GC passes), generous for a loaded host
CHUNK_BYTES = 64 * KiB

WRITER = r"""
import json, sys, time
from fireflyfs.client.client import FfsClient
address, spec = sys.argv[1], json.loads(sys.argv[2])
client = FfsClient(address)
opened = []
for path, size, fill in spec:
    handle = client.create(path, chunk_size=%d)
    client.pwrite(handle, 0, bytes([fill]) * size)
    opened.append([path, handle.inode_id])
print(json.dumps(opened), flush=True)
time.sleep(3600)   # holding every session until killed
""" % CHUNK_BYTES


def wait_for(predicate, what: str, timeout_s: float = SETTLE_WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)


def test_a_killed_writer_releases_its_files(make_cluster, request, tmp_path):
    seed = seed_from_env()
    rng = random.Random(seed)
    count = rng.randint(3, 6)
    sizes = [rng.randint(1, 5 * CHUNK_BYTES) for _ in range(count)]
    unlinked = set(rng.sample(range(count), rng.randint(1, count - 1)))
    announce_seed(request, seed, files=count, sizes=sizes, unlinked=sorted(unlinked), lease_ms=LEASE_MS)

    cluster = make_cluster(storage_nodes=2, replicas=2,
                           extra_env={"FFS_META_SESSION_LEASE_MS": str(LEASE_MS)})
    spec = [[f"/leases/f{i}", size, i + 1] for i, size in enumerate(sizes)]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, cluster.meta_address, json.dumps(spec)],
                              stdout=subprocess.PIPE, stderr=open(tmp_path / "writer.log", "wb"),
                              env=dict(os.environ))
    try:
        line = writer.stdout.readline()
        assert line, f"writer failed: {(tmp_path / 'writer.log').read_text()[-2000:]}"
        inodes = {path: inode_id for path, inode_id in json.loads(line)}
        other = FfsClient(cluster.meta_address)

        time.sleep(3 * LEASE_MS / 1000)   # three leases: only renewals keep the sessions
        for path, _size, _fill in spec:
            assert other.stat(path).open_write_sessions == 1, f"{path}: a live writer keeps its session"
        layouts = {path: Layout.from_proto(other.stat(path).layout) for path, _, _ in spec}
        for i in unlinked:
            other.remove(spec[i][0])
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)

        for i, (path, size, fill) in enumerate(spec):
            if i in unlinked:
                continue
            settled = wait_for(lambda: (lambda inode: inode if not inode.open_write_sessions else None)(
                other.stat(path)), f"{path}: the dead writer's session ends")
            assert settled.length == size, f"{path}: the length settles to what storage holds"
            assert other.read_file(path) == bytes([fill]) * size
        for i in unlinked:
            path = spec[i][0]
            wait_for(lambda: other.storage.file_length_from_chunks(inodes[path], layouts[path]) == 0,
                     f"{path}: GC removes the unlinked file's chunks")
        wait_for(lambda: other.statfs().gc_pending == 0, "the GC queue drains")
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
