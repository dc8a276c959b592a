"""fsck against a running cluster: gather replicas' chunk metadata, compare (fsck_findings.py), repair.

A pass: for every chain, page each SERVING replica's chunk metadata
(Storage.GetChunkMetas, addressed by target), compare them with the head's,
and ask the metadata service which of the inodes seen still exist or wait for
GC (Meta.StatInodes). Because writers may be active, a pass that finds
anything is repeated after ``recheck_delay_s`` and only findings seen in both
are reported.

Repair (``--repair``), with the head as the reference, as resync does:
divergent and missing chunks are re-read from the head and sent to the replica
as a full-chunk replace (Storage.Update, full_replace, the head's commit and
chain version) which the replica also forwards down its chain; chunks only a
replica holds, and orphans, are removed from that target (Storage.RemoveChunk).
Pending chunks are left to the next write or resync. Repair is meant for a
quiet cluster: a write racing with it makes that chunk's repair fail (the
versions no longer match) rather than go back in time.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

import crc32c

from fireflyfs.common import errors, limits
from fireflyfs.proto import storage_pb2, types_pb2
from fireflyfs.client.channels import ChannelPool, shared_pool
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.meta_client import MetaClient
from fireflyfs.client.routing import Route, RoutingCache
from fireflyfs.client.storage_client import StorageClient

from .fsck_findings import (ChunkMeta, Finding, FindingKind, Replica, Report, compare_chain, find_orphans,
                            inode_ids, persistent)

log = logging.getLogger(__name__)

metas_page_limit = 10_000
recheck_delay_s_default = 1.0
_INDEX_MAX = (1 << 32) - 1


class FsckRunner:
    def __init__(self, address: str, config: ClientConfig | None = None, pool: ChannelPool | None = None,
                 recheck_delay_s: float = recheck_delay_s_default,
                 sleep: Callable[[float], None] = time.sleep,
                 routing: RoutingCache | None = None, meta: MetaClient | None = None) -> None:
        self.config = config or ClientConfig.from_env()
        pool = pool or shared_pool()
        self.routing = routing or RoutingCache.for_mgmtd(address, pool, self.config.mgmtd_timeout_s)
        self.meta = meta or MetaClient(address, pool, config=self.config)
        self.storage = StorageClient(self.routing, f"fsck-{uuid.uuid4().hex[:12]}", pool=pool,
                                     config=self.config)
        self.recheck_delay_s = recheck_delay_s
        self._sleep = sleep
        self._chunk_sizes: dict[int, int] = {}

    # ---- checking ---------------------------------------------------------------------

    def check(self) -> Report:
        """Compare every chain's serving replicas; findings must survive a second pass."""
        report = self._pass()
        if report.findings:
            log.info("fsck: %d findings; checking again in %.1fs", len(report.findings), self.recheck_delay_s)
            self._sleep(self.recheck_delay_s)
            again = self._pass()
            again.findings = persistent(report.findings, again.findings)
            report = again
        return report

    def _pass(self) -> Report:
        self.routing.refresh()
        routing = self.routing.routing_info()
        report = Report()
        chains: dict[int, list[Replica]] = {}
        for chain in sorted(routing.chains, key=lambda c: c.id):
            replicas = [Replica(route.target_id, self._chunk_metas(route))
                        for route in self.routing.serving_routes(chain.id)]
            chains[chain.id] = replicas
            report.chains_checked += 1
            report.replicas_checked += len(replicas)
            report.chunks_checked += sum(len(r.metas) for r in replicas)
            report.findings.extend(compare_chain(chain.id, replicas))
        live = self._live_inodes(set().union(*(inode_ids(r) for r in chains.values())) if chains else set())
        for chain_id, replicas in chains.items():
            report.findings.extend(find_orphans(chain_id, replicas, live))
        return report

    def _chunk_metas(self, route: Route) -> list[ChunkMeta]:
        metas: list[ChunkMeta] = []
        start_after = None
        while True:
            request = storage_pb2.GetChunkMetasRequest(target_id=route.target_id, limit=metas_page_limit,
                                                       start_after=start_after)
            reply = self.storage.retrying(lambda: self.storage.call(route, "GetChunkMetas", request),
                                           f"GetChunkMetas of target {route.target_id}")
            metas.extend(ChunkMeta.from_proto(info) for info in reply.metas)
            if not reply.more or not reply.metas:
                return metas
            start_after = reply.metas[-1].chunk

    def _live_inodes(self, ids: set[int]) -> set[int]:
        """Ids that exist or wait for GC; remembers their chunk sizes for repair."""
        live: set[int] = set()
        ordered = sorted(ids)
        for start in range(0, len(ordered), limits.stat_inodes_ids_max):
            for state in self.meta.stat_inodes(ordered[start:start + limits.stat_inodes_ids_max]):
                if state.exists or state.gc_pending:
                    live.add(state.inode_id)
                    self._chunk_sizes[state.inode_id] = state.chunk_size
        return live

    # ---- repairing --------------------------------------------------------------------

    def repair(self, report: Report) -> Report:
        """Act on report's findings; fills report.repaired and report.repair_failures."""
        self.routing.refresh()
        for finding in report.findings:
            try:
                if finding.kind in (FindingKind.DIVERGENT, FindingKind.MISSING):
                    self._recopy(finding)
                elif finding.kind in (FindingKind.EXTRA, FindingKind.ORPHAN):
                    self._remove(finding)
                else:
                    raise errors.ChunkNotCommitted("an update is pending; the next write or a resync "
                                                   "completes it")
            except errors.FfsError as exc:
                log.warning("fsck: repair of %s failed: %s", finding, exc)
                report.repair_failures.append((finding, f"{type(exc).__name__}: {exc}"))
                continue
            report.repaired.append(finding)
        return report

    def _routes(self, finding: Finding) -> tuple[Route, Route]:
        routes = self.routing.serving_routes(finding.chain_id)
        by_target = {route.target_id: route for route in routes}
        if finding.target_id not in by_target:
            raise errors.StaleChainVersion(f"target {finding.target_id} no longer serves chain "
                                           f"{finding.chain_id}; run fsck again")
        return routes[0], by_target[finding.target_id]

    def _remove(self, finding: Finding) -> None:
        _head, route = self._routes(finding)
        self.storage.call(route, "RemoveChunk", storage_pb2.RemoveChunkRequest(
            chain_id=route.chain_id, chain_version=route.chain_version, target_id=route.target_id,
            chunk=types_pb2.ChunkId(inode=finding.inode, index=finding.index)))

    def _head_meta(self, head: Route, inode: int, index: int) -> ChunkMeta:
        after = (types_pb2.ChunkId(inode=inode, index=index - 1) if index
                 else types_pb2.ChunkId(inode=inode - 1, index=_INDEX_MAX))
        reply = self.storage.call(head, "GetChunkMetas", storage_pb2.GetChunkMetasRequest(
            target_id=head.target_id, start_after=after, limit=1))
        if not reply.metas or (reply.metas[0].chunk.inode, reply.metas[0].chunk.index) != (inode, index):
            raise errors.NotFound(f"chunk {inode}:{index} is gone from head target {head.target_id}")
        return ChunkMeta.from_proto(reply.metas[0])

    def _recopy(self, finding: Finding) -> None:
        """The head's committed chunk, sent whole to the replica (which forwards it down the chain)."""
        head, route = self._routes(finding)
        if head.target_id != finding.head_target_id:
            raise errors.NotHead(f"chain {finding.chain_id}: head is now target {head.target_id}; run fsck again")
        chunk_size = self._chunk_sizes.get(finding.inode, 0)
        if not chunk_size:
            raise errors.NotFound(f"inode {finding.inode}: chunk size unknown (inode gone?)")
        meta = self._head_meta(head, finding.inode, finding.index)
        if meta.pending:
            raise errors.ChunkNotCommitted(f"chunk {finding.inode}:{finding.index} is mid-write on the head")
        chunk = types_pb2.ChunkId(inode=finding.inode, index=finding.index)
        reply = self.storage.call(head, "BatchRead", storage_pb2.BatchReadRequest(verify_checksum=True, ios=[
            storage_pb2.ReadIO(chain_id=head.chain_id, chain_version=head.chain_version, chunk=chunk,
                               offset=0, length=meta.length)]), self.config.storage_read_timeout_s)
        result = reply.results[0]
        if result.status.error:
            raise errors.error_from_name(result.status.error, result.status.message)
        if result.commit_version != meta.commit_version or len(result.data) != meta.length:
            raise errors.ChunkNotCommitted(f"chunk {finding.inode}:{finding.index} changed during repair")
        data = bytes(result.data)
        write = storage_pb2.WriteRequest(chain_id=route.chain_id, chain_version=route.chain_version, chunk=chunk,
                                         offset=0, data=data, checksum=crc32c.crc32c(data),
                                         chunk_size=chunk_size, client_id=self.storage.client_id)
        answer = self.storage.call(route, "Update", storage_pb2.UpdateRequest(
            write=write, update_version=meta.commit_version, full_replace=True, from_target=0,
            to_target=route.target_id, kind=storage_pb2.UPDATE_WRITE, chunk_chain_version=meta.chain_version),
            self.config.storage_write_timeout_s)
        if answer.chunk_checksum != meta.checksum:
            raise errors.ChecksumMismatch(f"target {route.target_id} answered checksum {answer.chunk_checksum:#010x} "
                                          f"after the replace, the head has {meta.checksum:#010x}")
