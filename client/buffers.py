"""Buffers of the read path: the range a read asks for, and the bytes it lands in.

Shared by ``storage_client`` (batched reads, failover) and ``streams`` (the
readahead reader, which falls back to ``StorageClient.read_into``), so that
neither imports the other. No I/O here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from typing import Callable

from fireflyfs.common.layout import Layout

_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1      # PyBytesObject.ob_sval
_new_bytes_min = 4096
_ZEROS = memoryview(bytes(1 << 20))


@dataclasses.dataclass(frozen=True, slots=True)
class ReadRequest:
    """One byte range of one file, for ``StorageClient.read_many`` and ``read_into``."""

    inode_id: int
    layout: Layout
    file_length: int
    offset: int
    length: int


def request_size(request: ReadRequest) -> int:
    """Bytes a read request returns: its length clamped at the file's end (0 past it)."""
    return max(0, min(request.offset + request.length, request.file_length) - request.offset)


def zero_fill(view: memoryview) -> None:
    """Write zeros over view (holes, chunks shorter than the file)."""
    position, total = 0, len(view)
    while position < total:
        count = min(total - position, len(_ZEROS))
        view[position:position + count] = _ZEROS[:count]
        position += count


def new_bytes(size: int) -> tuple[bytes | bytearray, memoryview]:
    """(object, writable view of its bytes): a new bytes object to fill in place before it escapes.

    ``read()`` must return bytes; filling a bytearray and converting would copy
    every byte into freshly mapped memory a second time (on this VM first-touch
    page faults dominate such copies: machine-limits.md). On CPython a fresh
    ``bytes(size)`` (calloc'd, never shared for size >= 2, hash not computed
    yet) is written through a ctypes view of its storage. Elsewhere, or below
    ``_new_bytes_min``, the object is a bytearray: pass it through ``as_bytes``.
    """
    if size >= _new_bytes_min and sys.implementation.name == "cpython":
        data = bytes(size)
        storage = (ctypes.c_char * size).from_address(id(data) + _BYTES_DATA_OFFSET)
        storage.owner = data          # the view keeps the bytes object alive, never the reverse
        return data, memoryview(storage).cast("B")
    buffer = bytearray(size)
    return buffer, memoryview(buffer)


def as_bytes(data: bytes | bytearray) -> bytes:
    return data if type(data) is bytes else bytes(data)


def filled_bytes(size: int, fill: Callable[[memoryview], object]) -> bytes:
    """A new bytes object of size whose storage fill(view) wrote before anyone else saw it."""
    data, view = new_bytes(size)
    fill(view)
    return as_bytes(data)
