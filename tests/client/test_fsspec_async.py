"""The asyncio face (client/fsspec_async.py) against a real cluster, on both metadata engines.

Goal: what an s3fs user does inside a running event loop works here, with the
sync face's results and errors. Method: each test runs its coroutines with
plain ``asyncio.run`` (or uvloop's runners) over an
``fsspec.filesystem("ffs", asynchronous=True)`` and compares against the sync
face on the same files: awaited primitives, many concurrent calls, the errors
of each failing call, fsspec's async helpers, uvloop, ``open_async``,
cancellation, fork and pickle. fsspec's abstract suites for this face are in
test_fsspec_async_abstract.py.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import threading

import fsspec
import fsspec.asyn
import pytest

from fireflyfs.client.fsspec_async import AsyncFireflyFileSystem, LoopCoalescer
from fireflyfs.client.fsspec_fs import FireflyFileSystem
from fireflyfs.common import limits
from tests.conftest import fsspec_on

CHUNK = limits.chunk_size_default


def pattern(size: int, seed: int = 1) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def affs(cluster):
    """The async face on the cluster (asynchronous=True: coroutines only, no sync calls)."""
    return fsspec_on(cluster, asynchronous=True)


# ---- construction, without a server -----------------------------------------------------------

def test_asynchronous_true_gives_the_async_face_and_the_default_stays_threaded():
    fs = fsspec.filesystem("ffs", host="127.0.0.1", port=9301, asynchronous=True)
    assert isinstance(fs, AsyncFireflyFileSystem) and isinstance(fs, fsspec.asyn.AsyncFileSystem)
    assert fs.async_impl and fs.asynchronous and fs.loop is None
    assert fsspec.filesystem("ffs", host="127.0.0.1", port=9301, asynchronous=True) is fs, "cached"
    url_fs, path = fsspec.core.url_to_fs("ffs://127.0.0.1:9301/a/b", asynchronous=True)
    assert isinstance(url_fs, AsyncFireflyFileSystem) and path == "/a/b"
    assert (fs.host, fs.port, fs.unstrip_protocol("/x")) == ("127.0.0.1", 9301, "ffs://127.0.0.1:9301/x")

    plain = fsspec.filesystem("ffs", host="127.0.0.1", port=9301)
    assert type(plain) is FireflyFileSystem and not plain.async_impl
    assert type(plain).cat_file is FireflyFileSystem.cat_file, "the sync face's own methods, no loop"
    assert type(FireflyFileSystem(host="127.0.0.1", port=9301, asynchronous=False)) is FireflyFileSystem


def test_async_face_pickles_without_its_loop():
    loop = asyncio.new_event_loop()
    try:
        fs = FireflyFileSystem(host="127.0.0.1", port=9302, loop=loop, skip_instance_cache=True)
        assert isinstance(fs, AsyncFireflyFileSystem) and fs.loop is loop
        copy = pickle.loads(pickle.dumps(fs))
        assert "loop" not in copy.storage_options and copy.loop is not loop and not copy.asynchronous
        asynchronous = pickle.loads(pickle.dumps(FireflyFileSystem(host="127.0.0.1", port=9302,
                                                                   asynchronous=True, threads=4)))
        assert asynchronous.asynchronous and asynchronous.threads == 4
    finally:
        loop.close()


def test_importing_the_client_loads_neither_the_async_face_nor_uvloop():
    code = ("import sys, fsspec, fireflyfs.client as c; c.FireflyFileSystem; "
            "fsspec.filesystem('ffs', host='127.0.0.1', port=1); "
            "print('fireflyfs.client.fsspec_async' in sys.modules, 'uvloop' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_sync_methods_of_the_async_class_run_on_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop")
    fs = AsyncFireflyFileSystem(host="127.0.0.1", port=9303, skip_instance_cache=True)
    assert isinstance(fs.loop, uvloop.Loop) and fs.loop.is_running()


def test_loop_coalescer_sends_waiting_items_together_and_skips_cancelled_callers():
    sent: list[list[int]] = []
    release = threading.Event()

    def send(items):
        release.wait(10)
        sent.append(list(items))
        return [ValueError(item) if item == 13 else item * 2 for item in items]

    async def main():
        coalescer = LoopCoalescer(send, threads=4, inflight_max=1)
        first = asyncio.ensure_future(coalescer.call(0))
        await asyncio.sleep(0)                       # out alone, held in send
        rest = [asyncio.ensure_future(coalescer.call(n)) for n in range(1, 20)]
        await asyncio.sleep(0)
        rest[4].cancel()                             # item 5 no longer wanted
        release.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        return results

    results = asyncio.run(main())
    assert sent[0] == [0] and sent[1] == [n for n in range(1, 20) if n != 5], "one batch for the waiters"
    assert isinstance(results[5], asyncio.CancelledError) and isinstance(results[13], ValueError)
    assert [r for n, r in enumerate(results) if n not in (5, 13)] == [n * 2 for n in range(20) if n not in (5, 13)]


# ---- against the cluster ----------------------------------------------------------------------

def test_awaited_primitives_return_what_the_sync_face_returns(affs, ffs, ffs_dir):
    small, big = f"{ffs_dir}/d/small.bin", f"{ffs_dir}/d/big.bin"
    big_bytes = pattern(CHUNK + 12345)

    async def main():
        await affs._pipe_file(small, b"hello world")        # inline, parents made
        await affs._pipe_file(big, big_bytes)               # through storage, two chunks
        return {
            "small": await affs._cat_file(small),
            "small_tail": await affs._cat_file(small, start=-5),
            "small_mid": await affs._cat_file(small, start=2, end=-3),
            "big_edge": await affs._cat_file(big, start=CHUNK - 10, end=CHUNK + 10),
            "big": await affs._cat_file(big),
            "info": await affs._info(big),
            "ls": await affs._ls(f"{ffs_dir}/d", detail=False),
            "find": await affs._find(ffs_dir),
            "sizes": await affs._sizes([small, big]),
            "exists": (await affs._exists(small), await affs._exists(f"{ffs_dir}/nope")),
            "isdir": (await affs._isdir(f"{ffs_dir}/d"), await affs._isfile(f"{ffs_dir}/d")),
            "ranges": await affs._cat_ranges([small, big, big], [0, 0, CHUNK], [5, 3, CHUNK + 4], max_gap=64),
            "cat": await affs._cat(f"{ffs_dir}/d/*"),
        }

    got = asyncio.run(main())
    assert got["small"] == b"hello world" and got["small_tail"] == b"world" and got["small_mid"] == b"llo wo"
    assert got["big"] == big_bytes and got["big_edge"] == big_bytes[CHUNK - 10:CHUNK + 10]
    assert got["info"] == ffs.info(big)
    assert got["ls"] == ffs.ls(f"{ffs_dir}/d", detail=False) == [big, small]
    assert got["find"] == ffs.find(ffs_dir) == [big, small]
    assert got["sizes"] == [11, len(big_bytes)]
    assert got["exists"] == (True, False) and got["isdir"] == (True, False)
    assert got["ranges"] == [b"hello", big_bytes[:3], big_bytes[CHUNK:CHUNK + 4]]
    assert got["cat"] == {big: big_bytes, small: b"hello world"}


def test_directories_moves_copies_and_removes(affs, ffs, ffs_dir):
    async def main():
        await affs._mkdir(f"{ffs_dir}/m/n")
        await affs._makedirs(f"{ffs_dir}/m/n", exist_ok=True)
        await affs._pipe_file(f"{ffs_dir}/m/n/a", b"a")
        await affs._cp_file(f"{ffs_dir}/m/n/a", f"{ffs_dir}/m/b")          # server-side copy
        await affs._mv(f"{ffs_dir}/m/b", f"{ffs_dir}/m/c")                  # one atomic rename
        await affs._touch(f"{ffs_dir}/m/empty")
        await affs._chmod(f"{ffs_dir}/m/empty", 0o600)
        listing = await affs._find(f"{ffs_dir}/m", withdirs=True)
        mode = (await affs._info(f"{ffs_dir}/m/empty"))["mode"] & 0o777
        await affs._rm(f"{ffs_dir}/m/n", recursive=True)                     # one Meta.Remove
        await affs._rm_file(f"{ffs_dir}/m/c")
        await affs._mkdir(f"{ffs_dir}/m/e")
        await affs._rmdir(f"{ffs_dir}/m/e")
        return listing, mode, await affs._ls(f"{ffs_dir}/m", detail=False)

    listing, mode, after = asyncio.run(main())
    assert listing == [f"{ffs_dir}/m", f"{ffs_dir}/m/c", f"{ffs_dir}/m/empty", f"{ffs_dir}/m/n",
                       f"{ffs_dir}/m/n/a"]
    assert mode == 0o600 and after == [f"{ffs_dir}/m/empty"]
    assert ffs.cat_file(f"{ffs_dir}/m/empty") == b""


def test_many_concurrent_calls_share_thread_hops_and_each_gets_its_own_answer(cluster, ffs, ffs_dir):
    fs = fsspec_on(cluster, asynchronous=True, skip_instance_cache=True)
    files = {f"{ffs_dir}/many/{n:04d}": pattern(100 + n % 300, seed=n) for n in range(400)}
    files[f"{ffs_dir}/many/chunked"] = pattern(CHUNK + 1)
    ffs.pipe(files)
    batches: list[int] = []
    opens = fs.sync_fs.open_for_reads
    fs.sync_fs.open_for_reads = lambda paths: batches.append(len(paths)) or opens(paths)
    paths = list(files) + [f"{ffs_dir}/many/missing"]

    async def main():
        return await asyncio.gather(*(fs._cat_file(path) for path in paths),
                                    *(fs._info(path) for path in paths), return_exceptions=True)

    results = asyncio.run(main())
    contents, infos = results[:len(paths)], results[len(paths):]
    assert contents[:-1] == list(files.values())
    assert isinstance(contents[-1], FileNotFoundError) and isinstance(infos[-1], FileNotFoundError)
    assert [info["size"] for info in infos[:-1]] == [len(data) for data in files.values()]
    assert sum(batches) == len(paths) and len(batches) < len(paths) / 10, batches


def test_concurrent_small_pipes_share_batch_creates_and_each_keeps_its_outcome(cluster, ffs, ffs_dir):
    fs = fsspec_on(cluster, asynchronous=True, skip_instance_cache=True)
    exists, linked, link, big = (f"{ffs_dir}/w/{name}" for name in ("exists", "linked", "link", "big"))
    ffs.pipe_file(exists, b"old")
    ffs.pipe_file(linked, b"old")
    ffs.client.link(linked, link)          # two links: meta will not rewrite it inline
    batches: list[int] = []
    pipe = fs.sync_fs.pipe_small_files
    fs.sync_fs.pipe_small_files = lambda files: batches.append(len(files)) or pipe(files)
    new = {f"{ffs_dir}/w/new/{n}": pattern(1 + n * 53 % limits.inline_data_bytes_max, seed=n) for n in range(300)}

    async def main():
        return await asyncio.gather(*(fs._pipe_file(path, data) for path, data in new.items()),
                                    fs._pipe_file(exists, b"new", mode="create"),
                                    fs._pipe_file(link, b"through storage"),
                                    fs._pipe_file(big, pattern(CHUNK + 1)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[:len(new)] == [None] * len(new)
    assert isinstance(results[len(new)], FileExistsError) and results[len(new) + 1:] == [None, None]
    assert ffs.cat(list(new)) == new
    assert (ffs.cat_file(exists), ffs.cat_file(linked), ffs.cat_file(big)) == (b"old", b"through storage",
                                                                               pattern(CHUNK + 1))
    assert sum(batches) == len(new) + 2 and len(batches) < len(new) / 10, batches


# Each failing call, awaited, raises what the same call of the sync face raises.
FAILING_CALLS = [
    ("cat_file", lambda d: (f"{d}/missing",), {}),
    ("cat_file", lambda d: (f"{d}/dir",), {}),
    ("info", lambda d: (f"{d}/missing",), {}),
    ("ls", lambda d: (f"{d}/missing",), {}),
    ("mkdir", lambda d: (f"{d}/dir",), {}),
    ("makedirs", lambda d: (f"{d}/file",), {}),
    ("pipe_file", lambda d: (f"{d}/file", b"again"), {"mode": "create"}),
    ("pipe_file", lambda d: (f"{d}/file/below", b"x"), {}),
    ("rm_file", lambda d: (f"{d}/missing",), {}),
    ("rm", lambda d: (f"{d}/dir",), {}),
    ("rmdir", lambda d: (f"{d}/dir",), {}),
    ("cp_file", lambda d: (f"{d}/missing", f"{d}/copy"), {}),
    ("mv", lambda d: (f"{d}/missing", f"{d}/moved"), {}),
    ("sizes", lambda d: ([f"{d}/file", f"{d}/missing"],), {}),
    ("cat_ranges", lambda d: ([f"{d}/missing"], [0], [1]), {"on_error": "raise"}),
    ("info", lambda d: ("/../escape",), {}),
]


def test_each_failure_raises_the_sync_faces_error(affs, ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/file", b"x")
    ffs.makedirs(f"{ffs_dir}/dir/inner")          # not empty: rmdir and a plain rm refuse it
    expected = []
    for name, args, kwargs in FAILING_CALLS:
        with pytest.raises(Exception) as raised:
            getattr(ffs, name)(*args(ffs_dir), **kwargs)
        expected.append(type(raised.value))

    async def main():
        out = []
        for name, args, kwargs in FAILING_CALLS:
            try:
                await getattr(affs, "_" + name)(*args(ffs_dir), **kwargs)
            except Exception as exc:  # noqa: BLE001 - compared below
                out.append(type(exc))
            else:
                out.append(None)
        return out

    got = asyncio.run(main())
    assert list(zip([c[0] for c in FAILING_CALLS], got)) == list(zip([c[0] for c in FAILING_CALLS], expected))
    for builtin in (FileNotFoundError, IsADirectoryError, FileExistsError, NotADirectoryError, ValueError):
        assert any(issubclass(kind, builtin) for kind in expected), builtin


def test_fsspec_async_helpers_inside_a_running_loop(affs, ffs, ffs_dir, tmp_path):
    files = {f"{ffs_dir}/h/{n}.txt": f"file {n}".encode() for n in range(12)}
    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    (local / "one.bin").write_bytes(b"one")
    (local / "sub" / "two.bin").write_bytes(pattern(CHUNK + 3))

    async def main():
        await fsspec.asyn._run_coros_in_chunks([affs._pipe_file(p, v) for p, v in files.items()], batch_size=4)
        await affs._pipe({f"{ffs_dir}/h/extra": b"extra"})
        got = await fsspec.asyn._run_coros_in_chunks([affs._cat_file(p) for p in files], batch_size=5)
        cat = await affs._cat(f"{ffs_dir}/h/*.txt")
        expanded = await affs._expand_path(f"{ffs_dir}/h/1*.txt")
        await affs._put(str(local) + "/", f"{ffs_dir}/up/", recursive=True)
        await affs._get(f"{ffs_dir}/up/", str(tmp_path / "down") + "/", recursive=True)
        await affs._copy(f"{ffs_dir}/up", f"{ffs_dir}/up-copy", recursive=True)
        walked = [(root, sorted(dirs), sorted(names)) async for root, dirs, names in affs._walk(f"{ffs_dir}/up")]
        du = await affs._du(f"{ffs_dir}/up")
        return got, cat, expanded, walked, du

    got, cat, expanded, walked, du = asyncio.run(main())
    assert got == list(files.values()) and cat == files
    assert expanded == sorted(p for p in files if p.startswith(f"{ffs_dir}/h/1"))
    assert (tmp_path / "down" / "one.bin").read_bytes() == b"one"
    assert (tmp_path / "down" / "sub" / "two.bin").read_bytes() == pattern(CHUNK + 3)
    assert ffs.cat_file(f"{ffs_dir}/up-copy/sub/two.bin") == pattern(CHUNK + 3)
    assert walked == [(f"{ffs_dir}/up", ["sub"], ["one.bin"]), (f"{ffs_dir}/up/sub", [], ["two.bin"])]
    assert du == 3 + CHUNK + 3
    # fsspec.asyn.sync from a thread with no loop: the coroutines run on fsspec's IO loop.
    assert fsspec.asyn.sync(fsspec.asyn.get_loop(), affs._cat_file, f"{ffs_dir}/h/3.txt") == b"file 3"


def test_under_uvloop(affs, ffs_dir):
    uvloop = pytest.importorskip("uvloop")

    async def main():
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await affs._pipe_file(f"{ffs_dir}/uv/a", b"on uvloop")
        await affs._pipe_file(f"{ffs_dir}/uv/b", pattern(CHUNK + 5))
        return await asyncio.gather(affs._cat_file(f"{ffs_dir}/uv/a"), affs._cat_file(f"{ffs_dir}/uv/b"),
                                    affs._info(f"{ffs_dir}/uv/b"))

    a, b, info = uvloop.run(main())
    assert (a, b, info["size"]) == (b"on uvloop", pattern(CHUNK + 5), CHUNK + 5)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(affs._cat_file(f"{ffs_dir}/uv/a", start=3)) == b"uvloop"


def test_sync_methods_of_an_async_constructed_face(cluster, ffs_dir):
    fs = fsspec_on(cluster, loop=None, asynchronous=False, skip_instance_cache=True)
    assert type(fs) is FireflyFileSystem, "asynchronous=False and no loop: the threaded class"
    fs = AsyncFireflyFileSystem(addresses=",".join(cluster.cluster.meta_addresses), skip_instance_cache=True)
    fs.pipe_file(f"{ffs_dir}/s/a", b"sync over the loop")
    fs.mv(f"{ffs_dir}/s/a", f"{ffs_dir}/s/b")
    assert fs.cat_file(f"{ffs_dir}/s/b") == b"sync over the loop"
    assert fs.infos([f"{ffs_dir}/s/b", f"{ffs_dir}/s/a"])[1] is None
    with fs.open(f"{ffs_dir}/s/c", "wb") as f:
        f.write(b"through FireflyFile")
    assert fs.cat(f"{ffs_dir}/s/c") == b"through FireflyFile"


def test_open_async_reads_and_writes(affs, ffs, ffs_dir):
    data = pattern(CHUNK + 100)

    async def main():
        async with await affs.open_async(f"{ffs_dir}/o/f", "wb") as f:
            await f.write(data[:1000])
            await f.flush()                      # durable and visible to a new open
            seen = await affs._cat_file(f"{ffs_dir}/o/f")
            await f.write(data[1000:])
        async with await affs.open_async(f"{ffs_dir}/o/f") as f:
            head = await f.read(10)
            f.seek(CHUNK - 2)
            edge = await f.read(4)
            rest = await f.read()
        with pytest.raises(ValueError):
            await affs.open_async(f"{ffs_dir}/o/f", "r")
        return seen, head, edge, rest

    seen, head, edge, rest = asyncio.run(main())
    assert seen == data[:1000] and head == data[:10] and edge == data[CHUNK - 2:CHUNK + 2]
    assert rest == data[CHUNK + 2:] and ffs.cat_file(f"{ffs_dir}/o/f") == data


def test_one_instance_serves_several_loops_one_after_another(affs, ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/loops", b"x")
    for _ in range(3):
        assert asyncio.run(affs._cat_file(f"{ffs_dir}/loops")) == b"x"

    results = []
    threads = [threading.Thread(target=lambda: results.append(asyncio.run(affs._info(f"{ffs_dir}/loops"))))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [info["size"] for info in results] == [1] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_uses_both_async_and_loop_backed_faces(cluster, affs, ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/seed", b"seed")
    looped = AsyncFireflyFileSystem(addresses=",".join(cluster.cluster.meta_addresses), skip_instance_cache=True)
    assert asyncio.run(affs._cat_file(f"{ffs_dir}/seed")) == b"seed"      # threads and connections live
    assert looped.cat_file(f"{ffs_dir}/seed") == b"seed"                   # the IO loop's thread too
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            async def child():
                await affs._pipe_file(f"{ffs_dir}/child", b"from the child")
                return await asyncio.gather(*(affs._cat_file(f"{ffs_dir}/seed") for _ in range(20)))
            if asyncio.run(child()) == [b"seed"] * 20 and looped.cat_file(f"{ffs_dir}/child") == b"from the child":
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(affs._cat_file(f"{ffs_dir}/child")) == b"from the child", "the parent still works"
    assert looped.cat_file(f"{ffs_dir}/child") == b"from the child"


def test_pickled_async_face_works_in_a_spawned_interpreter(affs, ffs, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/p", b"pickled async")
    code = ("import asyncio, pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
            f"sys.stdout.buffer.write(asyncio.run(fs._cat_file('{ffs_dir}/p')))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(affs), capture_output=True,
                         timeout=120, check=True).stdout
    assert out == b"pickled async"
