"""Storage.GetChunkMetas with verify: chunk bytes re-read and checked, in bounded pages.

Method: the one-node servicer of test_servicer.py over a real gRPC channel
(block size 4 KiB). Chunks are written through Write, then one chunk file is
damaged on disk behind the engine's back. A verifying page must name the
rotten blocks and give every chunk's content CRC, while the plain page still
calls the damaged chunk fine (the metadata does not change); a small byte
budget must cut verifying pages short without losing or repeating a chunk.
"""

from __future__ import annotations

import crc32c
import pytest

from fireflyfs.proto import storage_pb2
from fireflyfs.storage_service import servicer
from fireflyfs.storage_service.chunk_meta import chunk_key

from tests.storage_service.test_servicer import Node

BLOCK = 4096


@pytest.fixture
def node(tmp_path):
    running = Node(tmp_path)
    yield running
    running.close()


def chunk_file(target, inode: int, index: int) -> str:
    meta = target.engine.get_meta(chunk_key(inode, index))
    return target.engine._path(chunk_key(inode, index), meta.file_version)


def all_metas(node, **fields) -> list[storage_pb2.ChunkMetaInfo]:
    request = storage_pb2.GetChunkMetasRequest(target_id=101, **fields)
    out = []
    while True:
        reply = node.stub.GetChunkMetas(request, timeout=10)
        out += list(reply.metas)
        if not reply.more:
            return out
        request.start_after.CopyFrom(reply.metas[-1].chunk)


def test_verify_names_rotten_blocks_the_metadata_hides(node):
    data = {index: bytes([index + 1]) * (3 * BLOCK + 100) for index in range(3)}
    for index, payload in data.items():
        node.write(payload, inode=80, index=index)
    plain_before = [(m.chunk.index, m.chunk_checksum, m.verified) for m in all_metas(node)]
    with open(chunk_file(node.targets[101], 80, 1), "r+b") as handle:   # rot inside block 2
        handle.seek(2 * BLOCK + 7)
        handle.write(b"\xff\xfe\xfd\xfc")

    assert [(m.chunk.index, m.chunk_checksum, m.verified) for m in all_metas(node)] == plain_before, \
        "without verify nothing re-reads the bytes: the rot is invisible"
    verified = {m.chunk.index: m for m in all_metas(node, verify=True)}
    assert all(m.verified for m in verified.values())
    assert (verified[1].bad_block_count, list(verified[1].bad_blocks)) == (1, [2])
    for index in (0, 2):
        assert (verified[index].bad_block_count, verified[index].content_crc) == (0, crc32c.crc32c(data[index]))
    assert verified[1].content_crc != crc32c.crc32c(data[1])


def test_verifying_pages_stop_at_the_byte_budget(node, monkeypatch):
    for index in range(5):
        node.write(b"p" * (2 * BLOCK), inode=81, index=index)
    monkeypatch.setattr(servicer, "chunk_metas_verify_bytes_max", 3 * BLOCK)
    first = node.stub.GetChunkMetas(storage_pb2.GetChunkMetasRequest(target_id=101, verify=True, limit=100),
                                    timeout=10)
    assert len(first.metas) == 2 and first.more, "two chunks of 8 KiB pass a 12 KiB budget, a third does not"
    assert [m.chunk.index for m in all_metas(node, verify=True)] == list(range(5))
    assert all(m.verified and m.bad_block_count == 0 for m in all_metas(node, verify=True))
