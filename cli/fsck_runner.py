"""fsck against a running cluster: gather replicas' chunk metadata, judge (fsck_findings.py), repair.

A pass: for every chain, page each SERVING replica's chunk metadata
(Storage.GetChunkMetas, addressed by target; with ``verify_bytes`` storage
re-reads every chunk and checks it against its own block CRCs), let the
replicas vote on each chunk, and ask the metadata service which of the inodes
seen still exist or wait for GC (Meta.StatInodes). Because writers may be
active, a pass that finds anything is repeated after ``recheck_delay_s`` and
only findings seen in both are reported.

Repair carries out a RepairPlan (fsck_plan.py; the CLI shows it first and
acts only when told): each rewrite reads the chunk from the replica the vote
chose (BatchRead on that replica's node, which checks the block CRCs) and
sends it to the bad replica as a full-chunk replace (Storage.Update,
full_replace, the good copy's commit and chain version), which that replica
also forwards down its chain; each deletion removes the chunk from that one
target (Storage.RemoveChunk). Repair is meant for a quiet cluster: a write
racing with it makes that chunk's repair fail (the versions no longer match)
rather than go back in time.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

import crc32c

from fireflyfs.common import auth, errors, limits
from fireflyfs.proto import storage_pb2, types_pb2
from fireflyfs.client.capabilities import Capabilities
from fireflyfs.client.channels import ChannelPool, shared_pool
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.meta_client import MetaClient
from fireflyfs.client.routing import Route, RoutingCache
from fireflyfs.client.storage_client import StorageClient

from .fsck_findings import ChunkMeta, Finding, Replica, Report, compare_chain, find_orphans, inode_ids, persistent
from .fsck_plan import MetaCensus, RepairPlan

log = logging.getLogger(__name__)

metas_page_limit = 10_000
recheck_delay_s_default = 1.0
_INDEX_MAX = (1 << 32) - 1


class FsckRunner:
    def __init__(self, address: str, config: ClientConfig | None = None, pool: ChannelPool | None = None,
                 recheck_delay_s: float = recheck_delay_s_default,
                 sleep: Callable[[float], None] = time.sleep,
                 routing: RoutingCache | None = None, meta: MetaClient | None = None,
                 verify_bytes: bool = True,
                 progress: Callable[[int, int, str], None] | None = None) -> None:
        self.config = config or ClientConfig.from_env()
        # An admin tool: its storage calls carry the admin's token too (storage lets admins list
        # and repair chunks; a client's token never goes to storage otherwise).
        pool = pool or shared_pool(auth.client_token())
        self.routing = routing or RoutingCache.for_mgmtd(address, pool, self.config.mgmtd_timeout_s)
        self.meta = meta or MetaClient(address, pool, config=self.config)
        # Its bulk reads carry capabilities, which meta gives an admin for any file.
        self.storage = StorageClient(self.routing, f"fsck-{uuid.uuid4().hex[:12]}", pool=pool,
                                     config=self.config,
                                     capabilities=Capabilities(lambda *wanted: self.meta.get_capability(*wanted)))
        self.recheck_delay_s = recheck_delay_s
        self.verify_bytes = verify_bytes
        self._sleep = sleep
        self._progress = progress or (lambda done, total, label: None)   # (chains done, chains, pass)
        self._chunk_sizes: dict[int, int] = {}

    # ---- checking ---------------------------------------------------------------------

    def check(self) -> Report:
        """Compare every chain's serving replicas; findings must survive a second pass."""
        report = self._pass("checking chains")
        if report.findings:
            log.info("fsck: %d findings; checking again in %.1fs", len(report.findings), self.recheck_delay_s)
            self._sleep(self.recheck_delay_s)
            again = self._pass("checking findings again")
            again.findings = persistent(report.findings, again.findings)
            report = again
        return report

    def _pass(self, label: str) -> Report:
        self.routing.refresh()
        routing = self.routing.routing_info()
        report = Report(bytes_verified=self.verify_bytes)
        chains: dict[int, list[Replica]] = {}
        for done, chain in enumerate(sorted(routing.chains, key=lambda c: c.id)):
            self._progress(done, len(routing.chains), label)
            replicas = [Replica(route.target_id, self._chunk_metas(route))
                        for route in self.routing.serving_routes(chain.id)]
            chains[chain.id] = replicas
            report.chains_checked += 1
            report.replicas_checked += len(replicas)
            report.chunks_checked += sum(len(r.metas) for r in replicas)
            report.findings.extend(compare_chain(chain.id, replicas))
        self._progress(len(routing.chains), len(routing.chains), label)
        live = self._live_inodes(set().union(*(inode_ids(r) for r in chains.values())) if chains else set())
        for chain_id, replicas in chains.items():
            report.findings.extend(find_orphans(chain_id, replicas, live))
        return report

    def _chunk_metas(self, route: Route) -> list[ChunkMeta]:
        metas: list[ChunkMeta] = []
        start_after = None
        while True:
            request = storage_pb2.GetChunkMetasRequest(target_id=route.target_id, limit=metas_page_limit,
                                                       start_after=start_after, verify=self.verify_bytes)
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

    def census(self) -> MetaCensus:
        """The metadata store's inode count and next inode id (the orphan guard of fsck_plan.py)."""
        reply = self.meta.statfs()
        return MetaCensus(inodes=reply.inodes, next_inode_id=reply.next_inode_id)

    # ---- repairing --------------------------------------------------------------------

    def repair(self, plan: RepairPlan, report: Report) -> Report:
        """Carry out plan; fills report.repaired and report.repair_failures."""
        self.routing.refresh()
        for action, findings in ((self._rewrite, plan.rewrites), (self._remove, plan.deletions)):
            for finding in findings:
                try:
                    action(finding)
                except errors.FfsError as exc:
                    log.warning("fsck: repair of %s failed: %s", finding, exc)
                    report.repair_failures.append((finding, f"{type(exc).__name__}: {exc}"))
                    continue
                log.info("fsck: repaired %s %d:%d on target %d", finding.kind.value, finding.inode,
                         finding.index, finding.target_id)
                report.repaired.append(finding)
        return report

    def _route(self, chain_id: int, target_id: int, what: str = "target") -> Route:
        for route in self.routing.serving_routes(chain_id):
            if route.target_id == target_id:
                return route
        raise errors.StaleChainVersion(f"{what} {target_id} no longer serves chain {chain_id}; run fsck again")

    def _remove(self, finding: Finding) -> None:
        route = self._route(finding.chain_id, finding.target_id)
        self.storage.call(route, "RemoveChunk", storage_pb2.RemoveChunkRequest(
            chain_id=route.chain_id, chain_version=route.chain_version, target_id=route.target_id,
            chunk=types_pb2.ChunkId(inode=finding.inode, index=finding.index)))

    def _meta_on(self, route: Route, inode: int, index: int) -> ChunkMeta:
        after = (types_pb2.ChunkId(inode=inode, index=index - 1) if index
                 else types_pb2.ChunkId(inode=inode - 1, index=_INDEX_MAX))
        reply = self.storage.call(route, "GetChunkMetas", storage_pb2.GetChunkMetasRequest(
            target_id=route.target_id, start_after=after, limit=1))
        if not reply.metas or (reply.metas[0].chunk.inode, reply.metas[0].chunk.index) != (inode, index):
            raise errors.NotFound(f"chunk {inode}:{index} is gone from target {route.target_id}")
        return ChunkMeta.from_proto(reply.metas[0])

    def _rewrite(self, finding: Finding) -> None:
        """The good copy, read from the replica the vote chose, sent whole to the bad replica."""
        source = self._route(finding.chain_id, finding.source_target_id, "good-copy target")
        route = self._route(finding.chain_id, finding.target_id)
        chunk_size = self._chunk_sizes.get(finding.inode, 0)
        if not chunk_size:
            raise errors.NotFound(f"inode {finding.inode}: chunk size unknown (inode gone?)")
        meta = self._meta_on(source, finding.inode, finding.index)
        if meta.pending:
            raise errors.ChunkNotCommitted(f"chunk {finding.inode}:{finding.index} is mid-write on target "
                                           f"{source.target_id}")
        chunk = types_pb2.ChunkId(inode=finding.inode, index=finding.index)
        reply = self.storage.call(source, "BatchRead", storage_pb2.BatchReadRequest(verify_checksum=True, ios=[
            storage_pb2.ReadIO(chain_id=source.chain_id, chain_version=source.chain_version, chunk=chunk,
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
                                          f"after the replace, the good copy on {source.target_id} has "
                                          f"{meta.checksum:#010x}")
