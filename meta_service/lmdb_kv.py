"""The embedded engine: ``KvTxn`` (kv.py) over one LMDB transaction, a named DB per table."""

from __future__ import annotations

from typing import Iterator

import lmdb


class LmdbTxn:
    """A KvTxn over an LMDB transaction (read or write) and the store's named DBs."""

    __slots__ = ("_txn", "_dbs")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, table: str, key: bytes, likely_absent: bool = False) -> bytes | None:
        return self._txn.get(key, db=self._dbs[table])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._dbs[table])

    def delete(self, table: str, key: bytes) -> bool:
        return self._txn.delete(key, db=self._dbs[table])

    def scan(self, table: str, prefix: bytes = b"", start: bytes | None = None
             ) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(start if start is not None else prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key, value

    def count(self, table: str) -> int:
        return self._txn.stat(self._dbs[table])["entries"]
