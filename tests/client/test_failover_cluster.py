"""Client failover on real processes: chains of three replicas, storage nodes SIGKILLed mid-use.

Method: a dedicated cluster (4 storage nodes, replication 3, 2 s heartbeat
timeout) and one FfsClient. Files written before the failure must read back
right after one storage node is SIGKILLed (reads go to the surviving
replicas at once, without waiting for mgmtd), and new files must be writable
(a write whose head died waits until mgmtd moves the head, then lands on the
new one). Then a second node dies: every chain still has a replica, so reads
and writes still continue. Finally both return and, once resync made every
target SERVING again, everything reads back from every replica.

Needs the storage side to forward writes along the chain; a probe skips the
test (saying so) on a build that does not.
"""

from __future__ import annotations

import os
import signal


from fireflyfs.client.client import FfsClient
from fireflyfs.client.config import ClientConfig
from fireflyfs.common.layout import Layout
from fireflyfs.proto import storage_pb2, types_pb2

CHUNK = 64 * 1024


def replica_bytes(client: FfsClient, path: str) -> list[bytes]:
    """The file's first chunk as each SERVING replica of its chain holds it."""
    inode = client.stat(path)
    layout = Layout.from_proto(inode.layout)
    chain_id = client.routing.chain_id_for(layout, 0)
    client.open(path)                                   # a read capability, as any reader gets
    capabilities = client.capabilities.for_inodes([inode.id])
    out = []
    for route in client.routing.serving_routes(chain_id):
        reply = client.storage.call(route, "BatchRead", storage_pb2.BatchReadRequest(ios=[storage_pb2.ReadIO(
            chain_id=route.chain_id, chain_version=route.chain_version,
            chunk=types_pb2.ChunkId(inode=inode.id, index=0), offset=0, length=CHUNK)],
            capabilities=capabilities))
        out.append(bytes(reply.results[0].data))
    return out


def write_files(client: FfsClient, prefix: str, count: int) -> dict[str, bytes]:
    files = {f"{prefix}/{i}": os.urandom(CHUNK * (1 + i % 3) + i) for i in range(count)}
    for path, data in files.items():
        client.write_file(path, data)
    return files


def check_files(client: FfsClient, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert client.read_file(path) == data, path


def test_reads_and_writes_continue_while_storage_nodes_die(make_cluster):
    local = make_cluster(storage_nodes=4, replicas=3, heartbeat_timeout_ms=2000, targets_per_node=1)
    client = FfsClient(local.meta_address, config=ClientConfig(retry_time_s=90.0))
    client.mkdir("/data", chunk_size=CHUNK)
    client.write_file("/data/probe", b"p" * 100)
    replicas = replica_bytes(client, "/data/probe")
    assert len(replicas) == 3 and len(set(replicas)) == 1, "an acknowledged write must be on every replica"
    before = write_files(client, "/data/before", 12)

    local.kill(2, signal.SIGKILL)
    check_files(client, before)                       # failover to surviving replicas
    during = write_files(client, "/data/one-down", 8)  # heads on node 2 move after the timeout
    check_files(client, during)
    routing = client.routing.routing_info()
    assert all(t.public_state != types_pb2.SERVING for t in routing.targets if t.node_id == 2)

    local.kill(3, signal.SIGKILL)
    check_files(client, before)
    check_files(client, during)
    two_down = write_files(client, "/data/two-down", 8)
    check_files(client, two_down)

    local.up()                                        # nodes 2 and 3 return and resync
    local.wait_all_serving(timeout_s=120)
    client.routing.refresh()
    for files in (before, during, two_down):
        check_files(client, files)
        for path, data in files.items():
            assert set(replica_bytes(client, path)) == {data[:CHUNK]}, f"{path}: replicas differ"
