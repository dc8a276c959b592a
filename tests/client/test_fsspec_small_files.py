"""Small files through fsspec against a real cluster: inline bytes, one-RPC touch, coalesced calls.

Method: each test works in a fresh directory of the session cluster and
checks bytes end to end through every reader a small file can meet: fsspec
``cat_file``/``cat_ranges`` (inline-aware: served from the Open/BatchStat
reply), fsspec ``open`` and the plain ``FfsClient`` (chunk readers: the service
moves the bytes to chunks first), appends, copies, hard links and threads.
The last test SIGKILLs the metadata process of a dedicated cluster right
after acknowledged small writes and reads them back after the restart.
"""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.common import limits
from fireflyfs.deploy.local_cluster import LocalCluster


def test_small_pipe_is_inline_and_every_reader_sees_it(ffs, ffs_dir, cluster):
    path = f"{ffs_dir}/a/small.bin"
    data = bytes(range(256)) * 4
    ffs.pipe_file(path, data)                       # parents made on the way
    assert ffs.info(path)["size"] == 1024
    reply = ffs.client.meta.open(path, inline_ok=True)
    assert reply.inline and reply.inline_data == data   # the bytes live in the metadata service
    assert ffs.cat_file(path) == data
    assert ffs.cat_file(path, start=-10) == data[-10:]
    assert ffs.cat_file(path, start=5, end=9) == data[5:9]
    assert ffs.cat_file(path, start=5000) == b""
    # A chunk reader (fsspec open, a plain client) makes the service move the bytes to chunks.
    with ffs.open(path, "rb") as f:
        assert f.read() == data
    assert not ffs.client.meta.open(path, inline_ok=True).inline
    assert ffs.cat_file(path) == data
    ffs.pipe_file(path, b"again")
    assert FfsClient(f"{cluster.host}:{cluster.port}").read_file(path) == b"again"
    assert ffs.cat_file(path) == b"again"


def test_appends_copies_and_truncates_of_inline_files(ffs, ffs_dir):
    path = f"{ffs_dir}/f"
    ffs.pipe_file(path, b"hello")
    with ffs.open(path, "ab") as f:                 # a writer: bytes move to chunks first
        f.write(b" world")
    assert ffs.cat_file(path) == b"hello world"
    ffs.pipe_file(f"{ffs_dir}/g", b"copied bytes")
    ffs.cp_file(f"{ffs_dir}/g", f"{ffs_dir}/h")
    assert ffs.cat_file(f"{ffs_dir}/h") == b"copied bytes"
    assert ffs.client.meta.open(f"{ffs_dir}/h", inline_ok=True).inline
    ffs.client.truncate(f"{ffs_dir}/h", 6)
    assert ffs.cat_file(f"{ffs_dir}/h") == b"copied"
    ffs.client.truncate(f"{ffs_dir}/h", limits.inline_data_bytes_max + 10)   # past the limit: to chunks
    grown = ffs.cat_file(f"{ffs_dir}/h")
    assert grown == b"copied" + bytes(limits.inline_data_bytes_max + 4)
    ffs.mv(f"{ffs_dir}/g", f"{ffs_dir}/moved")
    assert ffs.cat_file(f"{ffs_dir}/moved") == b"copied bytes"
    ffs.rm(f"{ffs_dir}/moved")
    assert not ffs.exists(f"{ffs_dir}/moved")


def test_limits_of_inline_and_the_storage_fallback(ffs, ffs_dir):
    at_limit = bytes(range(256)) * (limits.inline_data_bytes_max // 256)
    over = at_limit + b"!"
    ffs.pipe_file(f"{ffs_dir}/at", at_limit)
    ffs.pipe_file(f"{ffs_dir}/over", over)
    assert ffs.client.meta.open(f"{ffs_dir}/at", inline_ok=True).inline
    assert not ffs.client.meta.open(f"{ffs_dir}/over", inline_ok=True).inline
    assert ffs.cat_file(f"{ffs_dir}/at") == at_limit and ffs.cat_file(f"{ffs_dir}/over") == over
    # A hard-linked file cannot be replaced in O(1): the bytes go through storage, both names see them.
    ffs.pipe_file(f"{ffs_dir}/linked", b"old")
    ffs.client.link(f"{ffs_dir}/linked", f"{ffs_dir}/other")
    ffs.pipe_file(f"{ffs_dir}/linked", b"new content")
    assert ffs.cat_file(f"{ffs_dir}/other") == b"new content"
    with pytest.raises(FileExistsError):
        ffs.pipe_file(f"{ffs_dir}/at", b"x", mode="create")
    ffs.pipe_file(f"{ffs_dir}/empty", b"")
    assert ffs.cat_file(f"{ffs_dir}/empty") == b"" and ffs.info(f"{ffs_dir}/empty")["size"] == 0


def test_touch_is_one_create(ffs, ffs_dir):
    path = f"{ffs_dir}/t/touched"
    ffs.touch(path)
    assert ffs.info(path)["size"] == 0
    ffs.pipe_file(path, b"data")
    ffs.touch(path)                                 # truncate=True empties it
    assert ffs.cat_file(path) == b""
    ffs.pipe_file(path, b"keep")
    before = ffs.info(path)["mtime"]
    ffs.touch(path, truncate=False)
    assert ffs.cat_file(path) == b"keep" and ffs.info(path)["mtime"] >= before
    with pytest.raises(IsADirectoryError):
        ffs.touch(ffs_dir)


def test_cat_ranges_mixes_inline_and_chunk_files_and_coalesces(ffs, ffs_dir):
    small = bytes(range(200))
    big = bytes((i * 7) % 251 for i in range(300_000))
    ffs.pipe_file(f"{ffs_dir}/small", small)
    ffs.pipe_file(f"{ffs_dir}/big", big)
    paths = [f"{ffs_dir}/small", f"{ffs_dir}/big", f"{ffs_dir}/big", f"{ffs_dir}/big",
             f"{ffs_dir}/small", f"{ffs_dir}/missing", f"{ffs_dir}/big"]
    starts = [10, 0, 100, 50, -5, 0, 299_990]
    ends = [20, 10, 200, 150, None, 4, 400_000]
    expected = [small[10:20], big[0:10], big[100:200], big[50:150], small[-5:], None, big[299_990:]]
    for max_gap in (None, 0, 64, 1 << 20):
        got = ffs.cat_ranges(paths, starts, ends, max_gap=max_gap)
        assert isinstance(got[5], FileNotFoundError)
        assert [g for i, g in enumerate(got) if i != 5] == [e for i, e in enumerate(expected) if i != 5]
    with pytest.raises(FileNotFoundError):
        ffs.cat_ranges(paths, starts, ends, on_error="raise")


def test_threads_share_rpcs_and_each_gets_its_own_answer(ffs, ffs_dir):
    """16 threads piping, stating and reading small files at once (coalesced into batches)."""
    errors_seen: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for i in range(20):
                path = f"{ffs_dir}/w{index}/f{i}"
                content = f"{index}:{i}".encode() * (i + 1)
                ffs.pipe_file(path, content)
                assert ffs.info(path)["size"] == len(content)
                assert ffs.cat_file(path) == content
                if i % 5 == 0:
                    with pytest.raises(FileNotFoundError):
                        ffs.info(f"{path}.missing")
                ffs.touch(f"{ffs_dir}/w{index}/t{i}")
        except BaseException as exc:  # surfaced below
            errors_seen.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors_seen == []
    assert len(ffs.find(ffs_dir)) == 16 * 40


def test_acknowledged_small_files_survive_sigkill_of_meta(tmp_path):
    local = LocalCluster(tmp_path / "c", storage_nodes=1, targets_per_node=1, replicas=1,
                         python=sys.executable)
    try:
        local.up()
        import fsspec

        fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
        written = {f"/d/{i}": f"content {i}".encode() * (i + 1) for i in range(50)}
        for path, content in written.items():
            fs.pipe_file(path, content)
        fs.touch("/d/empty")
        local.kill("meta", signal.SIGKILL)
        local.up()
        for path, content in written.items():
            assert fs.cat_file(path) == content
        assert fs.info("/d/empty")["size"] == 0
    finally:
        local.down()
