"""The attacks issue 12 found, each tried again by hand against a real cluster: each is refused
and does no harm.

Before: one hand-made RegisterNode for node 1 (address 127.0.0.1:9, incarnation 2**64-1) took the
node out for good; incarnation=0 replaced a node's address; a Heartbeat with incarnation 0 or a
SyncDone promoted a SYNCING target before its resync ended; SetTargetState, CreateChainTable,
Storage.Update with from_target=0 and RemoveChunk on one replica were open to anyone.
"""

from __future__ import annotations

import crc32c
import pytest

from fireflyfs.client.meta_client import MetaClient
from fireflyfs.common import auth
from fireflyfs.common.errors import InvalidArgument, PermissionDenied, Unauthenticated
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, mgmtd_pb2, mgmtd_pb2_grpc, storage_pb2, storage_pb2_grpc, types_pb2

NO_TOKEN = None


@pytest.fixture(scope="module")
def trust_cluster(tmp_path_factory):
    from fireflyfs.deploy.local_cluster import LocalCluster
    import sys

    local = LocalCluster(tmp_path_factory.mktemp("trust"), storage_nodes=4, targets_per_node=1, replicas=3,
                         heartbeat_timeout_ms=3000, python=sys.executable)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture(scope="module")
def tokens(trust_cluster):
    """Tokens: the admin's, an ordinary user's, and node keys (node 2's real one, a forged one)."""
    admin = MetaClient(trust_cluster.meta_address, token=trust_cluster.admin_token())
    mallory = admin.user_add("mallory", uid=1666).token
    node2 = admin.node_key(2)
    forged = auth.node_token(auth.new_cluster_secret(), 1)
    return {"admin": trust_cluster.admin_token(), "mallory": mallory, "node2": node2, "forged": forged,
            "none": NO_TOKEN}


def mgmtd_call(cluster, token, method, request):
    with make_channel(cluster.meta_address, token=token) as channel, rpc_errors_mapped():
        return getattr(mgmtd_pb2_grpc.MgmtdStub(channel), method)(request, timeout=10)


def storage_call(address, token, method, request):
    with make_channel(address, token=token) as channel, rpc_errors_mapped():
        return getattr(storage_pb2_grpc.StorageStub(channel), method)(request, timeout=10)


def node_one(cluster):
    return next(n for n in cluster.routing().nodes if n.id == 1)


def assert_cluster_unharmed(cluster, address_before):
    node = node_one(cluster)
    assert node.address == address_before and node.status == types_pb2.HEARTBEAT_CONNECTED
    states = cluster.chain_states()
    assert states and all(state == "SERVING" for chain in states.values() for _, state in chain), states


REFUSED = {"none": Unauthenticated, "forged": Unauthenticated, "mallory": PermissionDenied,
           "node2": PermissionDenied, "admin": PermissionDenied}


@pytest.mark.parametrize("who", sorted(REFUSED))
def test_no_one_but_the_node_registers_it(trust_cluster, tokens, who):
    before = node_one(trust_cluster).address
    request = mgmtd_pb2.RegisterNodeRequest(node_id=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:9",
                                            incarnation=2**64 - 1)
    with pytest.raises(REFUSED[who]) as refused:
        mgmtd_call(trust_cluster, tokens[who], "RegisterNode", request)
    assert "node 1" in str(refused.value) or who in ("none", "forged")
    heartbeat = mgmtd_pb2.HeartbeatRequest(node_id=1, incarnation=2**64 - 1, targets=[
        mgmtd_pb2.TargetHeartbeat(target_id=101, local_state=types_pb2.UPTODATE)])
    with pytest.raises(REFUSED[who]):
        mgmtd_call(trust_cluster, tokens[who], "Heartbeat", heartbeat)
    assert_cluster_unharmed(trust_cluster, before)


def test_incarnation_zero_is_no_way_around_the_restart_check(trust_cluster, tokens):
    """Even with node 1's own key: incarnation 0 is refused, for registration and heartbeats."""
    admin = MetaClient(trust_cluster.meta_address, token=tokens["admin"])
    node1 = admin.node_key(1)
    before = node_one(trust_cluster).address
    with pytest.raises(InvalidArgument, match="incarnation must be set"):
        mgmtd_call(trust_cluster, node1, "RegisterNode", mgmtd_pb2.RegisterNodeRequest(
            node_id=1, type=types_pb2.NODE_STORAGE, address="127.0.0.1:9", incarnation=0))
    with pytest.raises(InvalidArgument, match="incarnation must be set"):
        mgmtd_call(trust_cluster, node1, "Heartbeat", mgmtd_pb2.HeartbeatRequest(node_id=1, incarnation=0))
    assert_cluster_unharmed(trust_cluster, before)


@pytest.mark.parametrize("who", ["none", "mallory", "node2", "forged"])
def test_cluster_changes_are_for_admins(trust_cluster, tokens, who):
    before = node_one(trust_cluster).address
    expected = Unauthenticated if who in ("none", "forged") else PermissionDenied
    with pytest.raises(expected):
        mgmtd_call(trust_cluster, tokens[who], "SetTargetState",
                   mgmtd_pb2.SetTargetStateRequest(target_id=101, offline=True))
    with pytest.raises(expected):
        mgmtd_call(trust_cluster, tokens[who], "CreateChainTable",
                   mgmtd_pb2.CreateChainTableRequest(replicas=1))
    with make_channel(trust_cluster.meta_address, token=tokens[who]) as channel:
        meta = meta_pb2_grpc.MetaStub(channel)
        for method, request in (("UserAdd", meta_pb2.UserAddRequest(name="evil", admin=True)),
                                ("UserList", types_pb2.Empty()),
                                ("UserRotateToken", meta_pb2.UserNameRequest(name="admin")),
                                ("UserRemove", meta_pb2.UserNameRequest(name="admin")),
                                ("NodeKey", meta_pb2.NodeKeyRequest(node_id=1))):
            with pytest.raises(expected), rpc_errors_mapped():
                getattr(meta, method)(request, timeout=10)
    assert_cluster_unharmed(trust_cluster, before)
    names = [u.name for u in MetaClient(trust_cluster.meta_address, token=tokens["admin"]).user_list()]
    assert "evil" not in names and "admin" in names


def victim(cluster, tokens, path: str):
    """(the admin's fsspec file system, the bytes, the inode id) of a file the attacks aim at."""
    import fsspec

    fs = fsspec.filesystem("ffs", addresses=cluster.meta_address, token=tokens["admin"], skip_instance_cache=True)
    payload = bytes(range(256)) * 4096
    fs.pipe_file(path, payload)
    return fs, payload, fs.client.stat(path).id


@pytest.mark.parametrize("who", ["none", "mallory", "forged"])
def test_peer_only_storage_calls_refuse_everyone_but_chain_peers(trust_cluster, tokens, who):
    """Update with from_target=0, SyncStart/SyncDone, RemoveChunk, GetChunkMetas on node 1."""
    fs, payload, inode = victim(trust_cluster, tokens, f"/victim-{who}")
    routing = trust_cluster.routing()
    chain = routing.chains[0]
    node_of = {t.id: t.node_id for t in routing.targets}
    target = chain.targets[0]
    address = next(n.address for n in routing.nodes if n.id == node_of[target])
    expected = Unauthenticated if who == "forged" else PermissionDenied
    attacks = [
        ("Update", storage_pb2.UpdateRequest(from_target=0, to_target=target, write=storage_pb2.WriteRequest(
            chain_id=chain.id, chain_version=chain.version, chunk=types_pb2.ChunkId(inode=inode, index=0),
            data=b"\0" * 16, offset=0))),
        ("SyncStart", storage_pb2.SyncStartRequest(chain_id=chain.id, chain_version=chain.version,
                                                   target_id=target)),
        ("SyncDone", storage_pb2.SyncDoneRequest(chain_id=chain.id, chain_version=chain.version,
                                                 target_id=target)),
        ("RemoveChunk", storage_pb2.RemoveChunkRequest(chain_id=chain.id, chain_version=chain.version,
                                                       target_id=target,
                                                       chunk=types_pb2.ChunkId(inode=inode, index=0))),
        ("GetChunkMetas", storage_pb2.GetChunkMetasRequest(target_id=target)),
        ("TruncateChunk", storage_pb2.TruncateChunkRequest(chain_id=chain.id, chain_version=chain.version)),
        ("RemoveChunks", storage_pb2.RemoveChunksRequest(chain_id=chain.id, chain_version=chain.version,
                                                         inode=inode)),
    ]
    for method, request in attacks:
        with pytest.raises(expected):
            storage_call(address, tokens[who], method, request)
    assert fs.cat_file(f"/victim-{who}") == payload
    assert_cluster_unharmed(trust_cluster, node_one(trust_cluster).address)


def test_a_node_outside_the_chain_is_no_peer(trust_cluster, tokens):
    """A real node key, on a chain where that node holds no target: refused as no peer."""
    admin = MetaClient(trust_cluster.meta_address, token=tokens["admin"])
    routing = trust_cluster.routing()
    node_of = {t.id: t.node_id for t in routing.targets}
    address_of = {n.id: n.address for n in routing.nodes}
    chain = routing.chains[0]
    members = {node_of[t] for t in chain.targets}
    outsider = next(n.id for n in routing.nodes if n.type == types_pb2.NODE_STORAGE and n.id not in members)
    target = chain.targets[0]
    with pytest.raises(PermissionDenied, match="nodes of its chain"):
        storage_call(address_of[node_of[target]], admin.node_key(outsider), "GetChunkMetas",
                     storage_pb2.GetChunkMetasRequest(target_id=target))


def test_refusals_are_logged_with_who_and_why(trust_cluster, tokens):
    with pytest.raises(PermissionDenied):
        mgmtd_call(trust_cluster, tokens["mallory"], "SetTargetState",
                   mgmtd_pb2.SetTargetStateRequest(target_id=101, offline=True))
    log = trust_cluster.log_file("meta").read_text()
    assert "refused" in log and "mallory" in log and "setting a target's state is for admins" in log


@pytest.mark.parametrize("who", ["none", "mallory", "forged", "outsider"])
def test_bulk_chain_updates_refuse_everyone_but_chain_peers(trust_cluster, tokens, who):
    """An UPDATE frame on a node's bulk listener (the chain's own path, issue 13) with no token, a
    user's, a forged node key, or the key of a node holding no target of the chain: refused, and
    the file reads back unchanged."""
    from fireflyfs.storage_service.bulk_peers import PeerConnection
    from fireflyfs.storage_service.chain_update import ChainUpdate

    fs, payload, inode = victim(trust_cluster, tokens, f"/bulk-victim-{who}")
    routing = trust_cluster.routing()
    chain = routing.chains[0]
    node_of = {t.id: t.node_id for t in routing.targets}
    members = {node_of[t] for t in chain.targets}
    token = tokens.get(who)
    if who == "outsider":
        outsider = next(n.id for n in routing.nodes if n.type == types_pb2.NODE_STORAGE and n.id not in members)
        token = MetaClient(trust_cluster.meta_address, token=tokens["admin"]).node_key(outsider)
    target = chain.targets[1]            # a successor: what a forged predecessor would write to
    bulk_address = next(n.bulk_address for n in routing.nodes if n.id == node_of[target])
    zeros = b"\0" * 4096
    update = ChainUpdate(chain_id=chain.id, chain_version=chain.version, inode=inode, index=0,
                         chunk_size=1 << 20, update_version=99, from_target=chain.targets[0], to_target=target,
                         data=zeros, checksum=crc32c.crc32c(zeros), full_replace=True)
    connection = PeerConnection(bulk_address, timeout_s=10)
    try:
        with pytest.raises(Unauthenticated if who == "forged" else PermissionDenied):
            connection.update(update, token or "", timeout_s=10)
        assert not connection.broken          # refused with a reply; the connection stays usable
    finally:
        connection.close()
    log = trust_cluster.log_file(f"storage-{node_of[target]}").read_text()
    assert "refused bulk chain update" in log, "the refusal is logged on the node it was sent to"
    assert fs.cat_file(f"/bulk-victim-{who}") == payload
    assert_cluster_unharmed(trust_cluster, node_one(trust_cluster).address)
