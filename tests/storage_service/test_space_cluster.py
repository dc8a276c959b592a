"""Real processes: a target filled to its free-space reserve stops writes, keeps reads and deletes, resumes.

Goal (issue 10, "a target filled to its reserve"): writes fail with NoSpace at
the client (and ENOSPC through fsspec), reads of existing files return the
right bytes, deletes work, after deletes and GC writes resume, and nothing
already stored is damaged.

Method: a dedicated cluster of 3 storage nodes with one target each (one chain
of 3 replicas). Each target gets a capacity of 8 MiB and a reserve of 1 MiB
through the storage flags' environment overrides (LocalCluster's extra_env),
so no disk has to fill. Files of seeded random sizes, one chunk each, are
written until one is refused; then every target's SpaceInfo must show its
chunk bytes within capacity minus reserve and a fill warning; every stored
file reads back; half of them are removed, and a write that was refused
succeeds once GC has removed their chunks; finally everything reads back.
"""

from __future__ import annotations

import errno
import random
import time

import fsspec
import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.common.errors import NoSpace
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import storage_pb2_grpc, types_pb2
from tests import trust
from tests.conftest import announce_seed, seed_from_env

CAPACITY_BYTES = 8 * MiB
RESERVE_BYTES = 1 * MiB
FILE_BYTES_MIN = 64 * KiB          # above the inline limit: every file lives in a chunk
FILE_BYTES_MAX = 512 * KiB
RESUME_TIMEOUT_S = 30.0


def space_infos(local) -> list:
    """SpaceInfo of every target of the cluster."""
    routing = local.routing()
    out = []
    for node in routing.nodes:
        if node.type != types_pb2.NODE_STORAGE:
            continue
        with make_channel(node.address, token=trust.ADMIN_TOKEN) as channel, rpc_errors_mapped():
            out.extend(storage_pb2_grpc.StorageStub(channel).SpaceInfo(types_pb2.Empty(), timeout=10).targets)
    return out


def test_target_filled_to_its_reserve(make_cluster, request):
    seed = seed_from_env()
    announce_seed(request, seed, capacity_bytes=CAPACITY_BYTES, reserve_bytes=RESERVE_BYTES)
    rng = random.Random(seed)
    local = make_cluster(storage_nodes=3, targets_per_node=1, replicas=3,
                         extra_env={"FFS_TARGET_CAPACITY": str(CAPACITY_BYTES),
                                    "FFS_TARGET_RESERVE": str(RESERVE_BYTES)})
    client = FfsClient(local.meta_address)
    client.mkdir("/full", exist_ok=True)

    stored: dict[str, bytes] = {}
    refused = None
    for number in range(CAPACITY_BYTES // FILE_BYTES_MIN + 2):
        data = rng.randbytes(rng.randrange(FILE_BYTES_MIN, FILE_BYTES_MAX))
        try:
            client.write_file(f"/full/f{number}", data)
        except NoSpace as exc:
            refused = (f"/full/f{number}", data, exc)
            break
        stored[f"/full/f{number}"] = data
    assert refused is not None, f"{len(stored)} files never filled a {CAPACITY_BYTES}-byte target"
    refused_path, refused_data, error = refused
    assert "reserve" in str(error), error
    assert sum(map(len, stored.values())) <= CAPACITY_BYTES - RESERVE_BYTES

    targets = space_infos(local)
    assert len(targets) == 3
    for target in targets:
        assert target.capacity_bytes == CAPACITY_BYTES
        assert target.reserve_bytes == RESERVE_BYTES
        assert target.used_bytes == sum(map(len, stored.values())), target
        assert target.free_bytes >= RESERVE_BYTES, target
        assert "full" in target.warning, target       # past 80% of its capacity

    # The same bytes through fsspec: the built-in OSError with ENOSPC.
    fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
    with pytest.raises(OSError) as raised:
        fs.pipe_file("/full/through-fsspec", refused_data)
    assert raised.value.errno == errno.ENOSPC, raised.value

    # Reads keep working and return the stored bytes.
    for path, data in stored.items():
        assert client.read_file(path) == data, path

    # Deletes work; once GC removed their chunks, the refused write goes through.
    victims = rng.sample(sorted(stored), k=max(1, len(stored) // 2))
    for path in victims:
        client.remove(path)
        del stored[path]
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while True:
        try:
            client.write_file(refused_path, refused_data)
            break
        except NoSpace:
            assert time.monotonic() < deadline, f"writes did not resume within {RESUME_TIMEOUT_S}s of deletes"
            time.sleep(0.2)
    stored[refused_path] = refused_data

    # Nothing stored was damaged: every file reads back whole, through both APIs.
    for path, data in stored.items():
        assert client.read_file(path) == data, path
        assert fs.cat_file(path) == data, path
    # GC removes the deleted files' chunks in passes; the write above needed only
    # some of them gone, so wait for the rest before comparing the byte counts.
    expected_bytes = sum(map(len, stored.values()))
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while True:
        targets = space_infos(local)
        if all(target.used_bytes == expected_bytes for target in targets):
            break
        assert time.monotonic() < deadline, (expected_bytes, targets)
        time.sleep(0.2)
