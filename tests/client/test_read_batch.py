"""FfsClient.read_batch against the session cluster: packing, holes, EOF, per-request errors, buffers.

Method: files with a small chunk size (64 KiB) so ranges cross chunk and
stripe boundaries; every result is compared with the bytes a plain model
(a Python bytes object per file) says it must hold.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.common.errors import FfsError, InvalidArgument, IsADirectory, NotFound

from tests.conftest import unique_dir

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def client(cluster) -> FfsClient:
    return FfsClient(f"{cluster.host}:{cluster.port}")


@pytest.fixture(scope="module")
def files(client) -> dict[str, bytes]:
    """Model: path -> content. One multi-chunk file, one short file, one with a hole, one empty."""
    base = unique_dir("read-batch")
    model: dict[str, bytes] = {}
    rng = random.Random(4)
    big = rng.randbytes(5 * CHUNK + 1234)
    model[f"{base}/big"] = big
    model[f"{base}/short"] = b"tiny file"
    model[f"{base}/empty"] = b""
    for path, data in model.items():
        handle = client.create(path, chunk_size=CHUNK, stripe_size=4)
        if data:
            client.pwrite(handle, 0, data)
        client.close(handle, len(data))
    # A hole: chunk 1 and the start of chunk 2 were never written.
    holey = f"{base}/holey"
    handle = client.create(holey, chunk_size=CHUNK, stripe_size=4)
    client.pwrite(handle, 0, b"a" * 100)
    client.pwrite(handle, 2 * CHUNK + 50, b"b" * 300)
    client.close(handle, 2 * CHUNK + 350)
    model[holey] = b"a" * 100 + bytes(2 * CHUNK + 50 - 100) + b"b" * 300
    client.mkdir(f"{base}/dir")
    model["__base__"] = base.encode()
    return model


def expected(model: dict[str, bytes], path: str, offset: int, length: int) -> bytes:
    return model[path][offset:offset + length]


def test_packed_ranges_across_chunks_holes_and_eof(client, files):
    paths = [p for p in files if p != "__base__"]
    rng = random.Random(11)
    requests = []
    for _ in range(200):
        path = rng.choice(paths)
        size = len(files[path])
        offset = rng.randrange(0, size + 2 * CHUNK)
        length = rng.choice([0, 1, 7, 4096, CHUNK - 1, CHUNK + 3, 3 * CHUNK])
        requests.append((path, offset, length))
    # Exactly on boundaries too.
    big = next(p for p in paths if p.endswith("/big"))
    requests += [(big, CHUNK - 1, 2), (big, CHUNK, CHUNK), (big, 0, len(files[big]) + 10),
                 (big, len(files[big]), 5)]
    total = sum(length for _, _, length in requests)
    buffer = bytearray(b"\xee" * total)
    result = client.read_batch(requests, into=buffer)
    position = 0
    for number, (path, offset, length) in enumerate(requests):
        want = expected(files, path, offset, length)
        assert result.errors[number] is None
        assert result.nbytes[number] == len(want), (path, offset, length)
        assert result.offsets[number] == position
        assert bytes(result.view(number)) == want
        assert bytes(buffer[position:position + len(want)]) == want
        position += length


def test_small_reads_inside_a_chunk_take_the_short_path(client, files, monkeypatch):
    """Samples (small, inside one chunk) go in one bulk request per node with no piece
    objects; the general path sees only what crosses a chunk or is large."""
    base = files["__base__"].decode()
    big, holey = f"{base}/big", f"{base}/holey"
    general: list[tuple[int, int]] = []
    storage = client.storage
    original = storage._read_round

    def read_round(pending, outs, failures):
        general.extend((piece.chunk_index, piece.offset) for piece in pending)
        return original(pending, outs, failures)

    monkeypatch.setattr(storage, "_read_round", read_round)
    rng = random.Random(5)
    small = [(big, rng.randrange(5 * CHUNK), rng.randrange(1, 2000)) for _ in range(100)]
    small = [(path, offset, min(length, CHUNK - offset % CHUNK)) for path, offset, length in small]
    requests = small + [(holey, CHUNK + 10, 100), (big, CHUNK - 5, 10), (big, 0, 2 * CHUNK)]
    result = client.read_batch(requests)
    for number, (path, offset, length) in enumerate(requests):
        assert result.errors[number] is None
        assert bytes(result.view(number)) == expected(files, path, offset, length)
    crossing = {(0, CHUNK - 5), (1, 0), (0, 0)}          # the read across a chunk, the 2-chunk one
    assert set(general) == crossing, "small in-chunk reads (and the hole) were not all short-path"


def test_per_request_errors_do_not_spoil_the_batch(client, files):
    base = files["__base__"].decode()
    big = f"{base}/big"
    requests = [(big, 10, 100), (f"{base}/missing", 0, 10), (f"{base}/dir", 0, 10), (big, CHUNK, 10)]
    result = client.read_batch(requests)
    assert result.errors[0] is None and bytes(result.view(0)) == files[big][10:110]
    assert isinstance(result.errors[1], NotFound) and result.nbytes[1] == 0
    assert isinstance(result.errors[2], IsADirectory) and result.nbytes[2] == 0
    assert all(isinstance(e, FfsError) for e in result.errors[1:3])
    assert bytes(result.view(3)) == files[big][CHUNK:CHUNK + 10]
    assert not result.ok
    with pytest.raises(NotFound):
        result.raise_first()


def test_handles_cost_no_metadata_and_match_paths(client, files):
    base = files["__base__"].decode()
    big = f"{base}/big"
    handle = client.open(big)
    result = client.read_batch([(handle, 3, 5), (big, 3, 5), (handle, CHUNK * 5, CHUNK)])
    assert bytes(result.view(0)) == bytes(result.view(1)) == files[big][3:8]
    assert bytes(result.view(2)) == files[big][CHUNK * 5:]


def test_numpy_and_torch_buffers_fill_in_place(client, files):
    import numpy as np

    base = files["__base__"].decode()
    big = f"{base}/big"
    array = np.full(2 * CHUNK // 4, -1, dtype=np.float32)     # typed, multi-byte elements
    result = client.read_batch([(big, 0, CHUNK), (big, 4 * CHUNK, CHUNK)], into=array)
    assert array.tobytes() == files[big][:CHUNK] + files[big][4 * CHUNK:5 * CHUNK]
    assert result.buffer.nbytes == array.nbytes
    matrix = np.zeros((4, 1024), dtype=np.uint8)
    client.read_batch([(big, 7, 4096)], into=matrix)
    assert matrix.tobytes() == files[big][7:7 + 4096]
    import torch

    tensor = torch.zeros(4096, dtype=torch.int16)
    client.read_batch([(big, 100, 8192)], into=tensor)
    assert tensor.numpy().tobytes() == files[big][100:100 + 8192]


def test_bad_arguments_raise_invalid_argument(client, files):
    base = files["__base__"].decode()
    big = f"{base}/big"
    with pytest.raises(InvalidArgument):
        client.read_batch([(big, 0, 10)], into=bytearray(5))
    with pytest.raises(InvalidArgument):
        client.read_batch([(big, 0, 10)], into=bytes(10))
    with pytest.raises(InvalidArgument):
        client.read_batch([(big, -1, 10)])
    with pytest.raises(InvalidArgument):
        client.read_batch([(big, 0, -10)])
    with pytest.raises(InvalidArgument):
        client.read_batch([(big, 0)])
    import numpy as np

    with pytest.raises(InvalidArgument):
        client.read_batch([(big, 0, 10)], into=np.zeros((10, 10), dtype=np.uint8)[:, :2])
    assert client.read_batch([]).nbytes == []


def test_large_reads_into_one_buffer(client, files):
    base = files["__base__"].decode()
    big = f"{base}/big"
    data = files[big]
    buffer = bytearray(len(data))
    result = client.read_batch([(big, 0, len(data))], into=memoryview(buffer))
    assert result.nbytes == [len(data)] and buffer == data
