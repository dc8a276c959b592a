"""StorageClient over fake storage nodes: splitting, batching, holes, retries, exactly-once.

Method: a FakePool stands where the gRPC channel pool would; each fake node
serves the Storage RPCs from one shared chunk dict and records what it saw.
"""

import os

import pytest

from fireflyfs.common.errors import InvalidArgument, Unavailable
from fireflyfs.common.layout import Layout
from fireflyfs.client.routing import RoutingCache
from fireflyfs.client.buffers import ReadRequest
from fireflyfs.client.storage_client import StorageClient

from .fakes import FakeCluster, FakePool, make_routing

CHUNK = 64 * 1024
LAYOUT = Layout(chunk_size=CHUNK, stripe_size=4, chain_table_id=1, chain_table_version=1,
                chain_base=2, seed=7)
INODE = 42


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def setup():
    cluster = FakeCluster()
    versions = {"routing": make_routing(version=1)}
    cache = RoutingCache(lambda known: None if versions["routing"].version == known
                         else versions["routing"])
    cluster.layout, cluster.routing = LAYOUT, cache
    clock = Clock()
    client = StorageClient(cache, "client-1", pool=FakePool(cluster), retry_time_s=5.0,
                           sleep=clock.sleep, clock=clock)
    return cluster, client, versions, clock


def test_write_then_read_across_chunk_boundaries(setup):
    cluster, client, _, _ = setup
    data = os.urandom(5 * CHUNK + 123)
    client.write(INODE, LAYOUT, 1000, data)
    # One Write per chunk piece, never crossing a chunk boundary.
    pieces = sorted((index, offset, length) for _chain, index, offset, length in cluster.writes)
    assert pieces[0] == (0, 1000, CHUNK - 1000)
    assert all(offset + length <= CHUNK for _, offset, length in pieces)
    assert sum(length for _, _, length in pieces) == len(data)
    length = 1000 + len(data)
    assert client.read(INODE, LAYOUT, length, 1000, len(data)) == data
    assert client.read(INODE, LAYOUT, length, CHUNK - 10, 20) == data[CHUNK - 1010:CHUNK - 990]


def test_holes_read_as_zeros_and_reads_clamp_at_eof(setup):
    _, client, _, _ = setup
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


def test_read_ranges_batches_one_call_per_node(setup):
    cluster, client, _, _ = setup
    data = os.urandom(8 * CHUNK)
    client.write(INODE, LAYOUT, 0, data)
    ranges = [(i * CHUNK + 7, 100) for i in range(8)] + [(CHUNK - 50, 100), (0, 8 * CHUNK)]
    cluster.batch_reads.clear()
    out = client.read_ranges(INODE, LAYOUT, len(data), ranges)
    assert out == [data[o:o + n] for o, n in ranges]
    addresses = [address for address, _ in cluster.batch_reads]
    assert len(addresses) == len(set(addresses)), "one BatchRead per node"


def test_read_many_spans_files(setup):
    _, client, _, _ = setup
    client.write(1, LAYOUT, 0, b"a" * 10)
    client.write(2, LAYOUT, 0, b"b" * 10)
    out = client.read_many([ReadRequest(1, LAYOUT, 10, 2, 3), ReadRequest(2, LAYOUT, 10, 8, 5)])
    assert out == [b"aaa", b"bb"]


def test_stale_chain_version_refreshes_routing_and_retries(setup):
    cluster, client, versions, _ = setup
    client.write(INODE, LAYOUT, 0, b"x" * 10)
    cluster.chain_version = 2          # storage moved on; the client still routes by v1
    versions["routing"] = make_routing(version=2, chain_version=2)
    client.write(INODE, LAYOUT, 10, b"y" * 10)
    assert client.routing.version == 2
    assert client.read(INODE, LAYOUT, 20, 0, 20) == b"x" * 10 + b"y" * 10


def test_retryable_errors_give_up_after_the_deadline(setup):
    cluster, client, _, clock = setup
    cluster.failures = [Unavailable("node down")] * 1000
    with pytest.raises(Unavailable, match="gave up"):
        client.write(INODE, LAYOUT, 0, b"z")
    assert clock.now >= 5.0


def test_a_retried_write_keeps_its_seqnum_and_seqnums_grow_per_channel(setup):
    cluster, client, _, _ = setup
    cluster.failures = [Unavailable("flaky")]
    client.write(INODE, LAYOUT, 0, b"first")
    client.write(INODE, LAYOUT, 5, b"second")
    # The fake asserts seqnums grow per (client, channel); a retry reusing the
    # same seqnum after a failure that stored nothing must still be accepted.
    assert cluster.seqnums[("client-1", 1)] == 2
    assert client.read(INODE, LAYOUT, 11, 0, 11) == b"firstsecond"


def test_file_length_truncate_and_remove(setup):
    cluster, client, _, _ = setup
    assert client.file_length_from_chunks(INODE, LAYOUT) == 0
    client.write(INODE, LAYOUT, 0, os.urandom(5 * CHUNK + 10))
    assert client.file_length_from_chunks(INODE, LAYOUT) == 5 * CHUNK + 10
    client.truncate(INODE, LAYOUT, 2 * CHUNK + 5)
    assert client.file_length_from_chunks(INODE, LAYOUT) == 2 * CHUNK + 5
    assert sorted(index for _, index in cluster.chunks) == [0, 1, 2]
    client.truncate(INODE, LAYOUT, CHUNK)
    assert sorted(index for _, index in cluster.chunks) == [0]
    assert client.remove_file_chunks(INODE, LAYOUT) == 1
    assert cluster.chunks == {}


def test_copy_file_chunks_keeps_bytes_and_holes(setup):
    cluster, client, _, _ = setup
    data = os.urandom(100)
    client.write(INODE, LAYOUT, 9 * CHUNK, data)
    length = 9 * CHUNK + 100
    other = Layout(chunk_size=2 * CHUNK, stripe_size=2, chain_table_id=1, chain_table_version=1,
                   chain_base=5, seed=1)
    client.copy_file_chunks(INODE, LAYOUT, length, 77, other)
    assert client.read(77, other, length, 0, length) == bytes(9 * CHUNK) + data
    assert {index for inode, index in cluster.chunks if inode == 77} == {4}
