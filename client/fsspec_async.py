"""AsyncFireflyFileSystem: the asyncio face of the ffs:// filesystem, for code that runs an event loop.

``FireflyFileSystem(..., asynchronous=True)`` (so ``fsspec.filesystem("ffs", asynchronous=True)``
and ``fsspec.url_to_fs(url, asynchronous=True)``) and ``FireflyFileSystem(..., loop=L)`` return
one of these: an fsspec ``AsyncFileSystem``, as s3fs, gcsfs and adlfs are. Its primitives are
coroutines (``await fs._cat_file(path)``, ``_cat_ranges``, ``_pipe_file``, ``_info``, ``_ls``,
``_find``, ``_put_file``, ``_get_file``, ``_cp_file``, ``_rm``, ...), so fsspec's async helpers
(``_cat``, ``_get``, ``_put``, ``_copy``, ``_expand_path``, ``fsspec.asyn._run_coros_in_chunks``)
and libraries that look for ``fs.async_impl`` (zarr's FsspecStore) use it as they use s3fs.
Constructed with ``asynchronous=False``, its sync methods are fsspec's wrappers that run those
coroutines on an IO loop thread (``io_loop``: uvloop when installed). The plain
``FireflyFileSystem()`` (the default face: PyTorch loaders, pandas, everything sync) is the
threaded class itself and never touches an event loop.

The engine underneath is threads: every coroutine is a call of the sync face
(FireflyFileSystem: the same code, the same FfsClient) run on a per-process
pool of ``threads`` threads and awaited (``_call``, the one call path, as s3fs
has ``_call_s3``). So results, typed errors (FileNotFoundError,
FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError, ...)
and server-side work (one Meta.Remove per tree, one BatchStat plus one batched
read for ``_cat``/``_cat_ranges``) are the sync face's, and gRPC and the bulk
sockets release the GIL while they wait. One hop to a thread and back costs
the loop ~50 us of CPU, as much as a small RPC, so concurrent calls of one loop
share hops (LoopCoalescer): ``_info`` calls leave together as one BatchStat,
``_cat_file`` opens as one BatchStat (inline files answer from it; others then
read on a thread each), small ``_pipe_file`` calls as one BatchCreate. A
cancelled coroutine stops waiting; a call already on a thread finishes there,
as ``asyncio.to_thread``'s does.

Which engine, measured in one run (``python bench/fsspec_async.py``, the 2-core
VM under other load, 64 calls in flight; README "asyncio" has the table): this
face did 1.54x the threaded path's stats/s, 1.30x its 4 KiB reads, 1.11x its
64 KiB reads, 0.94x its 8 MiB reads (MiB/s, within noise), 1.17x its
``cat_ranges`` and 0.89x its 4 KiB writes, at 0.5-0.6x its client CPU per
small read or stat (about the same per large read or ``cat_ranges``). A native
engine (grpc.aio for meta, the bulk protocol on asyncio streams), built as a
prototype in the bench, did 0.34-0.74x the threaded path: its chunk bytes cost
~3x the CPU (asyncio's TLS and copies) and it lacks the batching. So the
threads stay underneath. uvloop changed this face's figures by 0.9-1.2x, within
the run's noise: the loop only hands calls over.

Safe after ``os.fork()`` (a forked child gets its own threads and, for the sync
methods, its own IO loop) and picklable as its storage options (an event
loop passed as ``loop=`` is left out: the unpickled copy uses its own process's).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from fsspec.asyn import AsyncFileSystem, get_loop, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import make_instance

from fireflyfs.common import limits
from .fsspec_fs import FireflyFileSystem
from .meta_client import UMASK_DEFAULT

threads_default = 32   # calls of the sync face running at once per process (the rest queue)

_pools: dict[int, ThreadPoolExecutor] = {}    # this process's, by thread count
_process_lock = threading.Lock()   # guards this module's per-process state; new in a forked child


def call_threads(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` threads that run the coroutines' calls (made on first use)."""
    pool = _pools.get(threads)
    if pool is None:
        with _process_lock:
            pool = _pools.get(threads)
            if pool is None:
                pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="ffs-async")
    return pool


_io_loop: list = [None]      # this process's loop for the sync methods (io_loop)


def io_loop() -> asyncio.AbstractEventLoop:
    """The loop on which the sync methods of this process's async faces run their coroutines:
    a uvloop loop on a daemon thread of its own ("ffs-async-io") when uvloop is installed, else
    fsspec's IO loop. uvloop is imported here, on first use, never with the package."""
    loop = _io_loop[0]
    if loop is None:
        with _process_lock:
            loop = _io_loop[0]
            if loop is None:
                try:
                    import uvloop
                except ImportError:
                    loop = get_loop()
                else:
                    loop = uvloop.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="ffs-async-io", daemon=True).start()
                _io_loop[0] = loop
    return loop


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: drop the pools (never shut them down) and
    the IO loop, whose thread did not come along."""
    global _process_lock
    _pools.clear()
    _io_loop[0] = None
    _process_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class LoopCoalescer:
    """Calls of one kind from coroutines of one event loop share thread hops, as threads share
    RPCs in MetaClient's Coalescer: ``await call(item)``.

    While fewer than ``inflight_max`` batches are out, an item leaves at once (a
    lone caller never waits); items that arrive meanwhile queue, and when a
    batch comes back the queue leaves as the next one (at most ``batch_max``
    items). ``send(items)`` runs on the face's threads and returns one result or
    exception per item. Why: handing one call to a thread and back costs the
    loop ~50 us of CPU (a future, a wake-up, the GIL changing hands), as much as
    the RPC it carries; 64 coroutines stat-ing at once paid it 64 times, and
    with this they pay it once per batch. Used from its loop's thread only.
    """

    def __init__(self, send, threads: int, inflight_max: int = 2, batch_max: int = 256) -> None:
        if inflight_max < 1 or batch_max < 1:
            raise ValueError("inflight_max and batch_max must be at least 1")
        self._send = send
        self._threads = threads
        self.inflight_max = inflight_max
        self.batch_max = batch_max
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._inflight = 0

    async def call(self, item):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((item, future))
        self._dispatch(loop)
        return await future

    def _dispatch(self, loop) -> None:
        while self._waiting and self._inflight < self.inflight_max:
            batch = [(item, future) for item, future in self._waiting[:self.batch_max] if not future.done()]
            del self._waiting[:self.batch_max]
            if not batch:
                continue    # every caller of it was cancelled
            self._inflight += 1
            sent = loop.run_in_executor(call_threads(self._threads), self._send, [item for item, _ in batch])
            sent.add_done_callback(functools.partial(self._returned, loop, batch))

    def _returned(self, loop, batch, sent: asyncio.Future) -> None:
        self._inflight -= 1
        if sent.cancelled():
            results = [None] * len(batch)
        else:
            try:
                results = sent.result()
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                results = [exc] * len(batch)
        for (_item, future), result in zip(batch, results):
            if future.done():
                continue
            if sent.cancelled():
                future.cancel()
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._dispatch(loop)


class AsyncFireflyFile:
    """What ``open_async`` returns: a FireflyFile (readahead, write-behind) whose blocking calls
    run on the face's threads. ``seek``/``tell`` move the position only and stay sync."""

    def __init__(self, fs: "AsyncFireflyFileSystem", file) -> None:
        self.fs = fs
        self.file = file

    path = property(lambda self: self.file.path)
    mode = property(lambda self: self.file.mode)
    size = property(lambda self: self.file.size)
    closed = property(lambda self: self.file.closed)

    async def read(self, length: int = -1) -> bytes:
        return await self.fs._call(self.file.read, length)

    async def readinto(self, buffer) -> int:
        return await self.fs._call(self.file.readinto, buffer)

    async def write(self, data) -> int:
        return await self.fs._call(self.file.write, data)

    async def flush(self) -> None:
        """The file's fsync, as FireflyFile.flush: written bytes durable and their length on meta."""
        await self.fs._call(self.file.flush)

    async def close(self) -> None:
        await self.fs._call(self.file.close)

    def seek(self, loc: int, whence: int = 0) -> int:
        return self.file.seek(loc, whence)

    def tell(self) -> int:
        return self.file.tell()

    async def __aenter__(self) -> "AsyncFireflyFile":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


class AsyncFireflyFileSystem(AsyncFileSystem):
    """fsspec's AsyncFileSystem over a FireflyFS cluster: the same arguments as FireflyFileSystem,
    plus fsspec's ``asynchronous``, ``loop`` and ``batch_size``, and ``threads`` (how many calls
    run at once in this process; more wait for a thread)."""

    protocol = FireflyFileSystem.protocol
    root_marker = FireflyFileSystem.root_marker
    sep = FireflyFileSystem.sep
    blocksize = FireflyFileSystem.blocksize
    threads = threads_default

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, addresses: str | None = None,
                 token: str | None = None, umask: int = UMASK_DEFAULT, tls_ca: str | None = None,
                 asynchronous: bool = False, loop=None, batch_size: int | None = None,
                 threads: int | None = None, **kwargs) -> None:
        kwargs.setdefault("use_listings_cache", False)
        self._loop_given = loop is not None
        if loop is None and not asynchronous:
            loop = io_loop()
        super().__init__(host=host, port=port, addresses=addresses, token=token, umask=umask, tls_ca=tls_ca,
                         asynchronous=asynchronous, loop=loop, batch_size=batch_size, **kwargs)
        if threads is not None:
            if threads < 1:
                raise ValueError("threads must be at least 1")
            self.threads = threads
        # The engine: the sync face, of this instance alone (no instance cache shared with it).
        self.sync_fs = FireflyFileSystem(host=host, port=port, addresses=addresses, token=token,
                                         umask=umask, tls_ca=tls_ca, skip_instance_cache=True)
        self.client = self.sync_fs.client
        self.addresses, self.host, self.port = self.sync_fs.addresses, self.sync_fs.host, self.sync_fs.port
        self._coalescers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # loop -> (pid, by kind)

    @property
    def fsid(self) -> str:
        return self.sync_fs.fsid

    @property
    def loop(self):
        """The loop the sync methods run their coroutines on: ``loop=`` if given, else io_loop()
        (None with asynchronous=True). A forked child takes its own process's IO loop."""
        if self._pid != os.getpid():
            if self._loop_given:
                raise RuntimeError("an event loop given as loop= does not survive a fork; "
                                   "construct the filesystem again in the child")
            self._pid = os.getpid()
            self._loop = None if self.asynchronous else io_loop()
        return self._loop

    def __reduce__(self):
        options = {key: value for key, value in self.storage_options.items() if key != "loop"}
        return make_instance, (type(self), self.storage_args, options)

    # ---- the one call path ------------------------------------------------

    async def _call(self, method, *args, **kwargs):
        """Run one sync-face call on this process's threads and await its result or error."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(call_threads(self.threads),
                                          functools.partial(method, *args, **kwargs))

    def _coalescer(self, kind: str) -> LoopCoalescer:
        """The running loop's LoopCoalescer of kind ("stat": infos, "open": read opens, "pipe":
        small whole-file writes). A process forked inside a running loop gets new ones: the
        batches its parent had out never come back to it."""
        loop = asyncio.get_running_loop()
        pid, kinds = self._coalescers.get(loop, (0, None))
        if kinds is None or pid != os.getpid():
            with _process_lock:
                pid, kinds = self._coalescers.get(loop, (0, None))
                if kinds is None or pid != os.getpid():
                    kinds = {}
                    self._coalescers[loop] = (os.getpid(), kinds)
        coalescer = kinds.get(kind)
        if coalescer is None:
            send = {"stat": self.sync_fs.infos_or_errors, "open": self.sync_fs.open_for_reads,
                    "pipe": self.sync_fs.pipe_small_files}[kind]
            coalescer = kinds[kind] = LoopCoalescer(send, self.threads)
        return coalescer

    # ---- paths: the sync face's ------------------------------------------

    _strip_protocol = FireflyFileSystem.__dict__["_strip_protocol"]
    _get_kwargs_from_urls = FireflyFileSystem.__dict__["_get_kwargs_from_urls"]
    unstrip_protocol = FireflyFileSystem.unstrip_protocol

    # ---- metadata ----------------------------------------------------------

    async def _info(self, path, **kwargs) -> dict:
        """One Meta.Stat; concurrent calls on one loop share one BatchStat (LoopCoalescer)."""
        return await self._coalescer("stat").call(self._strip_protocol(path))

    async def _infos(self, paths: list[str]) -> list[dict | None]:
        """info() of many paths in one Meta.BatchStat per 10,000; None for a missing path."""
        return await self._call(self.sync_fs.infos, paths)

    # exists, isdir and isfile catch what fsspec's sync versions catch, the sync face's own.

    async def _exists(self, path, **kwargs) -> bool:
        try:
            await self._info(path)
            return True
        except Exception:  # noqa: BLE001 - as AbstractFileSystem.exists
            return False

    async def _isdir(self, path) -> bool:
        try:
            return (await self._info(path))["type"] == "directory"
        except OSError:
            return False

    async def _isfile(self, path) -> bool:
        try:
            return (await self._info(path))["type"] == "file"
        except Exception:  # noqa: BLE001 - as AbstractFileSystem.isfile
            return False

    async def _sizes(self, paths, batch_size=None) -> list[int]:
        """Sizes of many files: one Meta.BatchStat."""
        return await self._call(self.sync_fs.sizes, paths)

    async def _ls(self, path, detail=True, **kwargs):
        return await self._call(self.sync_fs.ls, path, detail=detail, **kwargs)

    async def _find(self, path, maxdepth=None, withdirs=False, **kwargs):
        """Every file (and directory, with withdirs) below path: one paged Meta.Find."""
        return await self._call(self.sync_fs.find, path, maxdepth=maxdepth, withdirs=withdirs, **kwargs)

    async def _modified(self, path):
        return await self._call(self.sync_fs.modified, path)

    async def _created(self, path):
        return await self._call(self.sync_fs.created, path)

    async def _ukey(self, path) -> str:
        return await self._call(self.sync_fs.ukey, path)

    async def _checksum(self, path) -> int:
        return await self._call(self.sync_fs.checksum, path)

    # ---- directories and attributes -----------------------------------------

    async def _mkdir(self, path, create_parents=True, **kwargs) -> None:
        return await self._call(self.sync_fs.mkdir, path, create_parents=create_parents, **kwargs)

    async def _makedirs(self, path, exist_ok=False) -> None:
        return await self._call(self.sync_fs.makedirs, path, exist_ok=exist_ok)

    async def _rmdir(self, path) -> None:
        return await self._call(self.sync_fs.rmdir, path)

    async def _chmod(self, path, mode: int) -> None:
        return await self._call(self.sync_fs.chmod, path, mode)

    async def _chown(self, path, uid: int | None = None, gid: int | None = None) -> None:
        return await self._call(self.sync_fs.chown, path, uid=uid, gid=gid)

    async def _touch(self, path, truncate=True, **kwargs) -> None:
        return await self._call(self.sync_fs.touch, path, truncate=truncate, **kwargs)

    # ---- remove, move, copy -----------------------------------------------

    async def _rm_file(self, path, **kwargs) -> None:
        return await self._call(self.sync_fs.rm_file, path)

    async def _rm(self, path, recursive=False, batch_size=None, maxdepth=None, **kwargs) -> None:
        """Remove paths (globs allowed); recursive removes each tree in one server call."""
        return await self._call(self.sync_fs.rm, path, recursive=recursive, maxdepth=maxdepth)

    async def _mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs) -> None:
        """One atomic Meta.Rename for a single path; fsspec's copy+rm for globs and lists."""
        return await self._call(self.sync_fs.mv, path1, path2, recursive=recursive, maxdepth=maxdepth,
                                **kwargs)

    async def _mv_file(self, path1, path2) -> None:
        return await self._mv(path1, path2)

    async def _cp_file(self, path1, path2, **kwargs) -> None:
        """Server-side copy (Meta.CopyFile); a directory source makes the directory."""
        return await self._call(self.sync_fs.cp_file, path1, path2, **kwargs)

    # ---- bytes -------------------------------------------------------------

    async def _cat_file(self, path, start=None, end=None, **kwargs) -> bytes:
        """One Meta.Open (its reply carries a small file's inline bytes), then reads if needed;
        concurrent calls on one loop share one BatchStat for their opens (LoopCoalescer)."""
        opened = await self._coalescer("open").call(self._strip_protocol(path))
        if isinstance(opened, bytes):
            first, last = FireflyFileSystem._clamp(start, end, len(opened))
            return opened[first:last]
        first, last = FireflyFileSystem._clamp(start, end, opened.length)
        return await self._call(self.client.pread, opened, first, last - first)

    async def _cat(self, path, recursive=False, on_error="raise", batch_size=None, **kwargs):
        """Several files' bytes: one BatchStat and one batched read (FireflyFileSystem.cat)."""
        return await self._call(self.sync_fs.cat, path, recursive=recursive, on_error=on_error, **kwargs)

    async def _cat_ranges(self, paths, starts, ends, max_gap=None, batch_size=None, on_error="return",
                          **kwargs) -> list:
        """Many ranges: one Meta.BatchStat, then one batched read grouped per storage node;
        ``max_gap`` merges near ranges of one file (FireflyFileSystem.cat_ranges)."""
        return await self._call(self.sync_fs.cat_ranges, paths, starts, ends, max_gap=max_gap,
                                on_error=on_error, **kwargs)

    async def _pipe_file(self, path, value, mode="overwrite", **kwargs) -> None:
        """Create (parents too) or replace a whole file; a small one is one Meta.Create, and
        concurrent small ones on one loop share one BatchCreate (LoopCoalescer)."""
        if isinstance(value, (bytes, bytearray)) and 0 < len(value) <= limits.inline_data_bytes_max:
            return await self._coalescer("pipe").call((self._strip_protocol(path), bytes(value),
                                                       mode == "create"))
        return await self._call(self.sync_fs.pipe_file, path, value, mode=mode, **kwargs)

    async def _put_file(self, lpath, rpath, callback=DEFAULT_CALLBACK, mode="overwrite", **kwargs) -> None:
        return await self._call(self.sync_fs.put_file, lpath, rpath, callback=callback, mode=mode, **kwargs)

    async def _get_file(self, rpath, lpath, callback=DEFAULT_CALLBACK, **kwargs) -> None:
        return await self._call(self.sync_fs.get_file, rpath, lpath, callback=callback, **kwargs)

    async def _read_batch(self, requests, into=None):
        """USRBIO-style batched read (FireflyFileSystem.read_batch) into ``into`` or a new buffer."""
        return await self._call(self.sync_fs.read_batch, requests, into=into)

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        """A FireflyFile (sync): the sync face's buffered file."""
        return self.sync_fs._open(path, mode=mode, block_size=block_size, autocommit=autocommit,
                                  cache_options=cache_options, **kwargs)

    async def open_async(self, path, mode="rb", **kwargs) -> AsyncFireflyFile:
        """A file whose read, write, flush and close are coroutines (binary modes only)."""
        if "b" not in mode or kwargs.get("compression"):
            raise ValueError("open_async opens binary files without compression")
        file = await self._call(self.sync_fs.open, path, mode, **kwargs)
        return AsyncFireflyFile(self, file)

    # ---- sync helpers of the sync face, without an event loop ----------------

    def arrow_filesystem(self):
        """This filesystem as a ``pyarrow.fs.PyFileSystem`` (FireflyFileSystem.arrow_filesystem)."""
        return self.sync_fs.arrow_filesystem()

    def read_parquet(self, path, columns=None, filters=None, partitioning="hive", **kwargs):
        """A parquet file or dataset as a pyarrow Table (FireflyFileSystem.read_parquet)."""
        return self.sync_fs.read_parquet(path, columns=columns, filters=filters, partitioning=partitioning,
                                         **kwargs)

    # Sync methods for the coroutines fsspec does not mirror itself (its list stops at its own names).
    infos = sync_wrapper(_infos)
    modified = sync_wrapper(_modified)
    created = sync_wrapper(_created)
    ukey = sync_wrapper(_ukey)
    checksum = sync_wrapper(_checksum)
    rmdir = sync_wrapper(_rmdir)
    chmod = sync_wrapper(_chmod)
    chown = sync_wrapper(_chown)
    touch = sync_wrapper(_touch)
    mv = sync_wrapper(_mv)
    read_batch = sync_wrapper(_read_batch)
