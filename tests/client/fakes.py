"""In-process stand-ins for the cluster: routing and storage nodes without sockets.

``FakeCluster`` builds a RoutingInfo (nodes, one target per chain, one chain
table) and ``FakePool`` hands out ``FakeStorageNode`` objects where the real
ChannelPool would hand out gRPC stubs, so StorageClient runs unchanged on top.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import crc32c

from fireflyfs.common import errors
from fireflyfs.proto import storage_pb2, types_pb2


def make_routing(version: int = 1, nodes: int = 3, chains: int = 6,
                 chain_version: int = 1, replicas: int = 1) -> types_pb2.RoutingInfo:
    """Chains of `replicas` targets on consecutive nodes (head on node (chain-1) % nodes + 1)."""
    routing = types_pb2.RoutingInfo(version=version)
    for node_id in range(1, nodes + 1):
        routing.nodes.add(id=node_id, type=types_pb2.NODE_STORAGE, address=f"node-{node_id}")
    for chain_id in range(1, chains + 1):
        targets = []
        for replica in range(replicas):
            node_id = (chain_id - 1 + replica) % nodes + 1
            target_id = node_id * 100 + chain_id
            routing.targets.add(id=target_id, node_id=node_id, chain_id=chain_id,
                                public_state=types_pb2.SERVING)
            targets.append(target_id)
        routing.chains.add(id=chain_id, version=chain_version, targets=targets)
    routing.chain_tables.add(id=1, version=1, chains=list(range(1, chains + 1)), replicas=replicas)
    return routing


class FakeStorageNode:
    """The Storage RPCs of one node over a shared chunk dict; records calls."""

    def __init__(self, address: str, cluster: "FakeCluster") -> None:
        self.address = address
        self.cluster = cluster

    def _check(self, chain_id: int, chain_version: int) -> None:
        self.cluster.calls[self.address] += 1
        if self.address in self.cluster.dead:
            raise errors.Unavailable(f"{self.address} is dead")
        failure = self.cluster.failures.pop(0) if self.cluster.failures else None
        if failure is not None:
            raise failure
        if chain_version != self.cluster.chain_version:
            raise errors.StaleChainVersion(f"chain {chain_id} v{chain_version}")

    def BatchRead(self, request, timeout=None):
        reply = storage_pb2.BatchReadReply()
        self.cluster.batch_reads.append((self.address, len(request.ios)))
        self._check(request.ios[0].chain_id, request.ios[0].chain_version)
        for io in request.ios:
            if (io.chunk.inode, io.chunk.index) in self.cluster.uncommitted_on.get(self.address, ()):
                reply.results.add(status=storage_pb2.IoStatus(error="ChunkNotCommitted", message="pending"))
                continue
            chunk = self.cluster.chunks.get((io.chunk.inode, io.chunk.index), b"")
            data = bytes(chunk[io.offset:io.offset + io.length])
            reply.results.add(data=data, checksum=crc32c.crc32c(data), chunk_length=len(chunk))
        return reply

    def Write(self, request, timeout=None):
        self._check(request.chain_id, request.chain_version)
        assert crc32c.crc32c(request.data) == request.checksum
        assert request.offset + len(request.data) <= request.chunk_size
        key = (request.client_id, request.channel)
        seqnums = self.cluster.seqnums
        assert request.seqnum > seqnums.get(key, 0), "seqnum must grow per channel"
        seqnums[key] = request.seqnum
        chunk = self.cluster.chunks.setdefault((request.chunk.inode, request.chunk.index),
                                               bytearray())
        end = request.offset + len(request.data)
        if len(chunk) < end:
            chunk.extend(bytes(end - len(chunk)))
        chunk[request.offset:end] = request.data
        self.cluster.writes.append((request.chain_id, request.chunk.index, request.offset,
                                    len(request.data)))
        self.cluster.write_addresses.append(self.address)
        return storage_pb2.WriteReply(commit_version=self.cluster.commit_version, chunk_length=len(chunk))

    def _chain_of(self, chain_id: int) -> set[int]:
        return self.cluster.chunks_on_chain(chain_id)

    def QueryLastChunk(self, request, timeout=None):
        reply = storage_pb2.QueryLastChunkReply()
        for query in request.queries:
            self._check(query.chain_id, query.chain_version)
            indices = [index for (inode, index) in self.cluster.chunks
                       if inode == query.inode and index in self._chain_of(query.chain_id)]
            if indices:
                last = max(indices)
                reply.results.add(found=True, last_index=last, chunk_count=len(indices),
                                  last_length=len(self.cluster.chunks[(query.inode, last)]))
            else:
                reply.results.add(found=False)
        return reply

    def RemoveChunks(self, request, timeout=None):
        self._check(request.chain_id, request.chain_version)
        removed = 0
        for inode, index in list(self.cluster.chunks):
            if (inode == request.inode and index >= request.begin_index
                    and (request.end_index == 0 or index < request.end_index)
                    and index in self._chain_of(request.chain_id)):
                del self.cluster.chunks[(inode, index)]
                removed += 1
        return storage_pb2.RemoveChunksReply(removed=removed)

    def TruncateChunk(self, request, timeout=None):
        self._check(request.chain_id, request.chain_version)
        key = (request.chunk.inode, request.chunk.index)
        if key in self.cluster.chunks:
            del self.cluster.chunks[key][request.length:]
        return storage_pb2.TruncateChunkReply()


class FakeCluster:
    """Chunks keyed (inode, index), a chain version, and injectable failures."""

    def __init__(self, chain_version: int = 1) -> None:
        self.chunks: dict[tuple[int, int], bytearray] = {}
        self.chain_version = chain_version
        self.failures: list[Exception] = []
        self.calls: collections.Counter = collections.Counter()
        self.batch_reads: list[tuple[str, int]] = []
        self.writes: list[tuple[int, int, int, int]] = []
        self.seqnums: dict[tuple[str, int], int] = {}
        self.chain_chunks: dict[int, set[int]] = {}   # filled by tests that need it
        self.dead: set[str] = set()                     # addresses that answer Unavailable
        self.uncommitted_on: dict[str, set[tuple[int, int]]] = {}   # address -> chunks mid-write there
        self.write_addresses: list[str] = []
        self.commit_version = 1                         # what a Write answers
        self.layout = None
        self.routing = None

    def chunks_on_chain(self, chain_id: int) -> set[int]:
        """Chunk indices whose chain is chain_id (via the test's layout and routing)."""
        return {index for (_inode, index) in self.chunks
                if self.routing.chain_id_for(self.layout, index) == chain_id}


class FakePool:
    """ChannelPool's interface (stub, executor, forget) over FakeStorageNodes."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self._executor = ThreadPoolExecutor(4)
        self.forgotten: list[str] = []

    def stub(self, address, stub_cls):
        return FakeStorageNode(address, self.cluster)

    def executor(self):
        return self._executor

    def forget(self, address):
        self.forgotten.append(address)
