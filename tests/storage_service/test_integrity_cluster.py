"""Bit rot on a real cluster: readers never see it, reads and scrub get it repaired from a replica.

Method: a dedicated cluster (3 storage nodes, chains of 3 replicas) whose
storage nodes scrub fast (FFS_SCRUB_BYTES_PER_S) with a pass every few seconds
(FFS_SCRUB_INTERVAL_S), once with the bulk data path and once gRPC only
(FFS_STORAGE_BULK=0 on the storage nodes). Two files are written; right after
a scrub pass ended, the test flips a byte in a random block of a random
replica's chunk file on disk for each: file A is read in a loop by a reader
thread (whole-file reads and sequential fsspec reads), file B by nobody.

Must hold: every read returns the file's bytes. A's rotten replica is found
by the read path before the next scrub pass (bulk: the client catches the
unchecked blocks and reports the replica; gRPC: the node's own check) and
rewritten; B's is found and rewritten by the next scrub pass. Both replicas'
chunk files then hold the right bytes again, ScrubStatus counts what happened,
and ``ffs admin scrub --json`` shows it. Everything random comes from the
test's seed.
"""

from __future__ import annotations

import json
import random
import threading

import fsspec
import pytest
from click.testing import CliRunner

from fireflyfs.cli.main import cli
from fireflyfs.client.client import FfsClient
from fireflyfs.common.layout import Layout
from fireflyfs.common import limits
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from fireflyfs.storage_service.chunk_meta import chunk_key
from tests import trust

from tests.conftest import announce_seed, seed_from_env

CHUNK = 256 * KiB
SCRUB_INTERVAL_S = 4
wait_rounds_max = 600          # 0.1 s each: a bound on waiting, not a speed assertion


def scrub_status(client: FfsClient) -> dict[int, storage_pb2.TargetScrubStatus]:
    """Storage.ScrubStatus of every storage node, per target id."""
    found = {}
    for node in client.routing.routing_info().nodes:
        if node.type != types_pb2.NODE_STORAGE:
            continue
        with make_channel(node.address, token=trust.ADMIN_TOKEN) as channel:
            reply = storage_pb2_grpc.StorageStub(channel).ScrubStatus(types_pb2.Empty(), timeout=10)
        found.update({status.target_id: status for status in reply.targets})
    return found


def wait_until(predicate, what: str):
    pause = threading.Event()
    for _ in range(wait_rounds_max):
        value = predicate()
        if value:
            return value
        pause.wait(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Replica:
    """One replica's chunk file of one chunk, on disk under the cluster's directory."""

    def __init__(self, local, target_id: int, node_id: int, inode: int, index: int) -> None:
        self.target_id = target_id
        self.chunks_dir = local.data_dir(f"storage-{node_id}") / f"target-{target_id}" / "chunks"
        self.prefix = chunk_key(inode, index).hex() + "."

    def files(self) -> list:
        return [p for p in self.chunks_dir.iterdir() if p.name.startswith(self.prefix)]

    def path(self):
        files = self.files()
        assert len(files) == 1, f"one live file per chunk, found {files}"
        return files[0]

    def read(self, length: int) -> bytes:
        """The file's first length bytes; b"" while a repair swaps the file (the new one written
        before the old one goes, or the old one listed, then gone)."""
        files = self.files()
        if len(files) != 1:
            return b""
        try:
            with open(files[0], "rb") as handle:
                return handle.read(length)
        except FileNotFoundError:
            return b""

    def rot(self, position: int) -> None:
        with open(self.path(), "r+b") as handle:
            handle.seek(position)
            byte = handle.read(1)[0]
            handle.seek(position)
            handle.write(bytes([byte ^ 0xFF]))


def pick_replica(client: FfsClient, local, path: str, rng: random.Random) -> tuple[Replica, int]:
    inode = client.stat(path)
    layout = Layout.from_proto(inode.layout)
    index = rng.randrange(-(-inode.length // CHUNK))
    route = rng.choice(client.routing.serving_routes(client.routing.chain_id_for(layout, index)))
    return Replica(local, route.target_id, route.node_id, inode.id, index), index


@pytest.mark.parametrize("bulk", ["1", "0"], ids=["bulk", "grpc"])
def test_rotten_replicas_are_read_around_and_repaired(make_cluster, request, bulk):
    seed = seed_from_env()
    announce_seed(request, seed, chunk_bytes=CHUNK, bulk=bulk, scrub_interval_s=SCRUB_INTERVAL_S)
    rng = random.Random(seed)
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=None,
                         extra_env={"FFS_SCRUB_BYTES_PER_S": str(64 * MiB),
                                    "FFS_SCRUB_INTERVAL_S": str(SCRUB_INTERVAL_S), "FFS_STORAGE_BULK": bulk})
    client = FfsClient(local.meta_address)
    client.mkdir("/rot", chunk_size=CHUNK)
    files = {path: rng.randbytes(CHUNK * rng.randint(2, 4) + rng.randrange(CHUNK)) for path in ("/rot/a", "/rot/b")}
    for path, data in files.items():
        client.write_file(path, data)
    fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)

    reads, wrong, errors = [0], [], []
    stop = threading.Event()

    def reader() -> None:
        expected = files["/rot/a"]
        while not stop.is_set():
            try:
                if reads[0] % 2:
                    got = client.read_file("/rot/a")
                else:
                    with fs.open("/rot/a", "rb") as handle:
                        got = b"".join(iter(lambda: handle.read(CHUNK // 3), b""))
            except Exception as exc:   # noqa: BLE001 - any failure is the test's failure
                errors.append(repr(exc))
                return
            if got != expected:
                wrong.append(reads[0])
            reads[0] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        # Right after a pass ended, the next one is seconds away: the read path has A to itself.
        passes = {t: s.passes_completed for t, s in scrub_status(client).items()}

        def just_after_a_pass():
            now = scrub_status(client)
            done = all(now[t].passes_completed > passes[t] and not now[t].pass_started_s for t in now)
            return now if done else None

        after = wait_until(just_after_a_pass, "a scrub pass to end")
        rotten = {}
        for path, data in files.items():
            replica, index = pick_replica(client, local, path, rng)
            chunk = data[index * CHUNK:(index + 1) * CHUNK]
            position = rng.randrange(len(chunk))
            replica.rot(position)
            assert replica.read(len(chunk)) != chunk
            rotten[path] = (replica, chunk)
            print(f"rotted {path} chunk {index} on target {replica.target_id} at byte {position}")
        passes_at_rot = {t: s.passes_completed for t, s in after.items()}

        replica_a, chunk_a = rotten["/rot/a"]
        wait_until(lambda: replica_a.read(len(chunk_a)) == chunk_a, "the read path to repair A's replica")
        status = scrub_status(client)
        assert status[replica_a.target_id].passes_completed == passes_at_rot[replica_a.target_id], \
            "repaired by the read path, before the next scrub pass"
        if bulk == "1":
            assert status[replica_a.target_id].reports_received >= 1, "the client reported the replica"

        replica_b, chunk_b = rotten["/rot/b"]
        wait_until(lambda: replica_b.read(len(chunk_b)) == chunk_b, "scrub to repair B's replica")
        status = scrub_status(client)
        assert status[replica_b.target_id].passes_completed <= passes_at_rot[replica_b.target_id] + 1, \
            "within one scrub pass"
        wait_until(lambda: reads[0] >= 20, "a few more reads")
    finally:
        stop.set()
        thread.join(60)
    assert not errors and not wrong, f"reads failed {errors[:3]} or returned wrong bytes at {wrong[:5]}"
    status = scrub_status(client)
    assert sum(s.repaired for s in status.values()) >= 2
    assert sum(s.unrepairable for s in status.values()) == 0
    assert sum(s.bad_found for s in status.values()) >= 2
    for path, data in files.items():
        assert client.read_file(path) == data

    result = CliRunner().invoke(cli, ["admin", "scrub", local.url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["target_id"]: row for row in report["targets"]}
    assert set(rows) == set(status) and report["unreachable"] == []
    assert rows[replica_b.target_id]["repaired"] >= 1
    assert all(row["rate_bytes_per_s"] == 64 * MiB and row["passes_completed"] >= 1 for row in rows.values())
    assert all(row["last_pass_ended_s"] and row["last_pass_duration_s"] is not None for row in rows.values())


def test_small_batched_reads_read_around_rot_and_report_it(make_cluster, request):
    """Samples through read_batch (the client's short path, one bulk request per node): a
    rotten block on one replica never reaches the caller, and the node that sent it is told
    (a read of whole blocks goes out unchecked, by sendfile, so only the client can see it;
    the node checks a read inside one block itself)."""
    seed = seed_from_env()
    announce_seed(request, seed)
    rng = random.Random(seed)
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=None)
    client = FfsClient(local.meta_address)
    client.mkdir("/rot", chunk_size=CHUNK)
    data = rng.randbytes(2 * CHUNK)
    client.write_file("/rot/samples", data)
    wait_until(lambda: all(s.passes_completed >= 1 and not s.pass_started_s
                           for s in scrub_status(client).values()), "the first scrub pass to end")
    replica, index = pick_replica(client, local, "/rot/samples", rng)
    span = 2 * limits.checksum_block_bytes_default
    within = rng.randrange(CHUNK // span) * span
    replica.rot(within + rng.randrange(span))
    start = index * CHUNK + within
    handle = client.open("/rot/samples")
    elsewhere = (index * CHUNK + within + span) % len(data)     # outside the rotten blocks
    requests = [(handle, start, span), (handle, elsewhere, 200), (handle, 0, 100)] * 3
    for _ in range(30):
        result = client.read_batch(requests)
        assert result.ok, result.errors
        for number, (_, offset, length) in enumerate(requests):
            assert bytes(result.view(number)) == data[offset:offset + length]
    chunk = data[index * CHUNK:(index + 1) * CHUNK]
    wait_until(lambda: replica.read(len(chunk)) == chunk, "the rotten replica to be repaired")
    status = scrub_status(client)[replica.target_id]
    assert status.reports_received >= 1, "the client reported the replica that sent bad bytes"
