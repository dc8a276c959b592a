"""The client and fsspec filesystem against a real local cluster (meta + 3 storage nodes).

Each test works in its own fresh directory (``ffs_dir`` from tests/conftest.py)
and checks bytes and errors end to end: chunk boundaries, batched ranges,
server-side copy/move/remove, fork and pickle safety, fresh-interpreter URL
opening and pyarrow parquet through ``ffs://``.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import subprocess
import sys

import fsspec
import pytest

from fireflyfs.client.client import FfsClient

SMALL_CHUNK = 64 * 1024


def pattern(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes where every position differs from its neighbours."""
    block = bytes((i * 31 + seed) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def test_pipe_cat_info_ls_find(ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/a/b/c.bin", b"hello world")   # parents made on the way
    assert ffs.cat_file(f"{ffs_dir}/a/b/c.bin") == b"hello world"
    assert ffs.cat_file(f"{ffs_dir}/a/b/c.bin", start=-5) == b"world"
    assert ffs.cat_file(f"{ffs_dir}/a/b/c.bin", start=2, end=-3) == b"llo wo"
    assert ffs.cat_file(f"{ffs_dir}/a/b/c.bin", start=100) == b""
    info = ffs.info(f"{ffs_dir}/a/b/c.bin")
    assert info["name"] == f"{ffs_dir}/a/b/c.bin"
    assert (info["size"], info["type"]) == (11, "file")
    for key in ("mtime", "created", "mode", "uid", "gid", "ino", "nlink", "chunk_size",
                "stripe_size", "chain_table"):
        assert key in info
    assert ffs.info(f"ffs://127.0.0.1:1{ffs_dir}/a")["type"] == "directory"
    assert ffs.ls(ffs_dir, detail=False) == [f"{ffs_dir}/a"]
    assert ffs.ls(f"{ffs_dir}/a/b/c.bin", detail=False) == [f"{ffs_dir}/a/b/c.bin"]
    ffs.pipe_file(f"{ffs_dir}/top.txt", b"1")
    assert ffs.find(ffs_dir) == [f"{ffs_dir}/a/b/c.bin", f"{ffs_dir}/top.txt"]
    assert ffs.find(ffs_dir, withdirs=True) == sorted(
        [ffs_dir, f"{ffs_dir}/a", f"{ffs_dir}/a/b", f"{ffs_dir}/a/b/c.bin", f"{ffs_dir}/top.txt"])
    assert ffs.find(ffs_dir, maxdepth=1) == [f"{ffs_dir}/top.txt"]
    assert ffs.find(f"{ffs_dir}/a/b/c.bin") == [f"{ffs_dir}/a/b/c.bin"]
    assert ffs.find(f"{ffs_dir}/missing") == []
    assert ffs.glob(f"{ffs_dir}/**/*.bin") == [f"{ffs_dir}/a/b/c.bin"]
    assert ffs.du(ffs_dir) == 12
    walked = {root: (sorted(dirs), sorted(files)) for root, dirs, files in ffs.walk(ffs_dir)}
    assert walked[ffs_dir] == (["a"], ["top.txt"])


def test_errors_are_python_builtins(ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/f", b"x")
    ffs.pipe_file(f"{ffs_dir}/d/inner", b"y")
    with pytest.raises(FileNotFoundError):
        ffs.info(f"{ffs_dir}/nope")
    with pytest.raises(FileNotFoundError):
        ffs.cat_file(f"{ffs_dir}/nope")
    with pytest.raises(FileNotFoundError):
        ffs.open(f"{ffs_dir}/nope", "rb")
    with pytest.raises(FileExistsError):
        ffs.mkdir(f"{ffs_dir}/d")
    with pytest.raises(FileExistsError):
        ffs.makedirs(f"{ffs_dir}/f")
    with pytest.raises(FileExistsError):
        ffs.pipe_file(f"{ffs_dir}/f", b"z", mode="create")
    with pytest.raises(IsADirectoryError):
        ffs.cat_file(f"{ffs_dir}/d")
    with pytest.raises(IsADirectoryError):
        ffs.open(f"{ffs_dir}/d", "wb")
    with pytest.raises(NotADirectoryError):
        ffs.info(f"{ffs_dir}/f/child")
    with pytest.raises(NotADirectoryError):
        ffs.client.create(f"{ffs_dir}/f/child", parents=False)
    # With parents made on the way too, as open(2) says (ENOTDIR); fsspec's local file system
    # says FileExistsError here (its auto_mkdir's os.makedirs of the file's parent).
    with pytest.raises(NotADirectoryError):
        ffs.pipe_file(f"{ffs_dir}/f/child", b"z")
    with pytest.raises(NotADirectoryError):
        ffs.rmdir(f"{ffs_dir}/f")
    with pytest.raises(OSError) as info:
        ffs.rmdir(f"{ffs_dir}/d")
    assert info.value.errno == 39 or "not empty" in str(info.value)
    with pytest.raises(ValueError):
        ffs.info("/../escape")
    assert ffs.cat_file(f"{ffs_dir}/f") == b"x", "failed calls changed nothing"


def test_open_modes_and_buffered_file(ffs, ffs_dir):
    path = f"{ffs_dir}/modes.bin"
    with ffs.open(path, "wb", block_size=SMALL_CHUNK) as f:
        f.write(b"abc")
        f.write(pattern(300_000))
    with ffs.open(path, "ab") as f:
        assert f.tell() == 300_003
        f.write(b"tail")
    data = ffs.cat_file(path)
    assert data == b"abc" + pattern(300_000) + b"tail"
    with ffs.open(path, "rb", cache_type="none") as f:
        assert f.size == len(data)
        f.seek(-4, 2)
        assert f.read() == b"tail"
        f.seek(1)
        assert f.read(2) == b"bc"
    with pytest.raises(FileExistsError):
        ffs.open(path, "xb")
    with ffs.open(f"{ffs_dir}/new/x.txt", "w") as f:   # text mode, parent made
        f.write("text ✓")
    assert ffs.read_text(f"{ffs_dir}/new/x.txt") == "text ✓"
    with ffs.open(path, "wb") as f:   # wb truncates
        f.write(b"short")
    assert ffs.cat_file(path) == b"short"


def test_small_chunks_cat_ranges_across_boundaries(ffs, ffs_dir):
    ffs.mkdir(f"{ffs_dir}/small", chunk_size=SMALL_CHUNK, stripe_size=4)
    path = f"{ffs_dir}/small/data.bin"
    data = pattern(10 * SMALL_CHUNK + 999, seed=7)
    with ffs.open(path, "wb", block_size=3 * SMALL_CHUNK + 5) as f:
        for start in range(0, len(data), 100_000):
            f.write(data[start:start + 100_000])
    assert ffs.info(path)["chunk_size"] == SMALL_CHUNK
    assert ffs.info(path)["size"] == len(data)
    assert ffs.cat_file(path) == data
    boundary = [(k * SMALL_CHUNK - 10, k * SMALL_CHUNK + 10) for k in range(1, 11)]
    ranges = boundary + [(0, len(data)), (len(data) - 5, len(data) + 100), (-20, None)]
    starts = [s for s, _ in ranges] + [0, 0]
    ends = [e for _, e in ranges] + [5, 5]
    paths = [path] * len(ranges) + [f"{ffs_dir}/small/missing", f"{ffs_dir}/small"]
    out = ffs.cat_ranges(paths, starts, ends)
    for (start, end), got in zip(ranges, out):
        assert got == data[start:end]
    assert isinstance(out[-2], FileNotFoundError)
    assert isinstance(out[-1], IsADirectoryError)
    with pytest.raises(FileNotFoundError):
        ffs.cat_ranges(paths, starts, ends, on_error="raise")


def test_holes_read_as_zeros(ffs, ffs_dir):
    client: FfsClient = ffs.client
    path = f"{ffs_dir}/sparse"
    handle = client.create(path, chunk_size=SMALL_CHUNK)
    client.pwrite(handle, 5 * SMALL_CHUNK + 3, b"end")
    client.close(handle, 5 * SMALL_CHUNK + 6)
    data = ffs.cat_file(path)
    assert data == bytes(5 * SMALL_CHUNK + 3) + b"end"


def test_copy_move_remove_touch_times(ffs, ffs_dir):
    src = f"{ffs_dir}/src.bin"
    ffs.pipe_file(src, pattern(200_000))
    ffs.cp_file(src, f"{ffs_dir}/copies/dst.bin")
    assert ffs.cat_file(f"{ffs_dir}/copies/dst.bin") == pattern(200_000)
    assert ffs.info(f"{ffs_dir}/copies/dst.bin")["ino"] != ffs.info(src)["ino"]
    ino = ffs.info(src)["ino"]
    ffs.mv(src, f"{ffs_dir}/moved.bin")
    assert not ffs.exists(src)
    assert ffs.info(f"{ffs_dir}/moved.bin")["ino"] == ino, "mv is a rename, not a copy"
    ffs.mv(f"{ffs_dir}/moved.bin", f"{ffs_dir}/copies")   # into an existing directory
    assert ffs.info(f"{ffs_dir}/copies/moved.bin")["ino"] == ino
    ffs.mv(f"{ffs_dir}/copies", f"{ffs_dir}/renamed")
    assert sorted(ffs.ls(f"{ffs_dir}/renamed", detail=False)) == [
        f"{ffs_dir}/renamed/dst.bin", f"{ffs_dir}/renamed/moved.bin"]
    ffs.touch(f"{ffs_dir}/empty")
    assert ffs.cat_file(f"{ffs_dir}/empty") == b""
    modified = ffs.modified(f"{ffs_dir}/empty")
    assert modified.tzinfo == datetime.timezone.utc
    assert abs((datetime.datetime.now(datetime.timezone.utc) - modified).total_seconds()) < 300
    assert isinstance(ffs.created(f"{ffs_dir}/empty"), datetime.datetime)
    before = ffs.checksum(f"{ffs_dir}/renamed/dst.bin")
    assert ffs.checksum(f"{ffs_dir}/renamed/dst.bin") == before
    ffs.pipe_file(f"{ffs_dir}/renamed/dst.bin", b"changed")
    assert ffs.checksum(f"{ffs_dir}/renamed/dst.bin") != before
    with pytest.raises(OSError):
        ffs.rm(f"{ffs_dir}/renamed")          # not recursive, not empty
    ffs.rm(f"{ffs_dir}/renamed", recursive=True)
    assert not ffs.exists(f"{ffs_dir}/renamed")
    ffs.makedirs(f"{ffs_dir}/e/f", exist_ok=True)
    ffs.makedirs(f"{ffs_dir}/e/f", exist_ok=True)
    ffs.rmdir(f"{ffs_dir}/e/f")
    assert ffs.ls(f"{ffs_dir}/e") == []


def test_put_get_round_trip(ffs, ffs_dir, tmp_path):
    local = tmp_path / "in"
    (local / "sub").mkdir(parents=True)
    (local / "one.bin").write_bytes(pattern(70_000))
    (local / "sub" / "two.bin").write_bytes(b"two")
    ffs.put(str(local), f"{ffs_dir}/up", recursive=True)
    assert ffs.cat_file(f"{ffs_dir}/up/sub/two.bin") == b"two"
    ffs.get(f"{ffs_dir}/up", str(tmp_path / "out"), recursive=True)
    assert (tmp_path / "out" / "one.bin").read_bytes() == pattern(70_000)


def test_transaction_commits_on_exit(ffs, ffs_dir):
    path = f"{ffs_dir}/txn.bin"
    with ffs.transaction:
        with ffs.open(path, "wb") as f:
            f.write(b"committed")
        assert not ffs.exists(path)
    assert ffs.cat_file(path) == b"committed"
    assert ffs.ls(ffs_dir, detail=False) == [path], "no temporary file left behind"


def _child_work(fs, directory, name):
    fs.pipe_file(f"{directory}/{name}", name.encode())
    return fs.cat_file(f"{directory}/seed.bin")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_reconnects(ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/seed.bin", b"seed")
    assert ffs.cat_file(f"{ffs_dir}/seed.bin") == b"seed"   # the parent has live channels
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if _child_work(ffs, ffs_dir, "child.txt") == b"seed":
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ffs.cat_file(f"{ffs_dir}/child.txt") == b"child.txt"
    assert ffs.cat_file(f"{ffs_dir}/seed.bin") == b"seed", "the parent still works"


def test_fork_pool_workers(ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/seed.bin", b"seed")
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.starmap(_child_work, [(ffs, ffs_dir, f"w{i}") for i in range(4)])
    assert results == [b"seed"] * 4
    assert ffs.cat_file(f"{ffs_dir}/w3") == b"w3"


def test_pickled_filesystem_works_in_a_spawned_interpreter(ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/p.bin", b"pickled")
    code = ("import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
            f"sys.stdout.buffer.write(fs.cat_file('{ffs_dir}/p.bin'))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(ffs),
                         capture_output=True, timeout=120, check=True).stdout
    assert out == b"pickled"


def test_fsspec_open_url_in_a_fresh_interpreter(cluster, ffs, ffs_dir):
    url = f"ffs://{cluster.host}:{cluster.port}{ffs_dir}/fresh.txt"
    code = ("import fsspec\n"
            f"with fsspec.open({url!r}, 'wb') as f: f.write(b'fresh')\n"
            f"with fsspec.open({url!r}, 'rb') as f: print(f.read().decode())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "fresh"
    assert ffs.cat_file(f"{ffs_dir}/fresh.txt") == b"fresh"


def test_pyarrow_parquet_round_trip(cluster, ffs, ffs_dir):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    table = pa.table({"x": list(range(5000)), "part": [i % 3 for i in range(5000)],
                      "s": [f"row-{i}" for i in range(5000)]})
    pq.write_table(table, f"{ffs_dir}/t.parquet", filesystem=ffs)
    assert pq.read_table(f"{ffs_dir}/t.parquet", filesystem=ffs).equals(table)
    url = f"ffs://{cluster.host}:{cluster.port}{ffs_dir}/url.parquet"
    with fsspec.open(url, "wb") as f:
        pq.write_table(table, f)
    with fsspec.open(url, "rb") as f:
        assert pq.read_table(f, columns=["s"]).column("s").to_pylist() == table.column("s").to_pylist()
    pq.write_to_dataset(table, f"{ffs_dir}/ds", partition_cols=["part"], filesystem=ffs)
    got = ds.dataset(f"{ffs_dir}/ds", filesystem=ffs, partitioning="hive").to_table()
    assert sorted(got.column("x").to_pylist()) == list(range(5000))


def test_default_layout_multi_chunk_file(ffs, ffs_dir):
    chunk = ffs.info(ffs_dir).get("chunk_size") or 4 * 1024 * 1024
    data = os.urandom(2 * 4 * 1024 * 1024 + 12345)
    ffs.pipe_file(f"{ffs_dir}/big.bin", data)
    info = ffs.info(f"{ffs_dir}/big.bin")
    assert info["size"] == len(data) and info["chunk_size"] >= chunk // 2
    assert ffs.cat_file(f"{ffs_dir}/big.bin") == data
    boundary = info["chunk_size"]
    starts = [boundary - 3, 2 * boundary - 1, 0, len(data) - 1]
    ends = [boundary + 3, 2 * boundary + 1, 1, len(data)]
    assert ffs.cat_ranges([f"{ffs_dir}/big.bin"] * 4, starts, ends) == [
        data[s:e] for s, e in zip(starts, ends)]


def test_client_survives_storage_and_meta_restarts(cluster, ffs, ffs_dir):
    """Routing refresh and Meta retries: a restarted node comes back on a new port."""
    data = pattern(300_000, seed=3)
    ffs.mkdir(f"{ffs_dir}/r", chunk_size=SMALL_CHUNK, stripe_size=6)
    ffs.pipe_file(f"{ffs_dir}/r/f.bin", data)
    assert ffs.cat_file(f"{ffs_dir}/r/f.bin") == data
    version_before = ffs.client.routing.version
    cluster.cluster.kill("storage-1")
    cluster.cluster.up()
    assert ffs.cat_file(f"{ffs_dir}/r/f.bin") == data
    assert ffs.client.routing.version > version_before, "the client refreshed its routing"
    ffs.pipe_file(f"{ffs_dir}/r/g.bin", data[::-1])
    assert ffs.cat_file(f"{ffs_dir}/r/g.bin") == data[::-1]
    cluster.cluster.kill("meta")
    cluster.cluster.up()
    assert ffs.cat_file(f"{ffs_dir}/r/f.bin") == data


def test_ffs_client_api(ffs, ffs_dir):
    client: FfsClient = ffs.client
    path = f"{ffs_dir}/api/file.bin"
    data = pattern(3 * SMALL_CHUNK + 10)
    client.mkdir(f"{ffs_dir}/api", chunk_size=SMALL_CHUNK)
    inode = client.write_file(path, data)
    assert inode.length == len(data)
    assert client.read_file(path, 5, 15) == data[5:15]
    assert client.truncate(path, SMALL_CHUNK + 7).length == SMALL_CHUNK + 7
    assert client.read_file(path) == data[:SMALL_CHUNK + 7]
    assert client.truncate(path, 2 * SMALL_CHUNK).length == 2 * SMALL_CHUNK   # grows with zeros
    assert client.read_file(path) == data[:SMALL_CHUNK + 7] + bytes(SMALL_CHUNK - 7)
    client.symlink(f"{ffs_dir}/api/link", path)
    assert client.readlink(f"{ffs_dir}/api/link") == path
    assert ffs.cat_file(f"{ffs_dir}/api/link") == client.read_file(path)
    assert ffs.info(f"{ffs_dir}/api/link")["type"] == "file"   # info follows symlinks
    linked = client.link(path, f"{ffs_dir}/api/hard")
    assert linked.nlink == 2 and linked.id == client.stat(path).id
    assert client.setattr(path, mode=0o600).mode & 0o777 == 0o600
    names = [entry.name for entry in client.listdir(f"{ffs_dir}/api")]
    assert names == ["file.bin", "hard", "link"]
    assert client.statfs().inodes > 0
    handle = client.open(path, write=True)
    client.pwrite(handle, 2 * SMALL_CHUNK, b"more")
    assert client.close(handle, 2 * SMALL_CHUNK + 4).length == 2 * SMALL_CHUNK + 4


def test_listing_and_find_page_through_the_server(ffs, ffs_dir):
    client: FfsClient = ffs.client
    for i in range(7):
        ffs.pipe_file(f"{ffs_dir}/d{i % 2}/f{i}", b"x")
    names = [entry.name for entry in client.listdir(f"{ffs_dir}/d0", page_entries=2)]
    assert names == ["f0", "f2", "f4", "f6"]
    found = [entry.path for entry in client.find(ffs_dir, withdirs=True, page_entries=3)]
    assert sorted(found) == ffs.find(ffs_dir, withdirs=True)[1:]   # find adds the top itself
    assert len(found) == 9
