"""GC and O(1) O_TRUNC against the real session cluster (meta + 3 storage nodes).

Goal: an unlinked file's chunks really leave storage, off the request path.
Method: write a multi-chunk file through fsspec, note its inode and layout,
remove it, then poll storage (QueryLastChunk through a StorageClient) until
the meta process's GC thread has removed every chunk.
"""

from __future__ import annotations

import time

from fireflyfs.common.layout import Layout
from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import meta_pb2, meta_pb2_grpc
from tests import trust

GC_WAIT_S = 20


def storage_length(client, inode) -> int:
    return client.file_length_from_chunks(inode.id, Layout.from_proto(inode.layout))


def wait_until_gone(client, inode) -> None:
    deadline = time.monotonic() + GC_WAIT_S
    while storage_length(client, inode):
        assert time.monotonic() < deadline, f"chunks of inode {inode.id} still on storage"
        time.sleep(0.1)


def test_unlinked_and_o_trunc_replaced_files_are_reclaimed(cluster, ffs, ffs_dir):
    from fireflyfs.client.channels import shared_pool
    from fireflyfs.client.storage_client import StorageClient

    address = f"{cluster.host}:{cluster.port}"
    # An admin's storage client: it asks storage for last chunks, as only nodes and admins may.
    client = StorageClient.for_mgmtd(address, "test-meta-gc", pool=shared_pool(trust.ADMIN_TOKEN))
    with make_channel(address, token=trust.ADMIN_TOKEN) as channel:
        meta = meta_pb2_grpc.MetaStub(channel)
        data = bytes(range(256)) * (9 * 4096)  # 9 MiB: three 4 MiB chunks
        ffs.pipe(f"{ffs_dir}/removed", data)
        ffs.pipe(f"{ffs_dir}/truncated", data)
        removed = meta.Stat(meta_pb2.StatRequest(path=f"{ffs_dir}/removed"), timeout=5).inode
        old = meta.Stat(meta_pb2.StatRequest(path=f"{ffs_dir}/truncated"), timeout=5).inode
        assert removed.length == len(data) == storage_length(client, removed)

        ffs.rm(f"{ffs_dir}/removed")
        wait_until_gone(client, removed)

        reply = meta.Open(meta_pb2.OpenRequest(path=f"{ffs_dir}/truncated", write=True, truncate=True,
                                               client_id="test"), timeout=5)
        assert reply.inode.id != old.id and reply.inode.length == 0
        closed = meta.Close(meta_pb2.CloseRequest(inode_id=reply.inode.id, session_id=reply.session_id,
                                                  client_id="test"), timeout=5).inode
        assert closed.length == 0
        wait_until_gone(client, old)
        assert ffs.cat(f"{ffs_dir}/truncated") == b""
