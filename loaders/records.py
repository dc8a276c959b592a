"""Record files: a streaming writer and a batched, checksum-verifying reader.

The writer takes records one at a time from any iterable. Because the index
precedes the data (see record_format) and the count is not known until the
end, records are spooled to a local temporary file and the finished file is
written in one go at ``close``, atomically (a temporary name, then a rename),
so readers never see half a file.

The reader fetches the header and index once per process, then reads any set
of records, of any number of files, as one batched request, and checks every
record's CRC32C; a mismatch raises ``CorruptRecord`` naming the record and file.
"""

from __future__ import annotations

import array
import os
import tempfile
import threading
from typing import Iterable, Iterator, Sequence

import crc32c

from . import _io
from .record_format import (HEADER_BYTES, CorruptRecordFile, Index, check_record,
                            decode_header, decode_index, encode_header_and_index)

spool_memory_bytes_max = 64 * 1024 * 1024   # beyond this the spool goes to local disk
spool_copy_block_bytes = 8 * 1024 * 1024
header_read_bytes = 1024 * 1024              # first read at open: header and usually the index


class RecordWriter:
    """Write records (bytes-like) to a record file at any fsspec URL.

    Use as a context manager; the file appears at ``close`` and an exception
    inside the ``with`` block discards it.
    """

    def __init__(self, url: str, storage_options: dict | None = None,
                 spool_dir: str | None = None) -> None:
        self.url = url
        self._storage_options = storage_options
        self._spool = tempfile.SpooledTemporaryFile(max_size=spool_memory_bytes_max, dir=spool_dir)
        self._lengths = array.array("Q")
        self._crcs = array.array("I")
        self._closed = False

    def __len__(self) -> int:
        return len(self._lengths)

    def write(self, record: bytes | bytearray | memoryview) -> int:
        """Append one record; returns its index."""
        if self._closed:
            raise ValueError(f"{self.url}: writer is closed")
        view = memoryview(record).cast("B")
        self._spool.write(view)
        self._lengths.append(len(view))
        self._crcs.append(crc32c.crc32c(view))
        return len(self._lengths) - 1

    def write_all(self, records: Iterable[bytes | bytearray | memoryview]) -> int:
        """Append every record; returns how many the file holds so far."""
        for record in records:
            self.write(record)
        return len(self._lengths)

    def _blocks(self) -> Iterator[bytes]:
        yield encode_header_and_index(self._lengths, self._crcs)
        self._spool.seek(0)
        while True:
            block = self._spool.read(spool_copy_block_bytes)
            if not block:
                return
            yield block

    def close(self) -> int:
        """Write the file (atomically) and return its record count."""
        if self._closed:
            return len(self._lengths)
        try:
            _io.write_atomically(self.url, self._blocks(), self._storage_options)
        finally:
            self._closed = True
            self._spool.close()
        return len(self._lengths)

    def abort(self) -> None:
        """Drop everything written; the destination is not touched."""
        self._closed = True
        self._spool.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(url: str, records: Iterable[bytes], storage_options: dict | None = None) -> int:
    """Write an iterable of records to url; returns the count."""
    with RecordWriter(url, storage_options) as writer:
        writer.write_all(records)
    return len(writer)


class RecordReader:
    """Random access to the records of one file; pickles as (url, options, verify).

    The header and index are read at most once per process (``reader_for``
    shares readers), on first use.
    """

    def __init__(self, url: str, storage_options: dict | None = None, verify: bool = True) -> None:
        self.url = url
        self.storage_options = storage_options
        self.verify = verify
        self._opened: _io.OpenFile | None = None
        self._index: Index | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __reduce__(self):
        return (type(self), (self.url, self.storage_options, self.verify))

    def __repr__(self) -> str:
        return f"RecordReader({self.url!r})"

    def _load(self) -> tuple[_io.OpenFile, Index]:
        if self._index is not None and self._pid == os.getpid():
            return self._opened, self._index   # type: ignore[return-value]
        if self._pid and self._pid != os.getpid():
            self._lock = threading.Lock()   # a forked child: the parent's may be held
        with self._lock:
            if self._index is None or self._pid != os.getpid():
                opened = _io.open_file(self.url, self.storage_options)
                first = _io.read_ranges([(opened, 0, min(opened.length, header_read_bytes))])[0]
                header = decode_header(first, self.url, opened.length)
                end = HEADER_BYTES + header.index_bytes
                raw = first[HEADER_BYTES:end]
                if len(raw) < header.index_bytes:
                    raw += _io.read_ranges([(opened, len(first), end - len(first))])[0]
                self._opened, self._index = opened, decode_index(raw, header, self.url,
                                                                 opened.length)
                self._pid = os.getpid()
        return self._opened, self._index   # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._load()[1])

    def span(self, number: int) -> tuple[int, int]:
        """(offset, length) of record number in the file."""
        index = self._load()[1]
        if not 0 <= number < len(index):
            raise IndexError(f"record {number} out of range for {self.url} "
                             f"({len(index)} records)")
        offset, length = index.span(number)
        if length < 0:
            raise CorruptRecordFile(f"{self.url}: index offsets of record {number} go backwards")
        return offset, length

    def read(self, numbers: Sequence[int]) -> list[bytes]:
        """The records at numbers, in that order, in one batched read."""
        return read_records([(self, number) for number in numbers])

    def __getitem__(self, number: int) -> bytes:
        return self.read([number])[0]

    def __iter__(self) -> Iterator[bytes]:
        for number in range(len(self)):
            yield self[number]


def read_records(wanted: Sequence[tuple[RecordReader, int]]) -> list[bytes]:
    """Records of any files, (reader, number) each, fetched in one batched read.

    The records land packed in this thread's reused scratch buffer
    (``_io.read_batch``), each is CRC-checked there and copied once into the
    ``bytes`` returned: plain bytes are the cheapest objects for DataLoader
    workers to hand over (machine-limits.md).
    """
    reads = []
    append = reads.append
    for reader, number in wanted:
        opened, index = reader._load()
        if not 0 <= number < len(index.crcs):
            reader.span(number)                    # raises the IndexError
        offsets = index.offsets
        start = offsets[number]
        length = offsets[number + 1] - start
        if length < 0:
            reader.span(number)                    # raises CorruptRecordFile
        append((opened, start, length))
    if not reads:
        return []
    batch = _io.read_batch(reads)
    buffer, slots, nbytes = batch.buffer, batch.offsets, batch.nbytes
    out = []
    for (reader, number), slot, size, (_opened, _start, length) in zip(wanted, slots, nbytes, reads):
        data = buffer[slot:slot + size]
        if reader.verify and (size != length or
                              crc32c.crc32c(data) != reader._index.crcs[number]):
            check_record(reader._index, number, data, reader.url)
        out.append(bytes(data))
    return out


_readers: dict[tuple, RecordReader] = {}
_readers_lock = threading.Lock()


def reader_for(url: str, storage_options: dict | None = None, verify: bool = True) -> RecordReader:
    """The process-wide reader of url, so each file's index is loaded once per process."""
    key = (url, tuple(sorted((storage_options or {}).items())), verify)
    reader = _readers.get(key)
    if reader is None:
        with _readers_lock:
            reader = _readers.setdefault(key, RecordReader(url, storage_options, verify))
    return reader


def _after_fork_in_child() -> None:
    global _readers_lock
    _readers_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
