"""pyarrow on FireflyFS: a filesystem handler without hidden round trips, and batched parquet reads.

Two ways in, both from ``FireflyFileSystem``:

- ``fs.arrow_filesystem()``: a ``pyarrow.fs.PyFileSystem`` over
  ``FireflyArrowHandler``, for any pyarrow API that takes ``filesystem=``. It
  differs from pyarrow's generic ``FSSpecHandler`` where that one costs round
  trips: ``get_file_info`` of many paths is one Meta.BatchStat (not one stat
  each), ``open_input_file`` skips the ``isfile`` probe (the open itself is the
  stat and knows the size) and reads with the default cache, which fetches
  exactly what Arrow asks for (no readahead on column chunks). Arrow's own
  pre-buffering merges neighbouring column chunks, so a read costs about one
  storage round trip per row group, not per column chunk.
- ``fs.read_parquet(path, columns=, filters=)``: the batched path. The
  footers of every file are fetched with one ``cat_ranges``, the column chunks
  the selection needs with a second one (``fsspec.parquet``'s byte-range
  planning: neighbours within ``max_gap`` merged), and Arrow then decodes from
  memory (``PrefetchedHandler``). A dataset read is a Find, a BatchStat and two
  batched reads however many files, row groups and columns it has. A read
  Arrow makes outside the prefetched parts (it should not) is fetched from
  storage, never zero-filled.
"""

from __future__ import annotations

import bisect
import io
import threading
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow
import pyarrow.fs as pafs

if TYPE_CHECKING:   # pragma: no cover
    from .fsspec_fs import FireflyFileSystem


def _file_info(path: str, info: dict | None) -> pafs.FileInfo:
    if info is None:
        return pafs.FileInfo(path, pafs.FileType.NotFound)
    if info["type"] == "directory":
        return pafs.FileInfo(path, pafs.FileType.Directory, mtime=info.get("mtime"))
    kind = pafs.FileType.File if info["type"] == "file" else pafs.FileType.Unknown
    return pafs.FileInfo(path, kind, size=info["size"], mtime=info.get("mtime"))


class FireflyArrowHandler(pafs.FSSpecHandler):
    """pyarrow.fs handler over a FireflyFileSystem (type name "ffs"); see the module docstring."""

    def __init__(self, fs: "FireflyFileSystem") -> None:
        super().__init__(fs)

    def get_type_name(self) -> str:
        return "ffs"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: Sequence[str]) -> list[pafs.FileInfo]:
        return [_file_info(path, info) for path, info in zip(paths, self.fs.infos(list(paths)))]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        base = self.fs._strip_protocol(selector.base_dir)
        try:
            found = self.fs.client.find(base, 0 if selector.recursive else 1, withdirs=True)
            infos = [_file_info(entry.path, self.fs._inode_info(entry.path, entry.inode))
                     for entry in found]
        except FileNotFoundError:
            if selector.allow_not_found:
                return []
            raise
        if len(infos) == 1 and infos[0].path == base and infos[0].type != pafs.FileType.Directory:
            raise NotADirectoryError(selector.base_dir)
        return [info for info in infos if info.path != base]

    def open_input_file(self, path: str) -> pyarrow.PythonFile:
        return pyarrow.PythonFile(self.fs.open(path, mode="rb"), mode="r")

    def open_input_stream(self, path: str) -> pyarrow.PythonFile:
        return pyarrow.PythonFile(self.fs.open(path, mode="rb"), mode="r")


class PrefetchedFile(io.RawIOBase):
    """A read-only file served from known byte ranges; anything else is read from storage."""

    def __init__(self, fs: "FireflyFileSystem", path: str, size: int,
                 parts: dict[tuple[int, int], bytes]) -> None:
        super().__init__()
        self._fs, self._path, self._size = fs, path, size
        self._starts: list[int] = []
        self._parts: list[tuple[int, bytes]] = []
        for (start, _end), data in sorted(parts.items()):
            self._starts.append(start)
            self._parts.append((start, data))
        self._position = 0
        self.fallback_reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        if start >= end:
            return b""
        self._position = end
        index = bisect.bisect_right(self._starts, start) - 1
        if index >= 0:
            part_start, data = self._parts[index]
            if end <= part_start + len(data):
                return data[start - part_start:end - part_start]
        self.fallback_reads += 1
        return self._fs.cat_file(self._path, start, end)

    def readinto(self, buffer) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)


class PrefetchedHandler(FireflyArrowHandler):
    """FireflyArrowHandler whose input files for some paths come from prefetched byte ranges."""

    def __init__(self, fs: "FireflyFileSystem", prefetched: dict[str, tuple[int, dict]]) -> None:
        super().__init__(fs)
        self.prefetched = prefetched      # path -> (size, {(start, end): bytes})
        self.files: list[PrefetchedFile] = []
        self._lock = threading.Lock()

    def _open(self, path: str) -> pyarrow.PythonFile:
        known = self.prefetched.get(self.fs._strip_protocol(path))
        if known is None:
            return super().open_input_file(path)
        file = PrefetchedFile(self.fs, self.fs._strip_protocol(path), known[0], known[1])
        with self._lock:
            self.files.append(file)
        return pyarrow.PythonFile(file, mode="r")

    def open_input_file(self, path: str) -> pyarrow.PythonFile:
        return self._open(path)

    def open_input_stream(self, path: str) -> pyarrow.PythonFile:
        return self._open(path)


def read_parquet(fs: "FireflyFileSystem", path: str | list[str], columns: list[str] | None = None,
                 filters: Any = None, partitioning: str | None = "hive", max_gap: int = 64_000,
                 footer_sample_size: int = 1 << 20) -> pyarrow.Table:
    """A parquet file or dataset (directory of *.parquet / *.parq, hive partitions) as one Table,
    fetched with two batched range reads (module docstring). filters: a pyarrow expression or
    DNF list as pyarrow.parquet takes; row groups are pruned by it on decode."""
    import fsspec.parquet
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    paths, base = _parquet_paths(fs, path)
    if not paths:
        raise FileNotFoundError(f"no parquet files at {path}")
    # columns=None: whole files (fsspec then uses one fs.cat -> one cat_ranges). Each file's parts
    # end with its footer, so the file's size is where the last part ends.
    files = fsspec.parquet.open_parquet_files(paths, fs=fs, columns=columns, engine="pyarrow",
                                              max_gap=max_gap, footer_sample_size=footer_sample_size)
    prefetched = {}
    for file in files:
        parts = dict(file.cache.data)
        prefetched[fs._strip_protocol(file.path)] = (max(end for _start, end in parts), parts)
    handler = PrefetchedHandler(fs, prefetched)
    dataset = ds.dataset(paths, filesystem=pafs.PyFileSystem(handler), format="parquet",
                         partitioning=partitioning if base is not None else None,
                         partition_base_dir=base)
    expression = pq.filters_to_expression(filters) if isinstance(filters, list) else filters
    table = dataset.to_table(columns=columns, filter=expression)
    read_parquet.last_handler = handler   # tests count fallback reads
    return table


def _parquet_paths(fs: "FireflyFileSystem", path: str | list[str]) -> tuple[list[str], str | None]:
    if isinstance(path, (list, tuple)):
        return [fs._strip_protocol(p) for p in path], None
    base = fs._strip_protocol(path)
    if fs.isdir(base):
        found = [p for p in fs.find(base) if p.endswith((".parquet", ".parq"))]
        return sorted(found), base
    return [base], None
