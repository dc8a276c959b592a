"""``ffs admin fsck`` against a real cluster: damage it, find the damage, repair only when told.

Method: a dedicated cluster per test (meta + 3 storage nodes, one target
each, replication 3) on loopback, fsck run through the CLI with --json.

* Missing and orphaned chunks (made through the storage API): a dry run
  reports exactly those; ``--repair`` shows a plan and changes nothing;
  ``--repair --yes`` fixes them and every replica again holds the file's bytes.
* Bit rot: bytes flipped inside chunk files on disk, one on the HEAD replica
  and one on a seeded random other replica, where the metadata still looks
  right (``--metadata-only`` calls the cluster clean). fsck names both rotten
  copies and the good copy to take; ``--repair --yes`` rewrites them from the
  majority, after which every replica holds the original bytes.
* A metadata store rolled back to an older copy (stop meta, copy its data
  dir aside, start, write more files, stop, put the old copy back, start):
  the newer files' chunks are orphans to it. ``--repair`` deletes nothing
  without --yes, refuses orphan deletion with --yes (the store looks
  younger), and with --force-orphan-delete never deletes more than
  --max-delete. Checked by listing every target's chunks before and after.

Seeded (FFS_SEED replays; the seed and the replay command print first).
"""

from __future__ import annotations

import json
import pathlib
import random
import shutil
import signal
import time

from click.testing import CliRunner

from fireflyfs.cli.main import cli
from fireflyfs.client.client import FfsClient
from fireflyfs.common.layout import Layout
from fireflyfs.deploy.local_cluster import META
from fireflyfs.proto import storage_pb2, types_pb2
from fireflyfs.storage_service.chunk_meta import chunk_key
from tests import trust

from tests.client.test_failover_cluster import CHUNK

GC_WAIT_S = 30.0
# Generous, so a loaded test machine does not fence storage nodes mid-repair (they fence after half).
HEARTBEAT_TIMEOUT_MS = 30_000


def fsck(url: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["admin", "fsck", url, "--json", "--recheck-delay", "0.2", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def start_cluster(make_cluster):
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS)
    client = FfsClient(local.meta_address)
    client.mkdir("/f", chunk_size=CHUNK)
    return local, client


def inspect(client: FfsClient):
    """An admin's storage client over client's routing: it lists, reads, plants and removes single
    replicas' chunks as fsck does (storage lets only nodes and admins do that)."""
    from fireflyfs.client.capabilities import Capabilities
    from fireflyfs.client.channels import shared_pool
    from fireflyfs.client.storage_client import StorageClient

    if not hasattr(client, "_inspector"):
        client._inspector = StorageClient(client.routing, "fsck-test", pool=shared_pool(trust.ADMIN_TOKEN),
                                          capabilities=Capabilities(client.meta.get_capability))
    return client._inspector


def chunk_routes(client: FfsClient, path: str, index: int):
    """(inode id, serving routes head first) of chunk index of path."""
    inode = client.stat(path)
    chain_id = client.routing.chain_id_for(Layout.from_proto(inode.layout), index)
    return inode.id, client.routing.serving_routes(chain_id)


def replica_chunk(client: FfsClient, route, inode: int, index: int) -> bytes:
    reply = inspect(client).call(route, "BatchRead", storage_pb2.BatchReadRequest(ios=[storage_pb2.ReadIO(
        chain_id=route.chain_id, chain_version=route.chain_version,
        chunk=types_pb2.ChunkId(inode=inode, index=index), offset=0, length=CHUNK)]))
    result = reply.results[0]
    assert not result.status.error, f"target {route.target_id}: {result.status}"
    return bytes(result.data)


def chunk_listing(client: FfsClient) -> set[tuple[int, int, int]]:
    """Every (target, inode, index) the serving targets hold, paged through GetChunkMetas."""
    client.routing.refresh()
    held = set()
    for chain in client.routing.routing_info().chains:
        for route in client.routing.serving_routes(chain.id):
            request = storage_pb2.GetChunkMetasRequest(target_id=route.target_id, limit=1000)
            while True:
                reply = inspect(client).call(route, "GetChunkMetas", request)
                held |= {(route.target_id, m.chunk.inode, m.chunk.index) for m in reply.metas}
                if not reply.more:
                    break
                request.start_after.CopyFrom(reply.metas[-1].chunk)
    return held


def chunk_file(local, target_id: int, inode: int, index: int) -> pathlib.Path:
    chunks = local.data_dir(f"storage-{target_id // 100}") / f"target-{target_id}" / "chunks"
    files = list(chunks.glob(f"{chunk_key(inode, index).hex()}.*"))
    assert len(files) == 1, files
    return files[0]


def wait_gone(client: FfsClient, inode_id: int) -> None:
    """Until GC has removed the inode and its record (its chunks are gone from storage)."""
    deadline = time.monotonic() + GC_WAIT_S
    while True:
        state = client.meta.stat_inodes([inode_id])[0]
        if not state.exists and not state.gc_pending:
            return
        assert time.monotonic() < deadline, f"GC did not finish inode {inode_id} in {GC_WAIT_S}s"
        time.sleep(0.1)


def test_fsck_finds_and_repairs_missing_and_orphaned_chunks(make_cluster, seed):
    rng = random.Random(seed)
    local, client = start_cluster(make_cluster)
    files = {f"/f/{i}": rng.randbytes(CHUNK * 2 + 1 + i) for i in range(3)}
    for path, data in files.items():
        client.write_file(path, data)
    code, report = fsck(local.url)
    assert (code, report["clean"], report["bytes_verified"]) == (0, True, True), report
    assert report["chunks_checked"] == 3 * 3 * 3    # 3 files x 3 chunks x 3 replicas

    # Damage: the tail loses chunk 0 of /f/1; chunks of a removed file come back (an orphan).
    victim, routes = chunk_routes(client, "/f/1", 0)
    tail = routes[-1]
    inspect(client).call(tail, "RemoveChunk", storage_pb2.RemoveChunkRequest(
        chain_id=tail.chain_id, chain_version=tail.chain_version, target_id=tail.target_id,
        chunk=types_pb2.ChunkId(inode=victim, index=0)))
    client.write_file("/f/gone", b"x")
    gone = client.stat("/f/gone")
    client.remove("/f/gone")
    wait_gone(client, gone.id)
    inspect(client).write(gone.id, Layout.from_proto(gone.layout), 0, b"orphan" * 100)

    code, report = fsck(local.url)
    assert code == 1 and report["counts"]["missing"] == 1 and report["counts"]["orphan"] == 3, report
    missing = next(f for f in report["findings"] if f["kind"] == "missing")
    assert (missing["inode"], missing["index"], missing["target_id"]) == (victim, 0, tail.target_id)
    assert missing["source_target_id"] in {r.target_id for r in routes[:-1]}
    before = chunk_listing(client)

    code, planned = fsck(local.url, "--repair")
    assert code == 1 and not planned["acted"] and planned["repaired"] == [], planned
    assert (len(planned["plan"]["rewrites"]), len(planned["plan"]["deletions"])) == (1, 3)
    assert chunk_listing(client) == before, "without --yes nothing changes"

    code, repaired = fsck(local.url, "--repair", "--yes")
    assert code == 0 and repaired["clean"] and len(repaired["repaired"]) == 4, repaired
    assert fsck(local.url)[:1] == (0,)
    assert {replica_chunk(client, route, victim, 0) for route in routes} == {files["/f/1"][:CHUNK]}
    for path, data in files.items():
        assert client.read_file(path) == data


def test_fsck_finds_byte_rot_metadata_hides_and_heals_it_from_the_majority(make_cluster, seed):
    rng = random.Random(seed)
    local, client = start_cluster(make_cluster)
    files = {f"/f/{i}": rng.randbytes(CHUNK * rng.randint(1, 3) + rng.randint(1, CHUNK - 1)) for i in range(4)}
    for path, data in files.items():
        client.write_file(path, data)
    head_path, other_path = rng.sample(sorted(files), 2)
    damage = []                          # (path, index, inode, rotten target, routes)
    for path, position in ((head_path, 0), (other_path, rng.randint(1, 2))):
        index = rng.randrange(-(-len(files[path]) // CHUNK))
        inode, routes = chunk_routes(client, path, index)
        victim = routes[position]
        length = min(CHUNK, len(files[path]) - index * CHUNK)
        offset = rng.randrange(max(1, length - 4))
        with open(chunk_file(local, victim.target_id, inode, index), "r+b") as handle:
            handle.seek(offset)
            original = handle.read(4)
            handle.seek(offset)
            handle.write(bytes(b ^ 0xFF for b in original))
        damage.append((path, index, inode, victim.target_id, routes))
    print(f"rot: {[(path, index, target) for path, index, _, target, _ in damage]} "
          f"(head of the first: {damage[0][4][0].target_id})")

    code, report = fsck(local.url, "--metadata-only")
    assert (code, report["clean"]) == (0, True), "the metadata alone does not show rot"
    code, report = fsck(local.url)
    assert code == 1 and report["counts"]["rotten"] == 2 and len(report["findings"]) == 2, report
    found = {(f["inode"], f["index"], f["target_id"]): f for f in report["findings"]}
    for _path, index, inode, target, routes in damage:
        finding = found[(inode, index, target)]
        assert finding["kind"] == "rotten" and finding["source_target_id"] not in (0, target)
    assert damage[0][3] == damage[0][4][0].target_id, "one rotten copy is the head's"

    code, planned = fsck(local.url, "--repair")
    assert code == 1 and len(planned["plan"]["rewrites"]) == 2 and planned["plan"]["deletions"] == []
    assert fsck(local.url)[1]["counts"]["rotten"] == 2, "the dry run changed nothing"

    code, repaired = fsck(local.url, "--repair", "--yes")
    assert code == 0 and repaired["clean"] and len(repaired["repaired"]) == 2, repaired
    for path, index, inode, _target, routes in damage:
        want = files[path][index * CHUNK:(index + 1) * CHUNK]
        assert [replica_chunk(client, route, inode, index) for route in routes] == [want] * len(routes)
    for path, data in files.items():
        assert client.read_file(path) == data


def restart_meta_with(local, data_dir: pathlib.Path | None = None) -> None:
    """Stop meta; with data_dir, put that copy in place of its store; start it again."""
    local.kill(META, signal.SIGTERM)
    if data_dir is not None:
        shutil.rmtree(local.data_dir(META))
        shutil.copytree(data_dir, local.data_dir(META))
    local.up()


def test_fsck_repair_against_a_rolled_back_meta_store_deletes_nothing_unbidden(make_cluster, seed, tmp_path):
    rng = random.Random(seed)
    local, client = start_cluster(make_cluster)
    old = {f"/f/old{i}": rng.randbytes(rng.randint(1, 2 * CHUNK)) for i in range(3)}
    for path, data in old.items():
        client.write_file(path, data)
    local.kill(META, signal.SIGTERM)
    shutil.copytree(local.data_dir(META), tmp_path / "meta-copy")
    local.up()
    new = {f"/f/new{i}": rng.randbytes(rng.randint(1, 3 * CHUNK)) for i in range(rng.randint(3, 6))}
    for path, data in new.items():
        client.write_file(path, data)
    new_inodes = {client.stat(path).id for path in new}
    restart_meta_with(local, tmp_path / "meta-copy")
    client = FfsClient(local.meta_address)
    assert sorted(entry.name for entry in client.meta.list_page("/f").entries) == sorted(p[3:] for p in old)

    before = chunk_listing(client)
    orphaned = {held for held in before if held[1] in new_inodes}
    assert orphaned and {inode for _, inode, _ in orphaned} == new_inodes
    print(f"{len(new)} files written after the copy: {len(orphaned)} orphaned chunk copies")

    code, report = fsck(local.url, "--repair")
    assert code == 1 and not report["acted"], report
    assert report["counts"]["orphan"] == len(orphaned) and report["plan"]["deletions"] == []
    assert "never handed them out" in report["plan"]["refusals"][0]
    assert chunk_listing(client) == before, "no --yes: nothing deleted"

    code, report = fsck(local.url, "--repair", "--yes")
    assert code == 1 and report["plan"]["deletions"] == [] and report["repaired"] == [], report
    assert "--force-orphan-delete" in report["plan"]["refusals"][0]
    assert chunk_listing(client) == before, "the store looks younger than the chunks: no orphan deleted"

    cap = rng.randrange(len(orphaned))
    code, report = fsck(local.url, "--repair", "--yes", "--force-orphan-delete", "--max-delete", str(cap))
    assert code == 1 and report["plan"]["deletions"] == [], report
    assert any(f"exceed --max-delete {cap}" in refusal for refusal in report["plan"]["refusals"])
    assert chunk_listing(client) == before, "over the cap: nothing deleted"

    code, report = fsck(local.url, "--repair", "--yes", "--force-orphan-delete", "--max-delete", str(len(orphaned)))
    assert code == 0 and len(report["repaired"]) == len(orphaned), report
    assert chunk_listing(client) == before - orphaned, "exactly the orphans, no more"
    for path, data in old.items():
        assert client.read_file(path) == data
