"""Copy a whole metadata store between engines through one file (``ffs admin meta export|import``).

A user who started on the embedded LMDB engine moves to etcd without
rewriting data: the chunks stay where they are, only the records move
(issue 11). Export reads every table of store.DB_NAMES from one snapshot
(one read transaction) and streams it to a file; import refuses a store that
already holds records, checks the whole file before writing anything, writes
in bounded transactions (etcd's --max-txn-ops and request size), and then
reads the target back and compares record counts and checksums.

Both run offline, against a stopped meta server's data dir or etcd prefix:
an export of a live LMDB store is still one consistent snapshot, but
mutations after it are not in the file. ``meta_servers`` is not copied: it
holds the live servers' own leased records, which the new servers write.

File format (version 1): ``FFSMETA1``, a JSON header (u32 length), then per
record ``>BII`` (table index in the header's table list, key length, value
length) and the bytes, then a 0xFF byte and a JSON trailer (u32 length) with
per-table counts and the CRC32C of every record byte.
"""

from __future__ import annotations

import json
import os
import struct
from typing import BinaryIO, Iterator

import crc32c

from fireflyfs.common.errors import InvalidArgument

from .store import DB_NAMES

MAGIC = b"FFSMETA1"
FORMAT_VERSION = 1
_RECORD = struct.Struct(">BII")
_LENGTH = struct.Struct(">I")
_END = 0xFF
RUNTIME_TABLES = ("meta_servers",)        # live servers' leased records: never copied
batch_records_max = 200                   # puts per import transaction (etcd: --max-txn-ops)
batch_bytes_max = 1 << 20                 # bytes per import transaction (etcd: --max-request-bytes)


def copied_tables() -> list[str]:
    return [table for table in DB_NAMES if table not in RUNTIME_TABLES]


def _records(store) -> Iterator[tuple[int, bytes, bytes]]:
    tables = copied_tables()
    with store.read() as txn:
        for index, table in enumerate(tables):
            for key, value in txn.kv.scan(table):
                yield index, bytes(key), bytes(value)


def _summarize(store) -> dict:
    counts = {table: 0 for table in copied_tables()}
    checksum = 0
    tables = copied_tables()
    for index, key, value in _records(store):
        counts[tables[index]] += 1
        checksum = crc32c.crc32c(_RECORD.pack(index, len(key), len(value)) + key + value, checksum)
    return {"counts": counts, "records": sum(counts.values()), "crc32c": checksum}


def export_store(store, path: str) -> dict:
    """Write every record of store to path (via path.tmp, renamed when complete); the trailer."""
    tables = copied_tables()
    counts = {table: 0 for table in tables}
    checksum = 0
    header = json.dumps({"version": FORMAT_VERSION, "tables": tables, "source": store.describe()}).encode()
    temporary = path + ".tmp"
    with open(temporary, "wb") as out:
        out.write(MAGIC + _LENGTH.pack(len(header)) + header)
        for index, key, value in _records(store):
            framed = _RECORD.pack(index, len(key), len(value)) + key + value
            out.write(framed)
            checksum = crc32c.crc32c(framed, checksum)
            counts[tables[index]] += 1
        trailer = {"counts": counts, "records": sum(counts.values()), "crc32c": checksum}
        encoded = json.dumps(trailer).encode()
        out.write(bytes([_END]) + _LENGTH.pack(len(encoded)) + encoded)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return trailer


def _read_exact(source: BinaryIO, size: int, what: str) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise InvalidArgument(f"export file ends inside {what}: truncated or not an export file")
    return data


def _file_records(path: str) -> Iterator[tuple[str, bytes, bytes]]:
    """(table, key, value) of every record, checked against the trailer as the file ends."""
    with open(path, "rb") as source:
        if _read_exact(source, len(MAGIC), "its magic") != MAGIC:
            raise InvalidArgument(f"{path} is not a FireflyFS metadata export (bad magic)")
        header = json.loads(_read_exact(source, _LENGTH.unpack(_read_exact(source, 4, "the header"))[0],
                                        "the header"))
        if header.get("version") != FORMAT_VERSION:
            raise InvalidArgument(f"{path}: export format {header.get('version')}, this version reads "
                                  f"{FORMAT_VERSION}")
        tables = header["tables"]
        unknown = [table for table in tables if table not in DB_NAMES]
        if unknown:
            raise InvalidArgument(f"{path} holds tables this version does not know: {unknown}")
        counts = {table: 0 for table in tables}
        checksum = 0
        while True:
            first = _read_exact(source, 1, "a record")
            if first[0] == _END:
                break
            rest = _read_exact(source, _RECORD.size - 1, "a record")
            index, key_length, value_length = _RECORD.unpack(first + rest)
            if index >= len(tables):
                raise InvalidArgument(f"{path}: a record of table {index}: corrupt")
            key = _read_exact(source, key_length, "a key")
            value = _read_exact(source, value_length, "a value")
            checksum = crc32c.crc32c(first + rest + key + value, checksum)
            counts[tables[index]] += 1
            yield tables[index], key, value
        trailer = json.loads(_read_exact(source, _LENGTH.unpack(_read_exact(source, 4, "the trailer"))[0],
                                         "the trailer"))
        if source.read(1):
            raise InvalidArgument(f"{path}: bytes after the trailer: corrupt")
        if trailer.get("crc32c") != checksum or trailer.get("counts") != counts:
            raise InvalidArgument(f"{path} is corrupt: its records do not match its trailer "
                                  f"(crc32c {checksum} vs {trailer.get('crc32c')})")


def verify_file(path: str) -> dict:
    """Read the whole file and check it against its trailer; its counts and checksum."""
    counts: dict[str, int] = {}
    checksum = 0
    tables = copied_tables()
    for table, key, value in _file_records(path):
        counts[table] = counts.get(table, 0) + 1
        checksum = crc32c.crc32c(_RECORD.pack(tables.index(table), len(key), len(value)) + key + value, checksum)
    return {"counts": {table: counts.get(table, 0) for table in tables}, "records": sum(counts.values()),
            "crc32c": checksum}


def import_store(store, path: str) -> dict:
    """Load path into an empty store; the target's counts and checksum, equal to the file's."""
    expected = verify_file(path)                      # nothing is written from a bad file
    with store.read() as txn:
        held = {table: txn.kv.count(table) for table in copied_tables()}
    if any(held.values()):
        raise InvalidArgument(f"the target store ({store.describe()}) already holds records "
                              f"({', '.join(f'{t}: {n}' for t, n in held.items() if n)}); import only into a "
                              "fresh one: a new --data-dir, or an etcd prefix with no keys (etcdctl del --prefix)")
    batch: list[tuple[str, bytes, bytes]] = []
    size = 0
    for record in _file_records(path):
        batch.append(record)
        size += len(record[1]) + len(record[2])
        if len(batch) == batch_records_max or size >= batch_bytes_max:
            _load(store, batch)
            batch, size = [], 0
    if batch:
        _load(store, batch)
    loaded = _summarize(store)
    if loaded != expected:
        raise InvalidArgument(f"the imported store does not match the file: {loaded['counts']} "
                              f"(crc32c {loaded['crc32c']}) vs {expected['counts']} (crc32c {expected['crc32c']})")
    return loaded


def _load(store, records: list[tuple[str, bytes, bytes]]) -> None:
    def put_all(txn) -> None:
        for table, key, value in records:
            txn.kv.put(table, key, value)

    store.transact(put_all)
