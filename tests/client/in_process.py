"""Storage nodes in this process over the real storage cores, and a storage transport to them: no sockets.

``InProcessCluster`` wires each node as a storage process does
(storage_service/server.py) minus gRPC and the heartbeat: real Targets (chunk
engines on disk under the test's tmp dir), a RoutingView, a ChainDriver and
the StorageServicer. The test plays mgmtd: ``install`` hands every node a
RoutingInfo. Chain updates go from servicer to servicer (``_NodePeers``), so a
write is acknowledged only once every replica committed it, exactly-once ids
are checked by the targets' dedup caches, versions by CRAQ, chain versions by
the routing fence.

``InProcessTransport`` is the StorageTransport interface
(client/storage_transport.py) over those servicers, as httpx's MockTransport
is over a function. Errors travel as on the wire: the servicer's error mapping
aborts with the error's name and message, and the caller gets the class of
that name. ``pipelined=True`` makes it behave as the bulk transport does for
scheduling (``send_read`` returns at once, the node answers in
``receive_read``), so both of StorageClient's read paths run in unit tests.

What the cores cannot do, the transport injects (the network's part, or a
server bug): ``dead`` nodes are unreachable (``NodeUnreachable``; peers get
Unavailable), ``failures`` are raised by the next requests instead of sending
them, ``lost_write_acks`` drops the reply of that many applied writes,
``corrupt_reads`` ((inode, chunk index) -> count) damages that many replies of
the chunk in transit, as the bulk transport's checksum check reports them, ``zero_commit_version`` answers writes as a
head that forgot the commit version; ``corrupt_targets`` ((inode, chunk
index) -> targets) damages every reply of the chunk from those replicas, as a
rotten copy on their disks would reach the bulk client. It records what was asked of whom:
``requests`` (per address, failed ones too), ``reads`` ((address, IO count) per
read request), ``reports`` ((target, inode, chunk index) per ReportBadChunk), ``writes`` ((address, chain, chunk index, offset, length,
client id, channel, seqnum) per write applied), ``inflight_peak`` (pipelined
read requests sent and not yet received, per address and ``"total"``).

``LoopbackChannelPool`` stands where a ChannelPool would and hands out stubs
that call those servicers, so the production gRPC transport runs on the same
cores: requests and replies are serialized, and failures come back as the
grpc.RpcError a real channel raises (status, details, error name; a dead node
is UNAVAILABLE).
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import crc32c
import grpc

from fireflyfs.client.grpc_transport import last_chunks_from_reply
from fireflyfs.client.storage_transport import (LastChunk, NodeUnreachable, ReadIO, ReadLimits, ReadOutcome,
                                                WriteAck, describe)
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.routing import Route, RoutingCache
from fireflyfs.client.storage_client import StorageClient
from fireflyfs.common import errors, limits
from fireflyfs.common.errors import FfsError, Unavailable
from fireflyfs.common.rpc import ERROR_METADATA_KEY, status_of
from fireflyfs.proto import storage_pb2, types_pb2
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chunk_meta import chunk_key, split_key
from fireflyfs.storage_service.craq import UpdateKind
from fireflyfs.storage_service.repair import Repairer, RepairQueue
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.servicer import StorageServicer
from fireflyfs.storage_service.target import Target

block_size_bytes = 4096
op_deadline_s = 5.0          # a chain update that cannot finish gives up this soon (a dead successor)


class _CallContext:
    """What the storage servicer uses of a grpc.ServicerContext: abort raises the error it names."""

    def __init__(self) -> None:
        self._error_name = ""

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, metadata) -> None:
        self._error_name = dict(metadata).get(ERROR_METADATA_KEY, "")

    def abort(self, code, details: str):
        raise errors.error_from_name(self._error_name, details)


class InProcessNode:
    """One storage node: its targets, routing view, chain driver and Storage servicer."""

    def __init__(self, cluster: "InProcessCluster", node_id: int, address: str, target_ids: list[int],
                 root: Path) -> None:
        self.node_id = node_id
        self.address = address
        self.targets = {target_id: Target(target_id, root / f"target-{target_id}", block_size=block_size_bytes)
                        for target_id in target_ids}
        self.routing = RoutingView(node_id, target_ids)     # no fence: the test plays mgmtd
        self.peers = _NodePeers(cluster, self.routing)
        self.driver = ChainDriver(self.routing, self.peers, op_deadline_s=op_deadline_s)
        self.repairer = Repairer(self.targets, self.routing, self.peers, self.driver)
        self.repairs = RepairQueue(self.repairer.repair, target_ids)     # worked by the test: run_once
        self.servicer = StorageServicer(node_id, self.targets, self.routing, self.driver, self.repairs)

    def call(self, method: str, request):
        """Storage.<method>(request) as the gRPC server would run it, errors raised by name."""
        return getattr(self.servicer, method)(request, _CallContext())

    def target_of_chain(self, chain_id: int) -> Target:
        chain = self.routing.chain(chain_id)
        return next(self.targets[t] for t in chain.targets if t in self.targets)

    def close(self) -> None:
        self.driver.close()
        for target in self.targets.values():
            target.close()


class _NodePeers:
    """ChainDriver's peers (storage_service/peers.py) over the nodes of this process."""

    rpc_timeout_s = op_deadline_s

    def __init__(self, cluster: "InProcessCluster", routing: RoutingView) -> None:
        self._cluster = cluster
        self._routing = routing

    def call(self, target_id: int, method: str, request, timeout_s: float | None = None):
        address = self._routing.address_of_target(target_id)
        if not address or address in self._cluster.dead:
            raise Unavailable(f"target {target_id} at {address or 'no address'} is down")
        return self._cluster.nodes[address].call(method, request)

    def update(self, target_id: int, update, timeout_s: float | None = None):
        """A chain update, as Storage.Update (the transports are tested on real processes)."""
        return self.call(target_id, "Update", update.to_proto(), timeout_s)


class InProcessCluster:
    """The nodes a RoutingInfo names, each with a target per chain it serves (see the module docstring)."""

    def __init__(self, root: Path, routing: types_pb2.RoutingInfo) -> None:
        self.dead: set[str] = set()
        target_ids: dict[int, list[int]] = collections.defaultdict(list)
        for target in routing.targets:
            target_ids[target.node_id].append(target.id)
        self.nodes = {node.address: InProcessNode(self, node.id, node.address, target_ids[node.id],
                                                  root / f"node-{node.id}")
                      for node in routing.nodes}
        self.install(routing)

    def install(self, routing: types_pb2.RoutingInfo) -> None:
        """Every node (dead ones too: they come back with it) now routes by routing."""
        for node in self.nodes.values():
            node.routing.update(routing)

    def chunk_indices(self, inode_id: int) -> set[int]:
        """Indices of the chunks of inode_id stored on any target."""
        return {split_key(key)[1] for node in self.nodes.values() for target in node.targets.values()
                for key in target.engine.keys_in_range(inode_id, 0, None)}

    def metas(self, inode_id: int, index: int) -> dict[str, tuple[int, int, int]]:
        """Per node address holding the chunk: (length, commit version, update version)."""
        key = chunk_key(inode_id, index)
        found = {}
        for address, node in self.nodes.items():
            for target in node.targets.values():
                meta = target.engine.get_meta(key)
                if meta is not None:
                    found[address] = (meta.length, meta.commit_version, meta.update_version)
        return found

    def leave_pending(self, address: str, chain_id: int, inode_id: int, index: int, data: bytes) -> None:
        """Stage an update of the chunk on address's replica without committing it: a write in flight
        there (CRAQ: the tail commits first, the replicas before it stay pending until the ack)."""
        target = self.nodes[address].target_of_chain(chain_id)
        key = chunk_key(inode_id, index)
        meta = target.engine.get_meta(key)
        target.engine.stage(key, UpdateKind.WRITE, meta.commit_version + 1, meta.chain_version, meta.chunk_size,
                            commit=False, offset=0, data=data, checksum=crc32c.crc32c(data))

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


class InProcessTransport:
    """StorageTransport over an InProcessCluster (see the module docstring)."""

    def __init__(self, cluster: InProcessCluster, pipelined: bool = False,
                 bytes_max: int = limits.batch_read_request_bytes_target,
                 ios_max: int = limits.batch_read_ios_max) -> None:
        self.cluster = cluster
        self.read_limits_all = ReadLimits(bytes_max, ios_max, pipelined)
        self.failures: list[Exception] = []
        self.lost_write_acks = 0
        self.corrupt_reads: dict[tuple[int, int], int] = {}
        self.corrupt_targets: dict[tuple[int, int], set[int]] = {}
        self.zero_commit_version = False
        self.requests: collections.Counter = collections.Counter()
        self.reads: list[tuple[str, int]] = []
        self.writes: list[tuple[str, int, int, int, int, str, int, int]] = []
        self.reports: list[tuple[int, int, int]] = []      # (target, inode, chunk index) per ReportBadChunk
        self.inflight_peak: collections.Counter = collections.Counter()
        self._inflight: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def _reach(self, route: Route, what: str) -> InProcessNode:
        """The node route names, unless it is dead or an injected failure comes first."""
        with self._lock:
            self.requests[route.address] += 1
            if route.address in self.cluster.dead:
                raise NodeUnreachable(f"{what} on {describe(route)}: {route.address} is down")
            if self.failures:
                raise self.failures.pop(0)
        return self.cluster.nodes[route.address]

    # ---- reads ------------------------------------------------------------

    def read_limits(self, route: Route) -> ReadLimits:
        return self.read_limits_all

    def send_read(self, route: Route, ios: list[ReadIO]):
        with self._lock:
            self.reads.append((route.address, len(ios)))
        node = self._reach(route, "BatchRead")
        request = storage_pb2.BatchReadRequest(ios=[
            storage_pb2.ReadIO(chain_id=chain_id, chain_version=chain_version,
                               chunk=types_pb2.ChunkId(inode=inode, index=index), offset=offset, length=length)
            for chain_id, chain_version, inode, index, offset, length in ios])
        if self.read_limits_all.pipelined:
            with self._lock:
                self._inflight[route.address] += 1
                self._inflight["total"] += 1
                for key in (route.address, "total"):
                    self.inflight_peak[key] = max(self.inflight_peak[key], self._inflight[key])
        return node, request

    def receive_read(self, route: Route, sent, ios: list[ReadIO], views: list[memoryview]) -> list[ReadOutcome]:
        node, request = sent
        if self.read_limits_all.pipelined:
            with self._lock:
                self._inflight[route.address] -= 1
                self._inflight["total"] -= 1
        reply = node.call("BatchRead", request)
        outcomes = []
        for io, result, view in zip(ios, reply.results, views):
            if result.status.error:
                outcomes.append(ReadOutcome(error=errors.error_from_name(result.status.error,
                                                                         result.status.message)))
                continue
            count = min(len(result.data), len(view))
            view[:count] = result.data[:count]
            outcome = ReadOutcome(count, result.chunk_length, result.commit_version)
            chunk = (io[2], io[3])
            with self._lock:
                corrupt = count > 0 and self.corrupt_reads.get(chunk, 0) > 0
                if corrupt:
                    self.corrupt_reads[chunk] -= 1
                corrupt = corrupt or (count > 0 and route.target_id in self.corrupt_targets.get(chunk, ()))
            if corrupt:     # as bulk_client reports bytes that fail their CRC on arrival
                view[0] ^= 0xFF
                outcome.checksum_failed = True
                outcome.error = errors.ChecksumMismatch(f"bytes from {route.address} fail their CRC32C")
            outcomes.append(outcome)
        return outcomes

    # ---- writes and control calls -------------------------------------------

    def write(self, route: Route, inode_id: int, chunk_index: int, offset: int, data: memoryview,
              checksum: int, chunk_size: int, client_id: str, channel: int, seqnum: int) -> WriteAck:
        node = self._reach(route, "Write")
        reply = node.call("Write", storage_pb2.WriteRequest(
            chain_id=route.chain_id, chain_version=route.chain_version,
            chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index), offset=offset, data=bytes(data),
            checksum=checksum, chunk_size=chunk_size, client_id=client_id, channel=channel, seqnum=seqnum))
        with self._lock:
            self.writes.append((route.address, route.chain_id, chunk_index, offset, len(data), client_id,
                                channel, seqnum))
            lost = self.lost_write_acks > 0
            if lost:
                self.lost_write_acks -= 1
        if lost:
            raise NodeUnreachable(f"Write on {describe(route)}: the connection broke before the reply")
        if self.zero_commit_version:
            return WriteAck(0, reply.chunk_length, reply.chunk_checksum)
        return WriteAck(reply.commit_version, reply.chunk_length, reply.chunk_checksum)

    def truncate_chunk(self, route: Route, inode_id: int, chunk_index: int, length: int,
                       chunk_size: int) -> None:
        self._reach(route, "TruncateChunk").call("TruncateChunk", storage_pb2.TruncateChunkRequest(
            chain_id=route.chain_id, chain_version=route.chain_version,
            chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index), length=length, chunk_size=chunk_size))

    def remove_chunks(self, route: Route, inode_id: int, begin_index: int, end_index: int = 0) -> int:
        return self._reach(route, "RemoveChunks").call("RemoveChunks", storage_pb2.RemoveChunksRequest(
            chain_id=route.chain_id, chain_version=route.chain_version, inode=inode_id,
            begin_index=begin_index, end_index=end_index)).removed

    def query_last_chunks(self, routes: list[Route], inode_id: int) -> list[LastChunk | None]:
        reply = self._reach(routes[0], "QueryLastChunk").call("QueryLastChunk", storage_pb2.QueryLastChunkRequest(
            queries=[storage_pb2.LastChunkQuery(chain_id=r.chain_id, chain_version=r.chain_version, inode=inode_id)
                     for r in routes]))
        return last_chunks_from_reply(routes, reply)

    def report_bad_chunk(self, route: Route, inode_id: int, chunk_index: int) -> None:
        with self._lock:
            self.reports.append((route.target_id, inode_id, chunk_index))
        if route.address in self.cluster.dead:      # (injected failures are for the data path, not reports)
            raise NodeUnreachable(f"ReportBadChunk on {describe(route)}: {route.address} is down")
        self.cluster.nodes[route.address].call("ReportBadChunk", storage_pb2.ReportBadChunkRequest(
            target_id=route.target_id, chunk=types_pb2.ChunkId(inode=inode_id, index=chunk_index)))


class _RpcError(grpc.RpcError):
    """A failed call as a grpc channel reports it."""

    def __init__(self, code: grpc.StatusCode, details: str, error_name: str = "") -> None:
        super().__init__(details)
        self._code, self._details, self._error_name = code, details, error_name

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return ((ERROR_METADATA_KEY, self._error_name),) if self._error_name else ()


class _LoopbackStub:
    def __init__(self, cluster: InProcessCluster, address: str) -> None:
        self._cluster = cluster
        self._address = address

    def __getattr__(self, method: str):
        def call(request, timeout=None):
            if self._address in self._cluster.dead:
                raise _RpcError(grpc.StatusCode.UNAVAILABLE, f"failed to connect to {self._address}")
            request = type(request).FromString(request.SerializeToString())
            try:
                reply = self._cluster.nodes[self._address].call(method, request)
            except FfsError as exc:
                raise _RpcError(status_of(type(exc)), str(exc), errors.error_name(exc)) from None
            return type(reply).FromString(reply.SerializeToString())
        return call


class LoopbackChannelPool:
    """ChannelPool's face (stub, executor, forget) over an InProcessCluster (see the module docstring)."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster
        self.forgotten: list[str] = []
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="loopback-io")

    def stub(self, address: str, stub_cls):
        return _LoopbackStub(self.cluster, address)

    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    def forget(self, address: str) -> None:
        self.forgotten.append(address)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class FakeClock:
    """Time that moves only when the code under test sleeps, so retry budgets cost nothing."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ClientOnNodes:
    """A StorageClient on a fake clock over an InProcessCluster; ``move_routing`` publishes new routing."""

    def __init__(self, tmp_path, routing: types_pb2.RoutingInfo, *, pipelined: bool, client_id: str = "client-1",
                 config: ClientConfig | None = None, transport_options: dict | None = None,
                 **client_options) -> None:
        self.routing = routing
        self.fetches = 0
        self.cluster = InProcessCluster(tmp_path, routing)
        self.transport = InProcessTransport(self.cluster, pipelined=pipelined, **(transport_options or {}))
        self.cache = RoutingCache(self._fetch)
        self.clock = FakeClock()
        self.client = StorageClient(self.cache, client_id, config=config or ClientConfig(), sleep=self.clock.sleep,
                                    clock=self.clock, transport=self.transport, **client_options)

    def _fetch(self, known: int):
        self.fetches += 1
        return None if self.routing.version == known else self.routing

    def move_routing(self, routing: types_pb2.RoutingInfo) -> None:
        """mgmtd publishes routing: the nodes have it at once, the client when it asks."""
        self.routing = routing
        self.cluster.install(routing)

    def close(self) -> None:
        self.cluster.close()
