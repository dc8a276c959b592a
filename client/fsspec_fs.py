"""FireflyFileSystem: FireflyFS as an fsspec filesystem (``ffs://host:port/a/b``).

A sync ``AbstractFileSystem`` over one FfsClient: each fsspec primitive is one
or a few client calls, and errors are the built-ins the client raises
(FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
OSError ENOTEMPTY, ValueError for an invalid path).

Choices that differ from fsspec's defaults, and why:
- The listing cache is off (``use_listings_cache=False``): FireflyFS is
  strongly consistent and ``info``/``open`` always stat, so a stale listing
  never hides a write (s3fs#424, #851).
- Server-side work where fsspec would loop: ``rm(recursive=True)`` is one
  Meta.Remove, ``mv`` one atomic Meta.Rename, ``cp_file`` Meta.CopyFile,
  ``find`` a paged Meta.Find, ``cat_ranges`` one BatchStat plus one batched
  read (``read_batch``) grouped per storage node, ranges within ``max_gap``
  merged.
- Read caching suits training (``SequentialReadaheadCache``, the default
  ``cache_type="ffs-adaptive"``): random reads fetch exactly what they ask
  for, sequential small reads get a readahead window growing to one chunk,
  reads of a chunk or more bypass the cache. ``block_size`` defaults to the
  chunk size (4 MiB).
- Small files are one metadata call: ``pipe_file`` of at most
  ``limits.inline_data_bytes_max`` (16 KiB) stores the bytes in the metadata
  service (meta_service/inline.py) and ``cat_file``/``cat_ranges`` get them
  back in the Open/BatchStat reply; ``touch`` is one Meta.Create.
- ``info`` is one Meta.Stat; concurrent calls from threads share RPCs
  (client/meta_client.py ``Coalescer``).
- pyarrow: ``arrow_filesystem()`` gives a ``pyarrow.fs.PyFileSystem`` whose
  input files know their size and read column chunks without readahead.
- Writes create missing parent directories, as the fsspec abstract tests and
  object stores expect.
- Safe after ``os.fork()`` and picklable: connections live per process in the
  client, and the instance pickles as its storage options (host, port).
- Sync and threaded, with no event loop: ``asynchronous=True`` (or ``loop=``)
  constructs the asyncio face instead, an fsspec AsyncFileSystem whose
  coroutines run this class's calls on threads (client/fsspec_async.py).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import posixpath
import re
import stat as stat_module
from urllib.parse import urlsplit

from fsspec.caching import BaseCache, register_cache
from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from fireflyfs.common import limits
from fireflyfs.common import paths as ffs_paths
from fireflyfs.common.errors import error_from_name
from fireflyfs.common.primary_follower import split_addresses
from fireflyfs.proto import meta_pb2, types_pb2
from .client import FfsClient, FileHandle
from .meta_client import UMASK_DEFAULT
from .fsspec_file import FireflyFile

_PROTOCOLS = ("ffs", "3fs")
_REPEATED_SLASHES = re.compile("/{2,}")
_MAGIC = re.compile("[*?\\[]")

address_env = "FFS_ADDRESS"   # host:port used when no port is given


def _has_magic(path: str) -> bool:
    return _MAGIC.search(path) is not None


def _datetime_from_ns(value_ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value_ns / 1e9, tz=datetime.timezone.utc)


class SequentialReadaheadCache(BaseCache):
    """FireflyFS's default read cache (``cache_type="ffs-adaptive"``): readahead only for sequential reads.

    Why: training reads are mostly random (samples, parquet column chunks and
    footers), where fsspec's default ``readahead`` fetches a whole block after
    every read and throws most of it away (dask#8132); but a scan in small
    reads (lines, records, ``read(64 KiB)`` loops) wants readahead. So, as the
    Linux page cache does:

    - a read fetches exactly the bytes asked for until reads turn sequential;
    - after ``sequential_reads_min`` reads in a row that each start where the
      previous ended (or at most ``forward_gap_max_bytes`` past it), a miss
      fetches a window of ``readahead_min_bytes``, which doubles on each
      further sequential miss up to ``blocksize`` (one chunk, 4 MiB by
      default); one read that jumps back or further ahead resets it;
    - a read of ``blocksize`` or more goes straight to the file (no copy
      through the cache), so large ``read``/``readinto`` calls stream as is.

    The last fetched window is kept, so re-reading a range (a footer read
    twice) costs nothing.

    Small forward skips count as sequential because formats skip them while
    scanning: ``torch.load`` of a ``torch.save`` file reads each record's
    30-byte zip header, then its data some tens of bytes on (name, alignment
    padding). Read exactly, that was one storage round trip per read: a
    256 MiB state dict of 1,943 tensors loaded through ``fsspec.open`` at
    132-162 MiB/s; with the skips tolerated, 320 (TLS) and 610 (--insecure)
    MiB/s (``bench/checkpoint_throughput.py``, ``ffs_torch_load_fsspec``).

    Measured on the 2-core VM (64 MiB file, 3 storage nodes, R=1, a busy
    machine): sequential ``read(4 KiB)`` 539 MiB/s (fsspec "readahead" 598,
    "none" 204); sequential ``read(64 KiB)`` 925 (952, 789); random 4 KiB
    ``seek``+``read`` 4,600/s fetching exactly 12 MiB for 3,000 reads ("none"
    5,500/s, the same bytes; "readahead" 271/s, fetching 11 GB). ``cache_options={"readahead_min_bytes": ...,
    "sequential_reads_min": ...}`` tune it; ``cache_type="none"`` turns every
    cache off and ``"readahead"`` restores fsspec's.
    """

    name = "ffs-adaptive"

    def __init__(self, blocksize: int, fetcher, size: int, readahead_min_bytes: int = 256 * 1024,
                 sequential_reads_min: int = 2, forward_gap_max_bytes: int = 4096) -> None:
        super().__init__(blocksize, fetcher, size)
        self.readahead_min_bytes = max(1, min(readahead_min_bytes, blocksize))
        self.sequential_reads_min = sequential_reads_min
        self.forward_gap_max_bytes = max(0, forward_gap_max_bytes)
        self.cache = b""
        self.start = self.end = 0
        self._next_start: int | None = None
        self._streak = 0
        self._window = self.readahead_min_bytes

    def _fetch(self, start: int | None, end: int | None) -> bytes:
        start = 0 if start is None else start
        end = self.size if end is None or end > self.size else end
        if start >= self.size or start >= end:
            return b""
        self._fetch_order(start, end)
        if self.start <= start and end <= self.end:
            self.hit_count += 1
            return self.cache[start - self.start:end - self.start]
        self.miss_count += 1
        if end - start >= self.blocksize:
            self.total_requested_bytes += end - start
            return self.fetcher(start, end)
        part = b""
        if self.start <= start < self.end:   # the head of the read is cached
            part = self.cache[start - self.start:]
            start = self.end
        fetch_end = end
        if self._streak >= self.sequential_reads_min:
            fetch_end = min(self.size, max(end, start + self._window))
            self._window = min(self._window * 2, self.blocksize)
        self.total_requested_bytes += fetch_end - start
        self.cache = self.fetcher(start, fetch_end)
        self.start, self.end = start, start + len(self.cache)
        return part + self.cache[:end - start]

    def read_past(self, start: int, end: int) -> None:
        """A read of [start, end) went around the cache (a large one, straight to storage):
        it continues the scan like a cached one, so the next small read keeps the window."""
        self._fetch_order(start, end)

    def _fetch_order(self, start: int, end: int) -> None:
        if self._next_start is not None and 0 <= start - self._next_start <= self.forward_gap_max_bytes:
            self._streak += 1
        else:
            self._streak = 0
            self._window = self.readahead_min_bytes
        self._next_start = end


register_cache(SequentialReadaheadCache, clobber=True)


def coalesce_ranges(wanted: list[tuple[int, FileHandle, int, int]], max_gap: int | None
                    ) -> tuple[list[tuple[FileHandle, int, int]], list[tuple[int, int, int, int]]]:
    """Merge (slot, handle, start, end) ranges of one file that overlap or lie within max_gap.

    Returns the reads to issue, (handle, offset, length), and per slot where
    its bytes are: (slot, read index, offset in that read, length). With
    max_gap None every range is its own read (empty ones included).
    """
    if max_gap is None:
        return ([(handle, start, end - start) for _slot, handle, start, end in wanted],
                [(slot, index, 0, end - start) for index, (slot, _h, start, end) in enumerate(wanted)])
    if max_gap < 0:
        raise ValueError("max_gap must not be negative")
    order = sorted(range(len(wanted)), key=lambda i: (wanted[i][1].inode_id, wanted[i][2], wanted[i][3]))
    reads: list[list] = []   # [handle, start, end]
    pieces = []
    for i in order:
        slot, handle, start, end = wanted[i]
        last = reads[-1] if reads else None
        if (last is not None and last[0].inode_id == handle.inode_id and start - last[2] <= max_gap):
            last[2] = max(last[2], end)
        else:
            reads.append([handle, start, end])
        read_start = reads[-1][1]
        pieces.append((slot, len(reads) - 1, start - read_start, end - start))
    return [(handle, start, end - start) for handle, start, end in reads], pieces


class FireflyFileSystem(AbstractFileSystem):
    """fsspec filesystem over a FireflyFS cluster whose metadata service is host:port.

    Several meta servers (etcd engine): ``ffs://h1:p1,h2:p2/path``, ``addresses="h1:p1,h2:p2"``
    or FFS_ADDRESS of that form; the client spreads calls over them and learns the others
    from the routing info (client/meta_servers.py).

    token: the user's token (``ffs admin user add`` prints one); default FFS_TOKEN, else the
    token file FFS_TOKEN_FILE (default ~/.config/fireflyfs/token), which must be mode 0600.
    umask: cleared from the modes of new files (0o666) and directories (0o777); default 0o022.
    tls_ca: the cluster CA's certificate (default FFS_TLS_CA; ``ffs cluster up`` writes DIR/tls/ca.pem).
    One CA per process: every cluster a process talks to shares it.
    Permissions are POSIX's, checked by meta for the token's user: PermissionError when denied.
    """

    protocol = _PROTOCOLS
    root_marker = "/"
    sep = "/"
    blocksize = FireflyFile.DEFAULT_BLOCK_SIZE
    default_cache_type = SequentialReadaheadCache.name

    def __new__(cls, *args, **kwargs):
        """``asynchronous=True`` or ``loop=``: the asyncio face (client/fsspec_async.py), an fsspec
        AsyncFileSystem as s3fs is; otherwise this threaded class, which never touches a loop."""
        if cls is FireflyFileSystem and (kwargs.get("asynchronous") or kwargs.get("loop") is not None):
            from .fsspec_async import AsyncFireflyFileSystem
            # fsspec's instance cache is FireflyFileSystem's (the caller's class), not a second one.
            return AsyncFireflyFileSystem(*args, skip_instance_cache=True, **kwargs)
        return super().__new__(cls)

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, addresses: str | None = None,
                 token: str | None = None, umask: int = UMASK_DEFAULT, tls_ca: str | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("use_listings_cache", False)
        super().__init__(host=host, port=port, addresses=addresses, token=token, umask=umask, tls_ca=tls_ca,
                         **kwargs)
        if addresses is None and port is None:
            addresses = os.environ.get(address_env, "")
            if not addresses:
                raise ValueError("no port: use ffs://host:port/path, "
                                 f"FireflyFileSystem(host, port) or set {address_env}")
        if addresses is None:
            addresses = f"{host}:{int(port)}"
        if not isinstance(addresses, str):
            addresses = ",".join(addresses)
        self.addresses = ",".join(split_addresses(addresses))
        first_host, _, first_port = self.addresses.split(",")[0].rpartition(":")
        self.host = first_host
        self.port = int(first_port)
        self.client = FfsClient(self.addresses, token=token, umask=umask, tls_ca=tls_ca)

    @property
    def fsid(self) -> str:
        return f"ffs_{self.addresses}"

    # ---- paths ----------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path):
        """ffs://host:port/a/b/ (or a/b, /a//b) -> canonical /a/b."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for protocol in _PROTOCOLS:
            if path.startswith(protocol + "://"):
                rest = path[len(protocol) + 3:]
                slash = rest.find("/")
                path = rest[slash:] if slash >= 0 else "/"
                break
            if path.startswith(protocol + "::"):
                path = path[len(protocol) + 2:]
                break
        return ffs_paths.canonical_path(_REPEATED_SLASHES.sub("/", path))

    @staticmethod
    def _get_kwargs_from_urls(path):
        for protocol in _PROTOCOLS:
            if path.startswith(protocol + "://"):
                parts = urlsplit(path)
                if "," in parts.netloc:           # several meta servers
                    return {"addresses": parts.netloc}
                out = {}
                if parts.hostname:
                    out["host"] = parts.hostname
                if parts.port:
                    out["port"] = parts.port
                return out
        return {}

    def unstrip_protocol(self, name: str) -> str:
        for protocol in _PROTOCOLS:
            if name.startswith(protocol + "://"):
                return name
        return f"{_PROTOCOLS[0]}://{self.addresses}{self._strip_protocol(name)}"

    # ---- metadata -------------------------------------------------------

    def _inode_info(self, path: str, inode: types_pb2.Inode, size: int | None = None) -> dict:
        """The info dict of one inode (the shape ls, find and info all return)."""
        if inode.type == types_pb2.INODE_DIRECTORY:
            kind, type_bits = "directory", stat_module.S_IFDIR
        elif inode.type == types_pb2.INODE_FILE:
            kind, type_bits = "file", stat_module.S_IFREG
        else:
            kind, type_bits = "other", stat_module.S_IFLNK
        info = {
            "name": path,
            "size": (inode.length if size is None else size) if kind == "file" else 0,
            "type": kind,
            "mtime": inode.mtime_ns / 1e9,
            "created": inode.crtime_ns / 1e9,
            "mode": type_bits | inode.mode,
            "uid": inode.uid,
            "gid": inode.gid,
            "ino": inode.id,
            "nlink": inode.nlink,
        }
        if kind == "file" or (kind == "directory" and inode.layout.chunk_size):
            # A directory's layout is the default of the files later created in it.
            info["chunk_size"] = inode.layout.chunk_size
            info["stripe_size"] = inode.layout.stripe_size
            info["chain_table"] = inode.layout.chain_table_id
        if inode.type == types_pb2.INODE_SYMLINK:
            info["islink"] = True
            info["destination"] = inode.symlink_target
        return info

    def info(self, path, **kwargs) -> dict:
        """One Meta.Stat (following symlinks); exact size even while a writer is active."""
        path = self._strip_protocol(path)
        inode = self.client.stat(path)
        return self._inode_info(path, inode, self.client.current_length(inode))

    def infos(self, paths: list[str]) -> list[dict | None]:
        """info() of many paths in one Meta.BatchStat per 10,000; None for a missing path."""
        out: list[dict | None] = []
        for result in self.infos_or_errors(paths):
            if isinstance(result, FileNotFoundError):
                out.append(None)
            elif isinstance(result, Exception):
                raise result
            else:
                out.append(result)
        return out

    def infos_or_errors(self, paths: list[str]) -> "list[dict | Exception]":
        """Per path, info() or the error it would raise: one Meta.BatchStat per 10,000 paths."""
        names = [self._strip_protocol(p) for p in paths]
        out: list = []
        for start in range(0, len(names), limits.batch_stat_paths_max):
            part = names[start:start + limits.batch_stat_paths_max]
            for name, result in zip(part, self.client.meta.batch_stat(part, attrs_only=True).results):
                try:
                    if result.error:
                        raise error_from_name(result.error, result.message)
                    size = (self.client.current_length(result.inode) if result.inode.open_write_sessions
                            else None)
                    out.append(self._inode_info(name, result.inode, size))
                except Exception as exc:  # noqa: BLE001 - returned in its slot
                    out.append(exc)
        return out

    def sizes(self, paths) -> list[int]:
        """Sizes of many files: one Meta.BatchStat (fsspec's default stats each path)."""
        infos = self.infos(list(paths))
        for path, info in zip(paths, infos):
            if info is None:
                raise FileNotFoundError(path)
        return [info["size"] for info in infos]

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        infos = None
        if not kwargs.get("refresh", False):
            try:
                infos = self._ls_from_cache(path)
            except FileNotFoundError:
                infos = None
        if infos is None:
            try:
                entries = self.client.listdir(path, with_attrs=True)
            except NotADirectoryError:
                infos = [self.info(path)]
            else:
                infos = [self._inode_info(ffs_paths.join(path, entry.name), entry.inode)
                         for entry in entries]
                self.dircache[path] = infos
        return infos if detail else [info["name"] for info in infos]

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        """Every file (and directory, with withdirs) below path: one paged Meta.Find."""
        path = self._strip_protocol(path)
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        out: dict[str, dict] = {}
        try:
            for entry in self.client.find(path, maxdepth or 0, withdirs):
                # A file path finds itself; a directory's walk never includes it.
                name = ffs_paths.canonical_path(entry.path)
                out[name] = self._inode_info(name, entry.inode)
            if withdirs and path not in out:
                out[path] = self.info(path)
        except (FileNotFoundError, NotADirectoryError):
            pass   # as fsspec's walk-based find: a missing path finds nothing
        if path in out and not withdirs and out[path]["type"] == "directory":
            del out[path]
        names = sorted(out)
        return {name: out[name] for name in names} if detail else names

    def modified(self, path) -> datetime.datetime:
        return _datetime_from_ns(self.client.stat(self._strip_protocol(path)).mtime_ns)

    def created(self, path) -> datetime.datetime:
        return _datetime_from_ns(self.client.stat(self._strip_protocol(path)).crtime_ns)

    def ukey(self, path) -> str:
        """Changes whenever the file's content may have (inode, size, mtime, truncations)."""
        inode = self.client.stat(self._strip_protocol(path))
        key = f"{inode.id}:{inode.type}:{inode.length}:{inode.mtime_ns}:{inode.truncate_version}"
        return hashlib.sha256(key.encode()).hexdigest()

    def checksum(self, path) -> int:
        return int(self.ukey(path)[:32], 16)

    def invalidate_cache(self, path=None) -> None:
        if path is None:
            self.dircache.clear()
        elif not self.dircache.use_listings_cache:
            pass    # the default: nothing is ever cached, so nothing to find (saves a path parse per write)
        else:
            path = self._strip_protocol(path)
            self.dircache.pop(path, None)
            self.dircache.pop(self._parent(path), None)
        super().invalidate_cache(path)

    # ---- directories ----------------------------------------------------

    def mkdir(self, path, create_parents=True, **kwargs) -> None:
        """Make a directory (FileExistsError if present).

        chunk_size=, stripe_size=, chain_table_id= set the default layout of
        the files later created in it.
        """
        path = self._strip_protocol(path)
        layout = {key: kwargs[key] for key in ("chunk_size", "stripe_size", "chain_table_id")
                  if key in kwargs}
        self.client.mkdir(path, parents=create_parents, exist_ok=False, **layout)
        self.invalidate_cache(path)

    def chmod(self, path, mode: int) -> None:
        """Set path's permission bits (as LocalFileSystem.chmod): its owner or an admin."""
        path = self._strip_protocol(path)
        self.client.setattr(path, mode=mode & 0o7777)
        self.invalidate_cache(path)

    def chown(self, path, uid: int | None = None, gid: int | None = None) -> None:
        """Set path's owner (admins) or group (its owner, to one of the owner's groups), as os.chown."""
        path = self._strip_protocol(path)
        attrs = {key: value for key, value in (("uid", uid), ("gid", gid)) if value is not None and value >= 0}
        if attrs:
            self.client.setattr(path, **attrs)
        self.invalidate_cache(path)

    def makedirs(self, path, exist_ok=False) -> None:
        path = self._strip_protocol(path)
        self.client.mkdir(path, parents=True, exist_ok=exist_ok)
        self.invalidate_cache(path)

    def rmdir(self, path) -> None:
        path = self._strip_protocol(path)
        self.client.remove(path, directory_only=True)
        self.invalidate_cache(path)

    # ---- remove, move, copy ---------------------------------------------

    def rm_file(self, path) -> None:
        path = self._strip_protocol(path)
        self.client.remove(path)
        self.invalidate_cache(path)

    _rm = rm_file

    def rm(self, path, recursive=False, maxdepth=None) -> None:
        """Remove paths (globs allowed); recursive removes each tree in one server call."""
        if maxdepth is not None:
            return super().rm(path, recursive=recursive, maxdepth=maxdepth)
        if isinstance(path, (str, os.PathLike)) and not _has_magic(stringify_path(path)):
            targets = [self._strip_protocol(path)]
        else:
            targets = self.expand_path(path, recursive=False)
        removed: list[str] = []
        for target in sorted(targets):
            if any(ffs_paths.is_ancestor(done, target) for done in removed):
                continue   # already gone with its removed ancestor
            self.client.remove(target, recursive=recursive)
            self.invalidate_cache(target)
            removed.append(target)
        return None

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs) -> None:
        """One atomic Meta.Rename for a single path; fsspec's copy+rm for globs and lists."""
        simple = (isinstance(path1, str) and isinstance(path2, str) and not _has_magic(path1)
                  and maxdepth is None)
        if not simple:
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        if src == dst:
            return None
        into_dir = path2.endswith("/")
        if into_dir:
            self.makedirs(dst, exist_ok=True)
        if into_dir or self.isdir(dst):
            dst = ffs_paths.join(dst, posixpath.basename(src))
        self.client.rename(src, dst)
        self.invalidate_cache(src)
        self.invalidate_cache(dst)
        return None

    def cp_file(self, path1, path2, **kwargs) -> None:
        """Server-side copy (Meta.CopyFile); a directory source makes the directory."""
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        try:
            self.client.copy(src, dst, parents=True)
        except IsADirectoryError:
            if not self.isdir(src):
                raise
            self.makedirs(dst, exist_ok=True)
        self.invalidate_cache(dst)

    # ---- bytes ----------------------------------------------------------

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None,
              **kwargs) -> FireflyFile:
        """A buffered file. Reading: ``cache_type`` defaults to "ffs-adaptive" (no readahead for
        random reads, a growing readahead window once reads are sequential, large reads bypass
        the cache; see SequentialReadaheadCache) and ``block_size`` to the chunk size (4 MiB), the
        largest readahead window. Writing: the buffer is flushed on chunk boundaries."""
        cache_type = kwargs.pop("cache_type", self.default_cache_type)
        return FireflyFile(self, self._strip_protocol(path), mode, block_size or "default",
                           autocommit, cache_type=cache_type, cache_options=cache_options,
                           **kwargs)

    @staticmethod
    def _clamp(start, end, size: int) -> tuple[int, int]:
        """Python-slice semantics for (start, end) over a file of size bytes."""
        start = 0 if start is None else (max(0, size + start) if start < 0 else start)
        end = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        return start, max(start, end)

    def _opened(self, reply: meta_pb2.OpenReply, path: str) -> "FileHandle | bytes":
        """What a read needs from an Open/BatchStat reply: an inline file's bytes, else a handle."""
        if reply.inline_data:
            return reply.inline_data
        return self.client._handle(reply, path)

    def cat(self, path, recursive=False, on_error="raise", **kwargs):
        """Several files' bytes: one ``cat_ranges`` (one BatchStat, one batched read), not one
        open and read per file as fsspec's default does. One plain path: ``cat_file``."""
        paths = self.expand_path(path, recursive=recursive)
        if not (len(paths) > 1 or isinstance(path, list) or paths[0] != self._strip_protocol(path)):
            return self.cat_file(paths[0], **kwargs)
        infos = self.infos(paths)
        files = [p for p, info in zip(paths, infos) if info is None or info["type"] != "directory"]
        out = {}
        for name, data in zip(files, self.cat_ranges(files, [None] * len(files), [None] * len(files),
                                                     on_error="return")):
            if isinstance(data, Exception):
                if on_error == "raise":
                    raise data
                if on_error == "omit":
                    continue
            out[name] = data
        return out

    def cat_file(self, path, start=None, end=None, **kwargs) -> bytes:
        """One Meta.Open (its reply carries a small file's inline bytes), then reads if needed."""
        path = self._strip_protocol(path)
        opened = self._opened(self.client.meta.open(path, inline_ok=True), path)
        if isinstance(opened, bytes):
            first, last = self._clamp(start, end, len(opened))
            return opened[first:last]
        first, last = self._clamp(start, end, opened.length)
        return self.client.pread(opened, first, last - first)

    def open_for_reads(self, paths: list[str]) -> "list[FileHandle | bytes | Exception]":
        """Per path (one Meta.BatchStat): a read handle, an inline file's bytes, or its error."""
        names = [self._strip_protocol(p) for p in paths]
        if not names:
            return []
        out: list = []
        for start in range(0, len(names), limits.batch_stat_paths_max):
            part = names[start:start + limits.batch_stat_paths_max]
            for name, result in zip(part, self.client.meta.batch_stat(part, inline_ok=True).results):
                try:
                    if result.error:
                        raise error_from_name(result.error, result.message)
                    out.append(self._opened(meta_pb2.OpenReply(
                        inode=result.inode, path=name, inline_data=result.inline_data,
                        capability=result.capability), name))
                except Exception as exc:  # noqa: BLE001 - returned in its slot
                    out.append(exc)
        return out

    def cat_ranges(self, paths, starts, ends, max_gap=None, on_error="return", **kwargs):
        """Many ranges: one Meta.BatchStat for the distinct paths (inline files answer from its
        reply), then one batched read of every other range, grouped per storage node.

        max_gap: ranges of one file whose gap is at most max_gap bytes are read
        as one range and cut apart here (fewer, larger reads); None reads each
        range as asked. Ranges follow Python slicing (negative = from the end).
        """
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        if not isinstance(starts, list):
            starts = [starts] * len(paths)
        if not isinstance(ends, list):
            ends = [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        stripped: dict = {}   # ranges of one file repeat its path: canonicalize each string once
        names = [stripped[p] if p in stripped else stripped.setdefault(p, self._strip_protocol(p))
                 for p in paths]
        unique = list(dict.fromkeys(names))
        opened = dict(zip(unique, self.open_for_reads(unique)))
        out: list = [None] * len(names)
        wanted: list[tuple[int, FileHandle, int, int]] = []   # (slot, handle, start, end)
        for slot, (name, start, end) in enumerate(zip(names, starts, ends)):
            target = opened[name]
            if isinstance(target, Exception):
                if on_error != "return":
                    raise target
                out[slot] = target
            elif isinstance(target, bytes):
                first, last = self._clamp(start, end, len(target))
                out[slot] = target[first:last]
            else:
                first, last = self._clamp(start, end, target.length)
                wanted.append((slot, target, first, last))
        if not wanted:
            return out
        reads, pieces = coalesce_ranges(wanted, max_gap)
        try:
            results = self._read_ranges(reads)
        except Exception as exc:
            if on_error != "return":
                raise
            for slot, *_ in wanted:
                out[slot] = exc
            return out
        for slot, read_index, offset, length in pieces:
            result = results[read_index]
            if isinstance(result, Exception):
                if on_error != "return":
                    raise result
                out[slot] = result
            else:
                out[slot] = bytes(result[offset:offset + length])
        return out

    def _read_ranges(self, reads: list[tuple[FileHandle, int, int]]) -> list:
        """Bytes (a memoryview or bytes) or an exception per (handle, offset, length): one
        read_batch into one buffer when the client has it, else pread_many."""
        read_batch = getattr(self.client, "read_batch", None)
        if read_batch is None:
            return self.client.pread_many(reads)
        batch = read_batch(reads)
        return [batch.errors[i] if batch.errors[i] is not None else batch.view(i)
                for i in range(len(reads))]

    def read_batch(self, requests, into=None):
        """USRBIO-style batched read (``FfsClient.read_batch``): (path or handle, offset, length)
        requests land packed in request order in ``into`` (bytearray, memoryview, numpy array,
        torch CPU tensor; None allocates); per-request byte counts and errors in the result."""
        requests = [(self._strip_protocol(target) if isinstance(target, str) else target, offset, length)
                    for target, offset, length in requests]
        return self.client.read_batch(requests, into=into)

    # ---- pyarrow ----------------------------------------------------------

    def arrow_filesystem(self):
        """This filesystem as a ``pyarrow.fs.PyFileSystem`` (client/arrow_fs.py: one BatchStat for
        many file infos, opens without an isfile probe, column reads without readahead)."""
        import pyarrow.fs

        from .arrow_fs import FireflyArrowHandler
        return pyarrow.fs.PyFileSystem(FireflyArrowHandler(self))

    def read_parquet(self, path, columns=None, filters=None, partitioning="hive", **kwargs):
        """A parquet file or dataset as a pyarrow Table with two batched range reads (footers,
        then the selected column chunks); see client/arrow_fs.py."""
        from .arrow_fs import read_parquet
        return read_parquet(self, path, columns=columns, filters=filters, partitioning=partitioning,
                            **kwargs)

    def pipe_file(self, path, value, mode="overwrite", **kwargs) -> None:
        """Create (parents too) or replace a whole file; mode="create" refuses to replace.

        A file of at most ``limits.inline_data_bytes_max`` bytes is one
        Meta.Create that stores the bytes in the metadata service
        (meta_service/inline.py): one round trip, as durable as any metadata
        commit. Larger files (or an existing file with other links or open
        writers) go through storage: create, chunk writes, close.
        """
        path = self._strip_protocol(path)
        data = bytes(value)
        exclusive = mode == "create"
        if 0 < len(data) <= limits.inline_data_bytes_max:
            if self.client.meta.create_inline(path, data, exclusive=exclusive, parents=True).inline:
                self.invalidate_cache(path)
                return
        self.client.write_file(path, data, exclusive=exclusive)
        self.invalidate_cache(path)

    def pipe_small_files(self, files: list[tuple[str, bytes, bool]]) -> list:
        """pipe_file of many small files at once: (path, bytes, exclusive) each, every one of 1 to
        ``limits.inline_data_bytes_max`` bytes. One Meta.BatchCreate stores them inline; a file
        meta cannot take inline (other links, open writers) then goes through storage, as in
        pipe_file. Per file: None, or the error its pipe_file would raise."""
        for _path, data, _exclusive in files:
            if not 0 < len(data) <= limits.inline_data_bytes_max:
                raise ValueError(f"a small file has 1 to {limits.inline_data_bytes_max} bytes, not {len(data)}")
        names = [self._strip_protocol(path) for path, _data, _exclusive in files]
        replies = self.client.meta.create_many([
            meta_pb2.CreateRequest(path=name, inline_data=data, inline=True, exclusive=exclusive, truncate=True,
                                   parents=True)
            for name, (_path, data, exclusive) in zip(names, files)])
        out: list = []
        for name, (_path, data, exclusive), reply in zip(names, files, replies):
            try:
                if isinstance(reply, Exception):
                    raise reply
                if not reply.inline:
                    self.client.write_file(name, data, exclusive=exclusive)
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - returned in its slot
                out.append(exc)
            self.invalidate_cache(name)
        return out

    def touch(self, path, truncate=True, **kwargs) -> None:
        """Create an empty file or empty an existing one: one Meta.Create (no write session).
        truncate=False only sets the mtime of an existing file."""
        path = self._strip_protocol(path)
        if not truncate:
            try:
                self.client.touch(path)
                return
            except FileNotFoundError:
                pass
        self.client.meta.create(meta_pb2.CreateRequest(path=path, truncate=True, parents=True))
        self.invalidate_cache(path)
