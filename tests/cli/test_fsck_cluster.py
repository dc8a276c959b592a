"""``ffs admin fsck`` against a real cluster: clean, then damaged, then repaired.

Method: a dedicated cluster (3 storage nodes, replication 3) with a few
files. fsck must call it clean (exit 0). Then we damage it through the
storage API: one chunk removed from the tail only (missing) and chunks
written for an inode the metadata service never made (orphans on every
replica). A dry run must report exactly those and exit 1 without changing
anything; ``--repair`` must fix them (exit 0), a new dry run must be clean,
and every replica must again hold the file's bytes.
"""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from fireflyfs.cli.main import cli
from fireflyfs.client.client import FfsClient
from fireflyfs.common.layout import Layout
from fireflyfs.proto import storage_pb2, types_pb2

from tests.client.test_failover_cluster import CHUNK, replica_bytes

ORPHAN_INODE = 987_654_321




def fsck(url: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["admin", "fsck", url, "--json", "--recheck-delay", "0.2", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_fsck_finds_and_repairs_missing_and_orphaned_chunks(make_cluster):
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=None)
    client = FfsClient(local.meta_address)
    client.mkdir("/f", chunk_size=CHUNK)
    files = {f"/f/{i}": os.urandom(CHUNK * 2 + 1 + i) for i in range(3)}
    for path, data in files.items():
        client.write_file(path, data)
    replicas = replica_bytes(client, "/f/0")
    assert len(replicas) == 3 and len(set(replicas)) == 1, "an acknowledged write must be on every replica"

    code, report = fsck(local.url)
    assert (code, report["clean"]) == (0, True), report
    assert report["chunks_checked"] == 3 * 3 * 3    # 3 files x 3 chunks x 3 replicas

    # Damage: the tail loses chunk 0 of /f/1; an inode meta never made gets chunks.
    victim = client.stat("/f/1")
    layout = Layout.from_proto(victim.layout)
    tail = client.routing.serving_routes(client.routing.chain_id_for(layout, 0))[-1]
    client.storage.call(tail, "RemoveChunk", storage_pb2.RemoveChunkRequest(
        chain_id=tail.chain_id, chain_version=tail.chain_version, target_id=tail.target_id,
        chunk=types_pb2.ChunkId(inode=victim.id, index=0)))
    client.storage.write(ORPHAN_INODE, layout, 0, b"orphan" * 100)

    code, report = fsck(local.url)
    assert code == 1 and report["counts"]["missing"] == 1 and report["counts"]["orphan"] == 3, report
    missing = next(f for f in report["findings"] if f["kind"] == "missing")
    assert (missing["inode"], missing["index"], missing["target_id"]) == (victim.id, 0, tail.target_id)
    assert fsck(local.url)[1]["counts"] == report["counts"], "a dry run changes nothing"

    code, repaired = fsck(local.url, "--repair")
    assert code == 0 and repaired["clean"] and len(repaired["repaired"]) == 4, repaired
    code, report = fsck(local.url)
    assert (code, report["clean"]) == (0, True), report
    assert set(replica_bytes(client, "/f/1")) == {files["/f/1"][:CHUNK]}
    for path, data in files.items():
        assert client.read_file(path) == data
