"""The record file byte layout (see docs/record-format.md): pure encoding, no IO.

A record file is a header, an index (offsets and CRC32C of every record), then
the records back to back, in the spirit of High-Flyer's FFRecord. The index
sits before the data so a reader learns everything it needs from the first
bytes of the file, and one record costs one ranged read afterwards. The index
has its own checksum in the header, so a damaged index is found when the file
is opened rather than as a wrong record later.

Only the standard library is used (``array``, ``struct``), so reading the
format needs neither numpy nor torch.
"""

from __future__ import annotations

import array
import dataclasses
import struct
import sys

import crc32c

from fireflyfs.common.errors import ChecksumMismatch

MAGIC = b"FFLYREC\x00"
VERSION = 1
HEADER = struct.Struct("<8sHHIQII")   # magic, version, header bytes, flags, count, index crc, header crc
HEADER_BYTES = HEADER.size             # 32
OFFSET_BYTES = 8                       # one u64 offset per record, plus the end offset
CRC_BYTES = 4                          # one u32 CRC32C per record
record_count_max = 1 << 40             # keeps index arithmetic far from overflow

if HEADER_BYTES != 32:   # the on-disk format (docs/record-format.md); checked even under -O
    raise AssertionError("record file header must be 32 bytes")


class CorruptRecordFile(ChecksumMismatch):
    """A record file whose header or index is damaged, or that is not a record file."""


class CorruptRecord(CorruptRecordFile):
    """One record's bytes do not match the CRC32C stored for it in the index."""

    def __init__(self, message: str, index: int = -1, path: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.path = path


def index_bytes(record_count: int) -> int:
    """Size of the index of record_count records (offsets then CRCs)."""
    return OFFSET_BYTES * (record_count + 1) + CRC_BYTES * record_count


def data_start(record_count: int) -> int:
    """File offset of the first record."""
    return HEADER_BYTES + index_bytes(record_count)


def _little_endian(values: array.array) -> bytes:
    if sys.byteorder != "little":
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def encode_header_and_index(lengths: array.array, crcs: array.array) -> bytes:
    """Header plus index for records of the given lengths ('Q') and CRC32Cs ('I')."""
    count = len(lengths)
    if len(crcs) != count:
        raise ValueError(f"{count} lengths but {len(crcs)} checksums")
    if count > record_count_max:
        raise ValueError(f"{count} records exceed the format's {record_count_max}")
    offsets = array.array("Q", [0]) * (count + 1)
    position = data_start(count)
    for number, length in enumerate(lengths):
        offsets[number] = position
        position += length
    offsets[count] = position
    index = _little_endian(offsets) + _little_endian(crcs)
    head = HEADER.pack(MAGIC, VERSION, HEADER_BYTES, 0, count, crc32c.crc32c(index), 0)
    header_crc = crc32c.crc32c(head[:HEADER_BYTES - CRC_BYTES])
    return head[:HEADER_BYTES - CRC_BYTES] + struct.pack("<I", header_crc) + index


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    record_count: int
    index_crc32c: int

    @property
    def index_bytes(self) -> int:
        return index_bytes(self.record_count)

    @property
    def data_start(self) -> int:
        return data_start(self.record_count)


def decode_header(raw: bytes, path: str, file_length: int) -> Header:
    """Check and decode the first HEADER_BYTES of a file; CorruptRecordFile if wrong."""
    if len(raw) < HEADER_BYTES:
        raise CorruptRecordFile(f"{path}: {file_length} bytes is too short for a record file")
    magic, version, header_bytes, _flags, count, index_crc, header_crc = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptRecordFile(f"{path}: not a FireflyFS record file (magic {magic!r})")
    if crc32c.crc32c(raw[:HEADER_BYTES - CRC_BYTES]) != header_crc:
        raise CorruptRecordFile(f"{path}: record file header CRC32C mismatch")
    if version != VERSION or header_bytes != HEADER_BYTES:
        raise CorruptRecordFile(f"{path}: record format version {version} "
                                f"(header {header_bytes} bytes) is not supported")
    if count > record_count_max or data_start(count) > file_length:
        raise CorruptRecordFile(f"{path}: header says {count} records, "
                                f"more than a {file_length}-byte file can hold")
    return Header(count, index_crc)


@dataclasses.dataclass(frozen=True, slots=True)
class Index:
    """Record offsets (count + 1, the last is the end of the data) and CRC32Cs."""

    offsets: array.array
    crcs: array.array

    def __len__(self) -> int:
        return len(self.crcs)

    def span(self, number: int) -> tuple[int, int]:
        """(offset, length) of record number."""
        return self.offsets[number], self.offsets[number + 1] - self.offsets[number]


def decode_index(raw: bytes, header: Header, path: str, file_length: int) -> Index:
    """Check and decode the index bytes that follow the header."""
    count = header.record_count
    if len(raw) != header.index_bytes:
        raise CorruptRecordFile(f"{path}: index is {len(raw)} bytes, expected {header.index_bytes}")
    if crc32c.crc32c(raw) != header.index_crc32c:
        raise CorruptRecordFile(f"{path}: record index CRC32C mismatch")
    offsets = array.array("Q")
    offsets.frombytes(raw[:OFFSET_BYTES * (count + 1)])
    crcs = array.array("I")
    crcs.frombytes(raw[OFFSET_BYTES * (count + 1):])
    if sys.byteorder != "little":
        offsets.byteswap()
        crcs.byteswap()
    if offsets[0] != header.data_start or offsets[count] != file_length:
        raise CorruptRecordFile(f"{path}: index covers bytes [{offsets[0]}, {offsets[count]}) "
                                f"but the data is [{header.data_start}, {file_length})")
    return Index(offsets, crcs)


def check_record(index: Index, number: int, data: bytes, path: str) -> None:
    """Raise CorruptRecord naming the record and file unless data is record number's bytes."""
    offset, length = index.span(number)
    if len(data) != length:
        raise CorruptRecord(f"record {number} of {path}: read {len(data)} bytes at offset "
                            f"{offset}, expected {length}", number, path)
    computed = crc32c.crc32c(data)
    if computed != index.crcs[number]:
        raise CorruptRecord(f"record {number} of {path}: CRC32C mismatch at offset {offset} "
                            f"(stored {index.crcs[number]:#010x}, computed {computed:#010x})",
                            number, path)
