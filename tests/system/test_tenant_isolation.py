"""One tenant never sees another's data, tried as an attacker would.

Users alice and bob, each with a private 0700 directory. Bob tries everything on alice's files:
through fsspec, the CLI, hand-made Meta calls, and hand-made Storage calls on gRPC and on the bulk
path with guessed chunk ids and every kind of bad capability (none, another inode's, a flipped
byte, alice's expired one replayed). Each attempt is refused with PermissionDenied, and alice's
bytes stay as she wrote them. The cluster's capabilities live 3 s, so expiry is real here and the
client's renewal path runs too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import crc32c
import fsspec
import pytest

from fireflyfs.client.bulk_client import BulkConnection
from fireflyfs.client.meta_client import MetaClient
from fireflyfs.common.errors import PermissionDenied
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, storage_pb2, storage_pb2_grpc, types_pb2
from tests import trust

TTL_MS = 3000


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    from fireflyfs.deploy.local_cluster import LocalCluster

    local = LocalCluster(tmp_path_factory.mktemp("tenants"), storage_nodes=3, targets_per_node=1, replicas=2,
                         python=sys.executable, extra_env={"FFS_META_CAPABILITY_TTL_MS": str(TTL_MS)})
    try:
        local.up()
        admin = MetaClient(local.meta_address, token=trust.ADMIN_TOKEN)
        tag = uuid.uuid4().hex[:6]
        users = {name: admin.user_add(f"{name}{tag}") for name in ("alice", "bob")}
        admin_fs = fs_as(local, trust.ADMIN_TOKEN)
        for name, reply in users.items():
            admin_fs.mkdir(f"/{name}", create_parents=False)
            admin_fs.chown(f"/{name}", uid=reply.user.uid, gid=reply.user.gids[0])
            admin_fs.chmod(f"/{name}", 0o700)
        alice = fs_as(local, users["alice"].token)
        data = {"/alice/video.bin": os.urandom(3 * 1024 * 1024 + 17), "/alice/small.txt": b"private note"}
        for path, payload in data.items():
            alice.pipe_file(path, payload)
        yield local, users, data
    finally:
        local.down()


def fs_as(local, token):
    return fsspec.filesystem("ffs", addresses=local.meta_address, token=token, skip_instance_cache=True)


def assert_untouched(local, users, data):
    alice = fs_as(local, users["alice"].token)
    for path, payload in data.items():
        assert alice.cat_file(path) == payload
    assert sorted(alice.ls("/alice", detail=False)) == sorted(data)


def test_bob_is_refused_everything_through_fsspec(tenants):
    local, users, data = tenants
    bob = fs_as(local, users["bob"].token)
    bob.pipe_file("/bob/mine.txt", b"bob's")
    attempts = {
        "list": lambda: bob.ls("/alice"),
        "stat": lambda: bob.info("/alice/video.bin"),
        "read": lambda: bob.cat_file("/alice/video.bin"),
        "read small": lambda: bob.cat_file("/alice/small.txt"),
        "open": lambda: bob.open("/alice/video.bin", "rb").read(10),
        "write into": lambda: bob.pipe_file("/alice/planted.txt", b"x"),
        "overwrite": lambda: bob.pipe_file("/alice/small.txt", b"x"),
        "rename into": lambda: bob.mv("/bob/mine.txt", "/alice/mine.txt"),
        "rename out of": lambda: bob.mv("/alice/video.bin", "/bob/stolen.bin"),
        "copy out of": lambda: bob.cp_file("/alice/video.bin", "/bob/copy.bin"),
        "link to": lambda: bob.client.link("/alice/video.bin", "/bob/link.bin"),
        "truncate": lambda: bob.client.truncate("/alice/video.bin", 0),
        "delete": lambda: bob.rm("/alice/video.bin"),
        "delete the directory": lambda: bob.rm("/alice", recursive=True),
        "chmod": lambda: bob.chmod("/alice", 0o777),
        "chown": lambda: bob.chown("/alice", uid=users["bob"].user.uid),
        "find": lambda: bob.find("/alice"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(PermissionError):
            attempt()
            pytest.fail(f"bob could {what}")
    assert bob.find("/", withdirs=True) and "/alice/video.bin" not in bob.find("/")
    assert_untouched(local, users, data)


def test_bob_is_refused_through_the_cli(tenants):
    local, users, data = tenants
    env = {**os.environ, "FFS_TOKEN": users["bob"].token}
    url = f"ffs://{local.meta_address}"
    for args in (["ls", f"{url}/alice"], ["cat", f"{url}/alice/small.txt"], ["rm", f"{url}/alice/small.txt"]):
        result = subprocess.run([sys.executable, "-m", "fireflyfs.cli.main", *args], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "PermissionDenied" in result.stderr, (args, result)
    assert_untouched(local, users, data)


def test_hand_made_meta_calls_are_refused(tenants):
    local, users, data = tenants
    inode = MetaClient(local.meta_address, token=users["alice"].token).stat("/alice/video.bin").inode
    bob = fs_as(local, users["bob"].token)
    bob.pipe_file("/bob/mine.txt", b"bob's")
    bobs_cap = MetaClient(local.meta_address, token=users["bob"].token).open("/bob/mine.txt").capability
    with make_channel(local.meta_address, token=users["bob"].token) as channel:
        meta = meta_pb2_grpc.MetaStub(channel)
        for method, request in (
                ("Stat", meta_pb2.StatRequest(path="/alice/video.bin")),
                ("Open", meta_pb2.OpenRequest(path="/alice/video.bin")),
                ("BatchStat", None),
                ("GetCapability", meta_pb2.GetCapabilityRequest(inode_id=inode.id)),
                ("GetCapability", meta_pb2.GetCapabilityRequest(inode_id=inode.id + 1)),   # guessed ids
                ("GetCapability", meta_pb2.GetCapabilityRequest(inode_id=inode.id + 1, previous=bobs_cap)),
                ("StatInodes", meta_pb2.StatInodesRequest(inode_ids=[inode.id])),
                ("List", meta_pb2.ListRequest(path="/alice")),
                ("SetAttr", meta_pb2.SetAttrRequest(path="/alice", mode=0o777))):
            if method == "BatchStat":
                reply = meta.BatchStat(meta_pb2.BatchStatRequest(paths=["/alice/video.bin"], inline_ok=True))
                assert reply.results[0].error == "PermissionDenied" and not reply.results[0].capability
                continue
            with pytest.raises(PermissionDenied), rpc_errors_mapped():
                getattr(meta, method)(request, timeout=10)
    assert_untouched(local, users, data)


def bad_capabilities(local, users, inode_id: int) -> dict[str, list[bytes]]:
    """Every kind of capability bob could bring for alice's inode."""
    alices = MetaClient(local.meta_address, token=users["alice"].token).open("/alice/video.bin").capability
    bobs = MetaClient(local.meta_address, token=users["bob"].token).open("/bob/mine.txt").capability
    flipped = bytearray(alices)
    flipped[12] ^= 0x01                     # the inode field: now it names another file...
    resigned = bytearray(alices)
    resigned[-1] ^= 0x80                    # ...or the signature does not match
    time.sleep(TTL_MS / 1000 + 0.5)         # alice's real capability, replayed after it expired
    return {"none": [], "another inode's": [bobs], "a flipped byte": [bytes(flipped)],
            "a bad signature": [bytes(resigned)], "expired": [alices], "garbage": [os.urandom(38)]}


def test_hand_made_storage_calls_are_refused_on_grpc_and_bulk(tenants):
    local, users, data = tenants
    alice_meta = MetaClient(local.meta_address, token=users["alice"].token)
    inode = alice_meta.stat("/alice/video.bin").inode
    routing = local.routing()
    chains = {chain.id: chain for chain in routing.chains}
    nodes = {node.id: node for node in routing.nodes}
    node_of = {target.id: target.node_id for target in routing.targets}
    layout = inode.layout
    reads = []
    for chain in chains.values():           # guessing: every chain, chunk ids (inode, 0..1)
        node = nodes[node_of[chain.targets[0]]]
        for index in range(2):
            reads.append((chain, node, index))
    for what, caps in bad_capabilities(local, users, inode.id).items():
        for chain, node, index in reads:
            io = storage_pb2.ReadIO(chain_id=chain.id, chain_version=chain.version,
                                    chunk=types_pb2.ChunkId(inode=inode.id, index=index), offset=0, length=4096)
            with make_channel(node.address) as channel, pytest.raises(PermissionDenied), rpc_errors_mapped():
                storage_pb2_grpc.StorageStub(channel).BatchRead(
                    storage_pb2.BatchReadRequest(ios=[io], capabilities=caps), timeout=10)
            connection = BulkConnection(node.bulk_address, 10.0)
            try:
                connection.send_read([(chain.id, chain.version, inode.id, index, 0, 4096)], capabilities=caps)
                with pytest.raises(PermissionDenied, match="capabilit"):
                    connection.recv_read([(chain.id, chain.version, inode.id, index, 0, 4096)],
                                         [memoryview(bytearray(4096))])
                payload = b"overwritten by bob"
                with pytest.raises(PermissionDenied, match="capabilit"):
                    connection.write(chain.id, chain.version, inode.id, index, 0, memoryview(payload),
                                     crc32c.crc32c(payload), layout.chunk_size, b"bob", 1, 1,
                                     caps[0] if caps else b"")
            finally:
                connection.close()
            with make_channel(node.address) as channel, pytest.raises(PermissionDenied), rpc_errors_mapped():
                storage_pb2_grpc.StorageStub(channel).Write(storage_pb2.WriteRequest(
                    chain_id=chain.id, chain_version=chain.version, chunk=types_pb2.ChunkId(inode=inode.id, index=index),
                    data=b"x", checksum=crc32c.crc32c(b"x"), chunk_size=layout.chunk_size,
                    capability=caps[0] if caps else b""), timeout=10)
    assert_untouched(local, users, data)     # alice's own client renews her expired capabilities


def test_refusals_are_counted_in_the_storage_log(tenants):
    local, users, data = tenants
    logs = "".join(local.log_file(role).read_text() for role in local.storage_roles())
    assert "refused" in logs and "capabilit" in logs
