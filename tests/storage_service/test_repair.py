"""Repair of rotten chunks: what the Repairer decides and what the RepairQueue keeps.

Method: three in-process storage nodes over the real cores (tests/client/
in_process.py: real chunk engines on disk, chain drivers, Storage servicers)
hold one chain of three replicas. A StorageClient writes a chunk; the test
flips bytes in chosen replicas' chunk files on disk, then asks a node's
Repairer to repair its copy, and checks the outcome, the bytes on every disk
and the chunk versions. Which replica and which block rot is drawn from the
test's seed. The queue's dedup, bound, retries and counters are checked with a
stand-in repair function and a fake clock.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common.layout import Layout
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.repair import RepairOutcome, RepairQueue, RepairSource

from tests.client.fakes import make_routing
from tests.client.in_process import ClientOnNodes, FakeClock, block_size_bytes

CHUNK = 64 * 1024
LAYOUT = Layout(chunk_size=CHUNK, stripe_size=1, chain_table_id=1, chain_table_version=1, chain_base=1, seed=1)
INODE = 77
KEY = chunk_key(INODE, 0)


@pytest.fixture
def nodes(tmp_path):
    made = ClientOnNodes(tmp_path, make_routing(nodes=3, chains=1, replicas=3), pipelined=False)
    yield made
    made.close()


def replicas(nodes: ClientOnNodes):
    """(node, target) per replica of chain 1, head first."""
    chain = next(iter(nodes.cluster.nodes.values())).routing.chain(1)
    by_target = {target_id: node for node in nodes.cluster.nodes.values() for target_id in node.targets}
    return [(by_target[target_id], by_target[target_id].targets[target_id]) for target_id in chain.targets]


def chunk_file_bytes(target) -> bytes:
    meta = target.engine.get_meta(KEY)
    with open(target.engine._path(KEY, meta.file_version), "rb") as handle:
        return handle.read(meta.length)


def rot(target, block: int, rng: random.Random) -> None:
    """Flip a byte of one block of target's chunk file on disk, as bit rot would."""
    meta = target.engine.get_meta(KEY)
    position = block * block_size_bytes + rng.randrange(min(block_size_bytes, meta.length - block * block_size_bytes))
    with open(target.engine._path(KEY, meta.file_version), "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0xFF]))


def test_a_rotten_replica_is_rewritten_from_a_good_one_and_keeps_its_versions(nodes, seed):
    rng = random.Random(seed)
    data = rng.randbytes(CHUNK - 100)
    nodes.client.write(INODE, LAYOUT, 0, data)
    chain = replicas(nodes)
    node, target = rng.choice(chain)
    block = rng.randrange(-(-len(data) // block_size_bytes))
    rot(target, block, rng)
    before = target.engine.get_meta(KEY)
    assert target.engine.verify(KEY).bad_blocks == (block,)

    outcome, verdict = node.repairer.repair(target.id, KEY)

    assert outcome is RepairOutcome.REPAIRED and verdict.bad_blocks == (block,)
    after = target.engine.get_meta(KEY)
    assert target.engine.verify(KEY).ok and chunk_file_bytes(target) == data
    assert (after.commit_version, after.length, after.chunk_checksum) == (
        before.commit_version, before.length, before.chunk_checksum), "a rewrite, not a new version"
    assert after.file_version != before.file_version, "a new file, the rotten one discarded"
    for _, other in chain:
        assert other.engine.get_meta(KEY).commit_version == before.commit_version and other.engine.verify(KEY).ok
    assert nodes.client.read(INODE, LAYOUT, len(data), 0, len(data)) == data


def test_a_report_about_a_clean_chunk_changes_nothing(nodes, seed):
    rng = random.Random(seed)
    data = rng.randbytes(CHUNK)
    nodes.client.write(INODE, LAYOUT, 0, data)
    node, target = rng.choice(replicas(nodes))
    before = target.engine.get_meta(KEY)
    assert node.repairs.offer(target.id, KEY, RepairSource.REPORT)
    assert node.repairs.run_once() is RepairOutcome.UNCONFIRMED
    assert target.engine.get_meta(KEY) == before, "not rewritten: the report is a hint, re-verified first"
    counters = node.repairs.counters[target.id]
    assert (counters.reports_received, counters.reports_unconfirmed, counters.bad_found) == (1, 1, 0)


def test_when_every_replica_is_rotten_nothing_is_repaired_from_a_bad_copy(nodes, seed):
    rng = random.Random(seed)
    data = rng.randbytes(CHUNK)
    nodes.client.write(INODE, LAYOUT, 0, data)
    chain = replicas(nodes)
    for _, target in chain:
        rot(target, rng.randrange(CHUNK // block_size_bytes), rng)
    on_disk = [chunk_file_bytes(target) for _, target in chain]
    metas = [target.engine.get_meta(KEY) for _, target in chain]
    node, target = rng.choice(chain)
    node.repairs.offer(target.id, KEY, RepairSource.SCRUB)

    assert node.repairs.run_once() is RepairOutcome.UNREPAIRABLE
    assert [chunk_file_bytes(t) for _, t in chain] == on_disk and [t.engine.get_meta(KEY) for _, t in chain] == metas
    counters = node.repairs.counters[target.id]
    assert (counters.bad_found, counters.repaired, counters.unrepairable) == (1, 0, 1)
    node.repairs.offer(target.id, KEY, RepairSource.SCRUB)      # the next scrub pass finds it again
    assert node.repairs.run_once() is RepairOutcome.UNREPAIRABLE
    assert (counters.bad_found, counters.unrepairable) == (1, 1), "one rotten chunk, counted once"


def test_a_source_with_other_bytes_under_the_same_version_is_not_used(nodes, seed):
    """Two replicas rot in different blocks: each is the other's only candidate besides the third."""
    rng = random.Random(seed)
    data = rng.randbytes(CHUNK)
    nodes.client.write(INODE, LAYOUT, 0, data)
    chain = replicas(nodes)
    rng.shuffle(chain)
    (node, target), (_, other_bad), (_, good) = chain
    rot(target, 1, rng)
    rot(other_bad, 2, rng)
    assert node.repairer.repair(target.id, KEY)[0] is RepairOutcome.REPAIRED
    assert chunk_file_bytes(target) == data and chunk_file_bytes(good) == data


def test_a_write_racing_the_repair_wins(nodes, seed):
    rng = random.Random(seed)
    old, new = rng.randbytes(CHUNK), rng.randbytes(CHUNK)
    nodes.client.write(INODE, LAYOUT, 0, old)
    chain = replicas(nodes)
    node, target = rng.choice(chain)
    rot(target, rng.randrange(CHUNK // block_size_bytes), rng)
    peers_call = node.peers.call
    raced = []

    def call_then_write(target_id, method, request, timeout_s=None):
        reply = peers_call(target_id, method, request, timeout_s)
        if method == "BatchRead" and not raced:      # the good copy is read: now a client overwrites the chunk
            raced.append(True)
            nodes.client.write(INODE, LAYOUT, 0, new)
        return reply

    node.peers.call = call_then_write
    outcome, _ = node.repairer.repair(target.id, KEY)

    assert raced and outcome is RepairOutcome.SUPERSEDED
    versions = {t.engine.get_meta(KEY).commit_version for _, t in chain}
    assert versions == {2}, "the write's version everywhere, never rolled back to the repaired one"
    assert all(chunk_file_bytes(t) == new for _, t in chain)
    assert nodes.client.read(INODE, LAYOUT, CHUNK, 0, CHUNK) == new


A, B, C = (chunk_key(5, index) for index in range(3))


def test_the_queue_deduplicates_bounds_retries_and_counts():
    clock = FakeClock()
    outcomes = {A: [RepairOutcome.DEFERRED, RepairOutcome.REPAIRED], B: [RepairOutcome.REPAIRED]}
    asked = []

    def repair(target_id, key):
        asked.append((target_id, key))
        return outcomes[key].pop(0), None

    queue = RepairQueue(repair, [1, 2], entries_max=2, retry_delay_s=5.0, clock=clock)
    assert queue.offer(1, A, RepairSource.REPORT)
    assert not queue.offer(1, A, RepairSource.SCRUB), "one entry per chunk"
    assert queue.offer(1, B, RepairSource.READ)
    assert not queue.offer(2, C, RepairSource.SCRUB), "bounded"
    assert not queue.offer(9, A, RepairSource.REPORT), "not a local target"
    assert queue.counters[2].dropped == 1 and queue.counters[1].reports_received == 1
    assert queue.queued(1) == 2

    assert queue.run_once() is RepairOutcome.DEFERRED      # a: back in the queue, due in 5 s
    assert queue.run_once() is RepairOutcome.REPAIRED      # b
    assert queue.run_once() is None, "a is not due yet"
    clock.sleep(5.0)
    assert queue.run_once() is RepairOutcome.REPAIRED      # a, second attempt
    assert asked == [(1, A), (1, B), (1, A)]
    counters = queue.counters[1]
    assert (counters.bad_found, counters.repaired, counters.unrepairable) == (2, 2, 0)
    assert queue.queued(1) == 0


def test_a_repair_deferred_too_often_is_dropped():
    clock = FakeClock()
    queue = RepairQueue(lambda target_id, key: (RepairOutcome.DEFERRED, None), [1], attempts_max=3,
                        retry_delay_s=1.0, clock=clock)
    queue.offer(1, A, RepairSource.SCRUB)
    tries = 0
    while queue.queued(1):
        clock.sleep(1.0)
        assert queue.run_once() is RepairOutcome.DEFERRED
        tries += 1
    assert tries == 3 and queue.counters[1].bad_found == 1
