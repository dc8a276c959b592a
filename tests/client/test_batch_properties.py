"""Property tests: every read path returns what a bytes-in-memory model of the file holds.

Method: hypothesis draws a short history of writes for one file in a
directory of 64 KiB chunks (writes at any offset, so holes; appends; truncates
up and down; whole-file replacements, small ones inline in the metadata
service) and applies it both to the real session cluster and to a bytearray.
Then it draws reads (ranges across chunk boundaries, empty ones, ones starting
or ending past EOF) and checks each read path against the model:
``FfsClient.read_batch`` (paths and handles, into a bytearray, a numpy array,
or a new buffer), fsspec ``cat_file``, ``cat_ranges`` (with and without
``max_gap`` merging), and the buffered file (``seek``+``read`` and
``readinto`` through the default cache). Two further tests run writers and
readers of different files concurrently from threads and from forked
processes, each checking its own files against its own model.

Example counts are small for CI (profile "ci"); ``FFS_HYPOTHESIS_PROFILE=thorough``
runs many more.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import unique_dir
from fireflyfs.client.client import FfsClient
from fireflyfs.common import limits

CHUNK = 64 * 1024
FILE_BYTES_MAX = 5 * CHUNK + 1000

settings.register_profile("ci", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.load_profile(os.environ.get("FFS_HYPOTHESIS_PROFILE", "ci"))


def fill(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# One step of a file's history: (kind, offset or length, size of the data, seed of the data).
steps = st.one_of(
    st.tuples(st.just("write"), st.integers(0, FILE_BYTES_MAX - 1), st.integers(1, 2 * CHUNK + 17),
              st.integers(0, 1 << 16)),
    st.tuples(st.just("append"), st.just(0), st.integers(1, CHUNK + 5), st.integers(0, 1 << 16)),
    st.tuples(st.just("truncate"), st.integers(0, FILE_BYTES_MAX), st.just(0), st.just(0)),
    st.tuples(st.just("pipe"), st.just(0),
              st.sampled_from([1, 100, limits.inline_data_bytes_max, limits.inline_data_bytes_max + 1,
                               CHUNK + 3]),
              st.integers(0, 1 << 16)),
)


def apply(fs, client: FfsClient, path: str, model: bytearray, step) -> None:
    """Do step on the cluster and on the model."""
    kind, where, size, seed = step
    data = fill(seed, size)
    if kind == "write":
        where = min(where, FILE_BYTES_MAX - size) if size < FILE_BYTES_MAX else 0
        handle = client.create(path, truncate=False)
        try:
            client.pwrite(handle, where, data)
        finally:
            client.close(handle, where + size)
        if len(model) < where:
            model.extend(bytes(where - len(model)))
        model[where:where + size] = data
    elif kind == "append":
        with fs.open(path, "ab") as f:
            f.write(data)
        model.extend(data)
    elif kind == "truncate":
        client.truncate(path, where)
        del model[where:]
        model.extend(bytes(where - len(model)))
    else:
        fs.pipe_file(path, data)
        model[:] = data


ranges = st.lists(st.tuples(st.integers(0, FILE_BYTES_MAX + CHUNK), st.integers(0, 2 * CHUNK + 3)),
                  min_size=1, max_size=12)


@pytest.fixture(scope="module")
def chunked_dir(cluster):
    import fsspec

    path = unique_dir("properties")
    fsspec.filesystem("ffs", host=cluster.host, port=cluster.port).mkdir(path, chunk_size=CHUNK)
    return path


@given(history=st.lists(steps, min_size=1, max_size=6), reads=ranges,
       max_gap=st.sampled_from([None, 0, 100, 1 << 20]), into=st.sampled_from(["bytearray", "numpy", "none"]))
def test_every_read_path_matches_the_model(ffs, chunked_dir, history, reads, max_gap, into):
    client = ffs.client
    path = f"{chunked_dir}/f-{random.getrandbits(40):x}"
    model = bytearray()
    ffs.touch(path)
    for step in history:
        apply(ffs, client, path, model, step)
    length = len(model)
    assert ffs.info(path)["size"] == length

    # read_batch: by path, then by handle; bytes land packed in request order.
    requests = [(path, start, size) for start, size in reads]
    total = sum(size for _, _, size in requests)
    if into == "numpy":
        import numpy
        buffer = numpy.full(total + 3, 0xEE, dtype=numpy.uint8)
    else:
        buffer = bytearray(b"\xee" * (total + 3)) if into == "bytearray" else None
    result = client.read_batch(requests, into=buffer)
    handle = client.open(path)
    by_handle = client.read_batch([(handle, start, size) for start, size in reads])
    for i, (start, size) in enumerate(reads):
        expected = bytes(model[start:start + size])
        assert result.errors[i] is None and by_handle.errors[i] is None
        assert result.nbytes[i] == len(expected) and bytes(result.view(i)) == expected
        assert bytes(by_handle.view(i)) == expected

    # fsspec: cat_file, cat_ranges (ends past EOF clamp like slices).
    for start, size in reads:
        assert ffs.cat_file(path, start, start + size) == bytes(model[start:start + size])
    got = ffs.cat_ranges([path] * len(reads), [s for s, _ in reads], [s + n for s, n in reads],
                         max_gap=max_gap)
    assert got == [bytes(model[s:s + n]) for s, n in reads]

    # The buffered file through the default cache: seek+read, and readinto.
    with ffs.open(path, "rb") as f:
        for start, size in reads:
            f.seek(min(start, length))
            assert f.read(size) == bytes(model[min(start, length):min(start, length) + size])
        f.seek(0)
        sink = bytearray(CHUNK // 2 + 7)
        collected = bytearray()
        while True:
            n = f.readinto(sink)
            if not n:
                break
            collected += sink[:n]
        assert collected == model


def test_read_batch_reports_errors_per_request(ffs, chunked_dir):
    client = ffs.client
    path = f"{chunked_dir}/present"
    ffs.pipe_file(path, fill(1, CHUNK + 10))
    result = client.read_batch([(path, CHUNK - 5, 10), (f"{chunked_dir}/absent", 0, 4),
                                (chunked_dir, 0, 4), (path, CHUNK + 5, 100)])
    assert bytes(result.view(0)) == fill(1, CHUNK + 10)[CHUNK - 5:CHUNK + 5]
    assert isinstance(result.errors[1], FileNotFoundError) and result.nbytes[1] == 0
    assert isinstance(result.errors[2], IsADirectoryError)
    assert result.nbytes[3] == 5
    with pytest.raises(ValueError):
        client.read_batch([(path, -1, 4)])
    with pytest.raises(ValueError):
        client.read_batch([(path, 0, 10)], into=bytearray(5))


def churn(fs, client: FfsClient, path: str, seed: int, rounds: int) -> list[str]:
    """Random writes and reads of one file against its model; returns mismatch descriptions."""
    rng = random.Random(seed)
    model = bytearray()
    problems = []
    fs.touch(path)
    for round_number in range(rounds):
        kind = rng.choice(["write", "write", "append", "truncate", "pipe"])
        step = (kind, rng.randrange(FILE_BYTES_MAX), rng.randint(1, CHUNK + 100), rng.randrange(1 << 16))
        if kind == "truncate":
            step = (kind, rng.randrange(FILE_BYTES_MAX), 0, 0)
        apply(fs, client, path, model, step)
        starts = [rng.randrange(len(model) + 100) for _ in range(8)]
        sizes = [rng.randrange(2 * CHUNK) for _ in range(8)]
        result = client.read_batch([(path, s, n) for s, n in zip(starts, sizes)])
        for i, (s, n) in enumerate(zip(starts, sizes)):
            if bytes(result.view(i)) != bytes(model[s:s + n]):
                problems.append(f"{path} round {round_number}: read_batch [{s}, +{n}) differs")
        if fs.cat_ranges([path] * 8, starts, [s + n for s, n in zip(starts, sizes)]) != [
                bytes(model[s:s + n]) for s, n in zip(starts, sizes)]:
            problems.append(f"{path} round {round_number}: cat_ranges differs")
    return problems


def test_concurrent_writers_and_readers_in_threads(ffs, chunked_dir):
    problems: list[str] = []
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            problems.extend(churn(ffs, ffs.client, f"{chunked_dir}/thread-{index}", 100 + index, 6))
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failures == [] and problems == []


def _forked_worker(args) -> list[str]:
    host, port, directory, index = args
    import fsspec

    fs = fsspec.filesystem("ffs", host=host, port=port)
    return churn(fs, fs.client, f"{directory}/process-{index}", 200 + index, 5)


def test_concurrent_writers_and_readers_in_forked_processes(ffs, cluster, chunked_dir):
    ffs.info(chunked_dir)            # the parent has live connections before it forks
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        results = pool.map(_forked_worker, [(cluster.host, cluster.port, chunked_dir, i) for i in range(3)])
    assert [p for part in results for p in part] == []
    for i in range(3):
        assert ffs.exists(f"{chunked_dir}/process-{i}")
