"""StorageClient over in-process storage nodes: splitting, batching, holes, retries, exactly-once, limits.

Method: an InProcessCluster (tests/client/in_process.py: real targets, chain
drivers and Storage servicers, no sockets) behind the InProcessTransport, once
as a blocking transport (the gRPC path: batches on IO threads) and once
pipelined (the bulk path: requests sent ahead from the calling thread). The
transport records every request; the targets' chunk metadata shows what was
stored and how often. Time is a fake clock, so retry budgets cost nothing.
"""

import os
import random
import threading

import pytest

from fireflyfs.client.buffers import ReadRequest
from fireflyfs.client.config import ClientConfig
from fireflyfs.client.replica_select import ReplicaSelector
from fireflyfs.common.errors import ChecksumMismatch, InvalidArgument, Unavailable
from fireflyfs.common.layout import Layout
from fireflyfs.storage_service.chunk_meta import chunk_key

from .fakes import make_routing
from .in_process import ClientOnNodes, block_size_bytes

CHUNK = 64 * 1024
LAYOUT = Layout(chunk_size=CHUNK, stripe_size=4, chain_table_id=1, chain_table_version=1,
                chain_base=2, seed=7)
INODE = 42


@pytest.fixture(params=[False, True], ids=["blocking", "pipelined"])
def setup(request, tmp_path):
    made = ClientOnNodes(tmp_path, make_routing(version=1), pipelined=request.param, retry_time_s=5.0)
    yield made
    made.close()


def test_write_then_read_across_chunk_boundaries(setup):
    client = setup.client
    data = os.urandom(5 * CHUNK + 123)
    client.write(INODE, LAYOUT, 1000, data)
    # One write per chunk piece, never crossing a chunk boundary, each to its chain's head.
    pieces = sorted((index, offset, length) for _, _, index, offset, length, *_ in setup.transport.writes)
    assert pieces[0] == (0, 1000, CHUNK - 1000)
    assert all(offset + length <= CHUNK for _, offset, length in pieces)
    assert sum(length for _, _, length in pieces) == len(data)
    assert setup.cluster.chunk_indices(INODE) == set(range(6))
    length = 1000 + len(data)
    assert client.read(INODE, LAYOUT, length, 1000, len(data)) == data
    assert client.read(INODE, LAYOUT, length, CHUNK - 10, 20) == data[CHUNK - 1010:CHUNK - 990]


def test_holes_read_as_zeros_and_reads_clamp_at_eof(setup):
    client = setup.client
    client.write(INODE, LAYOUT, 3 * CHUNK, b"tail")
    length = 3 * CHUNK + 4 + 100   # a length hint beyond the stored bytes
    out = client.read(INODE, LAYOUT, length, 0, 10 * CHUNK)
    assert len(out) == length
    assert out[:3 * CHUNK] == bytes(3 * CHUNK)
    assert out[3 * CHUNK:3 * CHUNK + 4] == b"tail"
    assert out[3 * CHUNK + 4:] == bytes(100)
    assert client.read(INODE, LAYOUT, length, length, 10) == b""
    assert client.read(INODE, LAYOUT, length, length + 5, 10) == b""
    with pytest.raises(InvalidArgument):
        client.read(INODE, LAYOUT, length, -1, 10)


def test_read_ranges_batches_one_request_per_node(setup):
    client = setup.client
    data = os.urandom(8 * CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    ranges = [(i * CHUNK + 7, 100) for i in range(8)] + [(CHUNK - 50, 100), (0, 8 * CHUNK)]
    setup.transport.reads.clear()
    out = client.read_ranges(INODE, LAYOUT, len(data), ranges)
    assert out == [data[o:o + n] for o, n in ranges]
    addresses = [address for address, _ in setup.transport.reads]
    assert len(addresses) == len(set(addresses)), "one read request per node"


def test_read_many_spans_files(setup):
    client = setup.client
    client.write(1, LAYOUT, 0, b"a" * 10)
    client.write(2, LAYOUT, 0, b"b" * 10)
    out = client.read_many([ReadRequest(1, LAYOUT, 10, 2, 3), ReadRequest(2, LAYOUT, 10, 8, 5)])
    assert out == [b"aaa", b"bb"]


def test_stale_chain_version_refreshes_routing_and_retries(setup):
    client = setup.client
    client.write(INODE, LAYOUT, 0, b"x" * 10)
    setup.move_routing(make_routing(version=2, chain_version=2))   # the client still routes by v1
    client.write(INODE, LAYOUT, 10, b"y" * 10)
    assert client.routing.version == 2
    assert client.read(INODE, LAYOUT, 20, 0, 20) == b"x" * 10 + b"y" * 10


def test_retryable_errors_give_up_after_the_deadline(setup):
    setup.transport.failures = [Unavailable("node down")] * 1000
    with pytest.raises(Unavailable, match="gave up"):
        setup.client.write(INODE, LAYOUT, 0, b"z")
    assert setup.clock.now >= 5.0


def test_a_retried_write_keeps_its_seqnum_and_seqnums_grow_per_channel(setup):
    client = setup.client
    setup.transport.failures = [Unavailable("flaky")]
    client.write(INODE, LAYOUT, 0, b"first")
    client.write(INODE, LAYOUT, 5, b"second")
    # The target's dedup cache refuses a seqnum that does not grow per (client, channel); the failed
    # first attempt stored nothing, so its retry with the same seqnum is a new write there.
    assert [(client_id, channel, seqnum) for *_, client_id, channel, seqnum in setup.transport.writes] == [
        ("client-1", 1, 1), ("client-1", 1, 2)]
    assert client.read(INODE, LAYOUT, 11, 0, 11) == b"firstsecond"


def test_a_write_whose_reply_was_lost_is_applied_once(setup):
    client = setup.client
    setup.transport.lost_write_acks = 1      # applied on the chain, then the connection broke
    client.write(INODE, LAYOUT, 0, b"once")
    sent = [(channel, seqnum) for *_, channel, seqnum in setup.transport.writes]
    assert sent == [(1, 1), (1, 1)], "the retry repeats the write's exactly-once id"
    assert list(setup.cluster.metas(INODE, 0).values()) == [(4, 1, 1)], "one version: applied once"
    assert client.read(INODE, LAYOUT, 4, 0, 4) == b"once"


def test_file_length_truncate_and_remove(setup):
    client = setup.client
    assert client.file_length_from_chunks(INODE, LAYOUT) == 0
    client.write(INODE, LAYOUT, 0, os.urandom(5 * CHUNK + 10))
    assert client.file_length_from_chunks(INODE, LAYOUT) == 5 * CHUNK + 10
    client.truncate(INODE, LAYOUT, 2 * CHUNK + 5)
    assert client.file_length_from_chunks(INODE, LAYOUT) == 2 * CHUNK + 5
    assert setup.cluster.chunk_indices(INODE) == {0, 1, 2}
    client.truncate(INODE, LAYOUT, CHUNK)
    assert setup.cluster.chunk_indices(INODE) == {0}
    client.truncate(INODE, LAYOUT, 7 * CHUNK + 3)     # growing: the chunk at the new end holds the length
    assert client.file_length_from_chunks(INODE, LAYOUT) == 7 * CHUNK + 3
    assert client.read(INODE, LAYOUT, 7 * CHUNK + 3, CHUNK, 6 * CHUNK + 3) == bytes(6 * CHUNK + 3)
    assert setup.cluster.chunk_indices(INODE) == {0, 7}
    assert client.remove_file_chunks(INODE, LAYOUT) == 2
    assert setup.cluster.chunk_indices(INODE) == set()


def test_copy_file_chunks_keeps_bytes_and_holes(setup):
    client = setup.client
    data = os.urandom(100)
    client.write(INODE, LAYOUT, 9 * CHUNK, data)
    length = 9 * CHUNK + 100
    other = Layout(chunk_size=2 * CHUNK, stripe_size=2, chain_table_id=1, chain_table_version=1,
                   chain_base=5, seed=1)
    client.copy_file_chunks(INODE, LAYOUT, length, 77, other)
    assert client.read(77, other, length, 0, length) == bytes(9 * CHUNK) + data
    assert setup.cluster.chunk_indices(77) == {4}


def test_pipelined_reads_stay_within_the_in_flight_limits(tmp_path):
    config = ClientConfig(node_requests_inflight_max=2, requests_inflight_max=3)
    made = ClientOnNodes(tmp_path, make_routing(version=1), pipelined=True, config=config, retry_time_s=5.0,
                         transport_options={"bytes_max": CHUNK, "ios_max": 2})
    try:
        data = os.urandom(24 * CHUNK)
        made.client.write(INODE, LAYOUT, 0, data)
        ranges = [(offset, 4096) for offset in range(0, len(data), 8192)]   # 4 per chunk, 2 per request
        made.transport.reads.clear()
        assert made.client.read_ranges(INODE, LAYOUT, len(data), ranges) == [data[o:o + n] for o, n in ranges]
        assert len(made.transport.reads) == len(ranges) // 2 and all(n == 2 for _, n in made.transport.reads)
        peaks = made.transport.inflight_peak
        assert peaks["total"] == 3, "sends ahead up to the total limit"
        assert max(peak for address, peak in peaks.items() if address != "total") == 2, "and the per-node one"
    finally:
        made.close()


def test_a_lone_replica_whose_bytes_fail_their_checksum_is_read_once_more_then_the_error_surfaces(setup):
    client = setup.client
    data = os.urandom(3 * CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    setup.transport.corrupt_reads = {(INODE, 1): 1}
    assert client.read(INODE, LAYOUT, len(data), 0, len(data)) == data, "the second read is clean"
    setup.transport.corrupt_reads = {(INODE, 0): 2}
    failures = client.read_into([ReadRequest(INODE, LAYOUT, len(data), 0, 100),
                                 ReadRequest(INODE, LAYOUT, len(data), 2 * CHUNK, 100)],
                                [memoryview(bytearray(100)), memoryview(out := bytearray(100))])
    assert isinstance(failures[0], ChecksumMismatch) and "chunk 42:0" in str(failures[0])
    assert failures[1] is None and out == data[2 * CHUNK:2 * CHUNK + 100], "only that request fails"
    assert setup.transport.corrupt_reads == {(INODE, 0): 0}, "read twice, not more"


@pytest.fixture(params=[False, True], ids=["blocking", "pipelined"])
def replicated(request, tmp_path, seed):
    """Chains of three replicas; the client's replica choice drawn from the seed."""
    made = ClientOnNodes(tmp_path, make_routing(version=1, replicas=3), pipelined=request.param, retry_time_s=5.0,
                         selector=ReplicaSelector(rng=random.Random(seed)))
    yield made
    made.close()


def _replica_targets(made: ClientOnNodes, chunk_index: int) -> list[int]:
    return [route.target_id for route in made.cache.serving_routes(made.cache.chain_id_for(LAYOUT, chunk_index))]


def _wait_for(predicate, what: str) -> None:
    """Reports travel on an IO thread: wait for one (bounded), never time it."""
    done = threading.Event()
    for _ in range(500):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_bytes_that_fail_on_one_replica_are_read_from_another_and_the_replica_is_reported(replicated, seed):
    """The bulk path's end-to-end check (whole blocks the node sent unchecked) fails on one replica."""
    rng = random.Random(seed)
    client = replicated.client
    data = rng.randbytes(3 * CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    chunk = rng.randrange(3)
    bad = rng.choice(_replica_targets(replicated, chunk))
    replicated.transport.corrupt_targets = {(INODE, chunk): {bad}}
    reads = 0
    while not replicated.transport.reports and reads < 60:       # until a read lands on the bad replica
        assert client.read(INODE, LAYOUT, len(data), 0, len(data)) == data, "every read returns the right bytes"
        reads += 1
    _wait_for(lambda: replicated.transport.reports, "a report of the bad replica")
    for _ in range(5):
        assert client.read(INODE, LAYOUT, len(data), chunk * CHUNK, CHUNK) == data[chunk * CHUNK:][:CHUNK]
    _wait_for(lambda: client.reporter.sent >= 1, "the report sent")
    assert replicated.transport.reports == [(bad, INODE, chunk)], "reported to its node, once per interval"
    node = next(n for n in replicated.cluster.nodes.values() if bad in n.targets)
    assert node.repairs.counters[bad].reports_received == 1
    assert node.repairs.run_once().value == "unconfirmed", "its disk is fine: the node re-verified, changed nothing"


def test_when_every_replica_fails_its_checksum_the_error_surfaces(replicated, seed):
    rng = random.Random(seed)
    client = replicated.client
    data = rng.randbytes(2 * CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    targets = _replica_targets(replicated, 1)
    replicated.transport.corrupt_targets = {(INODE, 1): set(targets)}
    replicated.transport.reads.clear()
    failures = client.read_into([ReadRequest(INODE, LAYOUT, len(data), CHUNK, 100),
                                 ReadRequest(INODE, LAYOUT, len(data), 0, 100)],
                                [memoryview(bytearray(100)), memoryview(out := bytearray(100))])
    assert isinstance(failures[0], ChecksumMismatch) and "chunk 42:1" in str(failures[0])
    assert "3 replica read(s) failed" in str(failures[0])
    assert failures[1] is None and out == data[:100], "only that request fails"
    assert sum(ios for _, ios in replicated.transport.reads) == 4, "the good chunk once, the bad one on each replica once"


def test_rot_the_node_finds_on_read_is_repaired_from_a_replica(replicated, seed):
    """The node's own check (gRPC path, edge blocks of bulk) fails: it queues the repair itself."""
    rng = random.Random(seed)
    client = replicated.client
    data = rng.randbytes(CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    bad = rng.choice(_replica_targets(replicated, 0))
    node = next(n for n in replicated.cluster.nodes.values() if bad in n.targets)
    engine = node.targets[bad].engine
    key = chunk_key(INODE, 0)
    meta = engine.get_meta(key)
    position = rng.randrange(CHUNK)
    with open(engine._path(key, meta.file_version), "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x01]))
    assert engine.verify(key).bad_blocks == (position // block_size_bytes,)
    for _ in range(60):
        assert client.read(INODE, LAYOUT, CHUNK, 0, CHUNK) == data
        if node.repairs.queued(bad):
            break
    assert node.repairs.queued(bad) == 1, "a read met the bad block there"
    assert node.repairs.run_once().value == "repaired"
    assert engine.verify(key).ok and engine.get_meta(key).commit_version == meta.commit_version
    assert replicated.transport.reports == [], "the node saw it itself: nothing to report"
