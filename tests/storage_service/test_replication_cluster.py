"""Real processes: replication 3 survives a SIGKILLed storage node, and resync makes it whole again.

Method: a dedicated local cluster (4 storage nodes of one target, chains of 3,
2 s heartbeat timeout) and one FfsClient. Write files; SIGKILL storage node 2;
keep writing, overwriting, truncating and removing files, and reading all of
them, while it is down; restart it and write more while it resyncs; wait until
every target is SERVING again. Then every file reads back exactly, and on every
chain the replicas' chunk metadata (Storage.GetChunkMetas: length, commit
version, chunk checksum) is identical, i.e. the replicas are byte-identical.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.client.config import ClientConfig
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc
from tests import trust
from tests.conftest import announce_seed, seed_from_env

CHUNK = 64 * 1024
SEED = seed_from_env(default=3)   # fixed in CI; FFS_SEED replays another


def chunk_metas(address: str, target_id: int) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """{(inode, index): (length, commit version, update version, checksum)} of one target, all pages."""
    out = {}
    request = storage_pb2.GetChunkMetasRequest(target_id=target_id, limit=500)
    with make_channel(address, token=trust.ADMIN_TOKEN) as channel, rpc_errors_mapped():
        stub = storage_pb2_grpc.StorageStub(channel)
        while True:
            reply = stub.GetChunkMetas(request, timeout=10)
            for m in reply.metas:
                out[(m.chunk.inode, m.chunk.index)] = (m.length, m.commit_version, m.update_version,
                                                        m.chunk_checksum)
            if not reply.more:
                return out
            request.start_after.CopyFrom(reply.metas[-1].chunk)


def divergent_chains(local) -> list[str]:
    """Chains whose replicas do not hold the same chunks at the same versions and checksums."""
    routing = local.routing()
    addresses = {n.id: n.address for n in routing.nodes}
    node_of = {t.id: t.node_id for t in routing.targets}
    problems = []
    for chain in routing.chains:
        metas = [chunk_metas(addresses[node_of[t]], t) for t in chain.targets]
        for target, other in zip(chain.targets[1:], metas[1:]):
            if other != metas[0]:
                diff = sorted(set(other.items()) ^ set(metas[0].items()))[:4]
                problems.append(f"chain {chain.id}: target {target} differs from {chain.targets[0]}: {diff}")
    return problems


@pytest.mark.parametrize("chain_forward", ["bulk", "grpc"])
def test_killed_node_resyncs_and_replicas_end_byte_identical(make_cluster, request, chain_forward):
    """Both ways chain updates travel (bulk UPDATE frames, the default, and Storage.Update)."""
    rng = random.Random(SEED)
    announce_seed(request, SEED)
    local = make_cluster(storage_nodes=4, replicas=3, heartbeat_timeout_ms=2000, targets_per_node=1,
                         extra_env={"FFS_CHAIN_FORWARD": chain_forward})
    local.wait_all_serving(timeout_s=30)
    client = FfsClient(local.meta_address, config=ClientConfig(retry_time_s=90.0))
    client.mkdir("/r", chunk_size=CHUNK)
    files: dict[str, bytes] = {}

    def write(name: str) -> None:
        data = rng.randbytes(rng.randrange(1, 3 * CHUNK + 100))
        client.write_file(f"/r/{name}", data)
        files[f"/r/{name}"] = data

    def check_all() -> None:
        for path, data in files.items():
            assert client.read_file(path) == data, path

    for i in range(10):
        write(f"before-{i}")

    local.kill(2, signal.SIGKILL)
    for i in range(6):
        write(f"down-{i}")
        write(f"before-{i}")                          # overwrite: node 2's copy goes stale
    client.truncate("/r/before-7", 100)
    files["/r/before-7"] = files["/r/before-7"][:100]
    for path in ("/r/before-8", "/r/before-9"):
        client.remove(path)                           # node 2 keeps chunks nobody else has
        del files[path]
    check_all()

    local.up()                                        # node 2 returns: a new incarnation, resync
    for i in range(4):
        write(f"resync-{i}")                          # live writes while it syncs
    check_all()
    local.wait_all_serving(timeout_s=120)
    client.routing.refresh()
    check_all()

    deadline = time.monotonic() + 30                  # GC of removed files may still be running
    while (problems := divergent_chains(local)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not problems, problems
    routing = local.routing()
    assert all(t.public_state == 1 for t in routing.targets), "every target SERVING"


def test_whole_cluster_sigkilled_and_restarted(make_cluster, request):
    """Every storage node and the meta process SIGKILLed at once: all comes back, nothing lost."""
    announce_seed(request, SEED)
    rng = random.Random(SEED)
    local = make_cluster(storage_nodes=4, replicas=3, heartbeat_timeout_ms=2000, targets_per_node=1)
    local.wait_all_serving(timeout_s=30)
    client = FfsClient(local.meta_address, config=ClientConfig(retry_time_s=90.0))
    client.mkdir("/w", chunk_size=CHUNK)
    files = {f"/w/{i}": rng.randbytes(rng.randrange(1, 3 * CHUNK)) for i in range(8)}
    for path, data in files.items():
        client.write_file(path, data)
    for role in local.roles():
        local.kill(role, signal.SIGKILL)
    local.up()
    local.wait_all_serving(timeout_s=120)
    client.routing.refresh()
    for path, data in files.items():
        assert client.read_file(path) == data, path
    more = {f"/w/after-{i}": rng.randbytes(CHUNK + i) for i in range(3)}
    for path, data in more.items():
        client.write_file(path, data)
        assert client.read_file(path) == data
    assert not divergent_chains(local)


@pytest.mark.slow
def test_chaos_rounds_of_kills_and_restarts(make_cluster, request):
    """Several rounds: SIGKILL a random storage node, write and read, restart it, wait for SERVING."""
    rng = random.Random(SEED)
    announce_seed(request, SEED)
    local = make_cluster(storage_nodes=4, replicas=3, heartbeat_timeout_ms=2000, targets_per_node=2)
    local.wait_all_serving(timeout_s=30)
    client = FfsClient(local.meta_address, config=ClientConfig(retry_time_s=90.0))
    client.mkdir("/c", chunk_size=CHUNK)
    files: dict[str, bytes] = {}
    for round_number in range(5):
        victim = rng.randint(1, 4)
        local.kill(victim, signal.SIGKILL)
        for i in range(8):
            path = f"/c/{rng.randrange(30)}"
            files[path] = rng.randbytes(rng.randrange(1, 4 * CHUNK))
            client.write_file(path, files[path])
        local.up()
        local.wait_all_serving(timeout_s=120)
        client.routing.refresh()
        for path, data in files.items():
            assert client.read_file(path) == data, (round_number, path)
    assert not divergent_chains(local)
