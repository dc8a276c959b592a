"""FsckRunner over fake replicas: paging, the two-pass filter, and repair requests.

Method: three fake nodes each hold one target of a chain with its own chunk
table (bytes, versions, and which chunks rotted on disk); they answer
GetChunkMetas (paged, verifying when asked), BatchRead, Update (full replace)
and RemoveChunk. A fake metadata service says which inodes live and what its
inode counter is. The runner must find what we broke, ignore what healed
between passes, and repair with exactly the requests the contract names,
reading each good copy from the replica the vote chose.
"""

from __future__ import annotations

import crc32c
import pytest

from fireflyfs.cli.fsck_findings import FindingKind
from fireflyfs.cli.fsck_plan import plan_repair
from fireflyfs.cli.fsck_runner import FsckRunner
from fireflyfs.client.routing import RoutingCache
from fireflyfs.proto import meta_pb2, storage_pb2, types_pb2

from tests.client.fakes import make_routing

LIVE, DEAD = 5, 9


class Replica:
    def __init__(self):
        self.chunks: dict[tuple[int, int], tuple[bytes, int, int]] = {}   # -> (data, version, chain version)
        self.rotten: set[tuple[int, int]] = set()                          # bytes no longer match their CRCs

    def info(self, key, verify=False):
        data, version, chain_version = self.chunks[key]
        rotten = key in self.rotten
        return storage_pb2.ChunkMetaInfo(chunk=types_pb2.ChunkId(inode=key[0], index=key[1]), length=len(data),
                                         commit_version=version, update_version=version,
                                         chain_version=chain_version, chunk_checksum=crc32c.crc32c(data),
                                         verified=verify, content_crc=crc32c.crc32c(data) ^ rotten,
                                         bad_block_count=int(rotten and verify))


class Node:
    def __init__(self, world, target_id):
        self.world, self.target_id = world, target_id

    @property
    def replica(self):
        return self.world.replicas[self.target_id]

    def GetChunkMetas(self, request, timeout=None):
        replica = self.world.replicas[request.target_id]
        after = (request.start_after.inode, request.start_after.index) if request.HasField("start_after") else None
        keys = [k for k in sorted(replica.chunks) if after is None or k > after]
        limit = min(request.limit or 1000, self.world.page)
        self.world.pages += 1
        return storage_pb2.GetChunkMetasReply(metas=[replica.info(k, request.verify) for k in keys[:limit]],
                                              more=len(keys) > limit)

    def BatchRead(self, request, timeout=None):
        reply = storage_pb2.BatchReadReply()
        for io in request.ios:
            key = (io.chunk.inode, io.chunk.index)
            self.world.reads.append((self.target_id, *key))
            data, version, _ = self.replica.chunks[key]
            if key in self.replica.rotten:
                reply.results.add().status.error = "ChecksumMismatch"
                continue
            reply.results.add(data=data, checksum=crc32c.crc32c(data), chunk_length=len(data),
                              commit_version=version)
        return reply

    def Update(self, request, timeout=None):
        assert request.full_replace and request.to_target == self.target_id
        self.world.updates.append(request)
        write = request.write
        assert crc32c.crc32c(write.data) == write.checksum and write.chunk_size == 1 << 16
        key = (write.chunk.inode, write.chunk.index)
        self.world.replicas[request.to_target].chunks[key] = (bytes(write.data), request.update_version,
                                                             request.chunk_chain_version)
        self.world.replicas[request.to_target].rotten.discard(key)
        return storage_pb2.UpdateReply(commit_version=request.update_version,
                                       chunk_checksum=crc32c.crc32c(write.data))

    def RemoveChunk(self, request, timeout=None):
        self.world.removes.append((request.target_id, request.chunk.inode, request.chunk.index))
        self.world.replicas[request.target_id].chunks.pop((request.chunk.inode, request.chunk.index), None)
        return types_pb2.Empty()


class World:
    def __init__(self):
        self.routing = make_routing(nodes=3, chains=1, replicas=3)
        self.targets = list(self.routing.chains[0].targets)          # head first
        self.replicas = {t: Replica() for t in self.targets}
        self.by_address = {f"node-{t // 100}": t for t in self.targets}
        self.updates, self.removes, self.reads, self.pages, self.page = [], [], [], 0, 2

    def stub(self, address, stub_cls):
        return Node(self, self.by_address[address])

    def executor(self):
        raise AssertionError("not used")

    def forget(self, address):
        pass

    def stat_inodes(self, ids):
        return [meta_pb2.InodeState(inode_id=i, exists=i == LIVE, chunk_size=1 << 16 if i == LIVE else 0)
                for i in ids]

    def statfs(self):
        return meta_pb2.StatFsReply(inodes=2, next_inode_id=LIVE + 10)


@pytest.fixture
def world():
    world = World()
    for index in range(5):
        for target in world.targets:
            world.replicas[target].chunks[(LIVE, index)] = (bytes([index]) * 100, 2, 1)
    return world


def runner(world, heal=None, verify_bytes=True, progress=None):
    return FsckRunner("meta:1", pool=world, meta=world, routing=RoutingCache(lambda known: world.routing),
                      sleep=lambda _s: heal() if heal else None, verify_bytes=verify_bytes, progress=progress)


def test_a_clean_chain_in_pages(world):
    steps = []
    report = runner(world, progress=lambda done, total, label: steps.append((done, total, label))).check()
    assert report.clean and report.chunks_checked == 15 and report.chains_checked == 1
    assert steps == [(0, 1, "checking chains"), (1, 1, "checking chains")], "progress: before and after the chain"
    assert world.pages >= 3 * 3, "five chunks in pages of two, per replica"


def test_findings_repair_and_heal(world):
    head, middle, tail = world.targets
    del world.replicas[tail].chunks[(LIVE, 1)]                                 # missing
    world.replicas[middle].chunks[(LIVE, 2)] = (b"x" * 100, 2, 1)            # divergent
    for target in world.targets:
        world.replicas[target].chunks[(DEAD, 0)] = (b"o", 1, 1)              # orphan x3
    world.replicas[middle].chunks[(LIVE, 7)] = (b"e", 1, 1)                  # extra
    run = runner(world)
    report = run.check()
    found = sorted((f.kind, f.index, f.target_id) for f in report.findings)
    assert found == sorted([(FindingKind.MISSING, 1, tail), (FindingKind.DIVERGENT, 2, middle), (FindingKind.EXTRA, 7, middle),
                            (FindingKind.ORPHAN, 0, head), (FindingKind.ORPHAN, 0, middle), (FindingKind.ORPHAN, 0, tail)])
    run.repair(plan_repair(report.findings, run.census()), report)
    assert len(report.repaired) == 6 and report.repair_failures == []
    assert sorted((u.to_target, u.write.chunk.index, u.update_version) for u in world.updates) == [
        (middle, 2, 2), (tail, 1, 2)]
    assert sorted(world.removes) == sorted([(head, DEAD, 0), (middle, DEAD, 0), (tail, DEAD, 0),
                                            (middle, LIVE, 7)])
    assert runner(world).check().clean


def test_what_heals_between_passes_is_not_reported(world):
    head, middle, tail = world.targets
    saved = world.replicas[tail].chunks.pop((LIVE, 3))
    world.replicas[middle].chunks[(LIVE, 4)] = (b"y" * 100, 2, 1)

    def heal():   # the write in flight lands on the tail between the passes
        world.replicas[tail].chunks[(LIVE, 3)] = saved

    report = runner(world, heal).check()
    assert [(f.kind, f.index) for f in report.findings] == [(FindingKind.DIVERGENT, 4)]


def test_a_repair_of_a_target_no_longer_serving_fails_cleanly(world):
    _, _, tail = world.targets
    del world.replicas[tail].chunks[(LIVE, 0)]
    run = runner(world)
    report = run.check()
    for target in world.routing.targets:
        if target.id == tail:
            target.public_state = types_pb2.OFFLINE
    world.routing.version += 1
    run.repair(plan_repair(report.findings, run.census()), report)
    assert report.repaired == [] and "no longer serves" in report.repair_failures[0][1]


def test_a_rotten_head_is_rewritten_from_the_majority(world):
    head, middle, tail = world.targets
    world.replicas[head].rotten.add((LIVE, 2))
    assert runner(world, verify_bytes=False).check().clean, "the metadata alone hides rot"
    run = runner(world)
    report = run.check()
    assert [(f.kind, f.index, f.target_id, f.source_target_id) for f in report.findings] == [
        (FindingKind.ROTTEN, 2, head, middle)]
    world.reads.clear()
    run.repair(plan_repair(report.findings, run.census()), report)
    assert report.repair_failures == [] and world.reads == [(middle, LIVE, 2)], "read from the good copy"
    assert [(u.to_target, u.write.chunk.index) for u in world.updates] == [(head, 2)]
    assert runner(world).check().clean


def test_a_good_copy_that_rotted_since_the_check_is_not_spread(world):
    head, middle, tail = world.targets
    world.replicas[tail].rotten.add((LIVE, 1))
    run = runner(world)
    report = run.check()
    world.replicas[head].rotten.add((LIVE, 1))       # the chosen source rots before the repair
    run.repair(plan_repair(report.findings, run.census()), report)
    assert world.updates == [] and "ChecksumMismatch" in report.repair_failures[0][1]
