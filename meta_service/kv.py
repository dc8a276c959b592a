"""The transaction interface every metadata engine offers (issue 11: one interface, two engines).

Everything the meta process keeps goes through ``KvTxn``: tables named in
store.DB_NAMES, byte keys, byte values, get / put / delete / ordered prefix
scan / count. The namespace and mgmtd code reach it only through
``store.Txn``'s typed accessors, so they never know which engine runs:
``lmdb_kv.LmdbTxn`` (embedded, the default) today, an etcd engine next.

Why so small: every operation an engine must offer is one more thing to make
serializable on a distributed store (an etcd engine remembers the revision of
each key it read and commits with one compare-all transaction); a scan is
ordered by key bytes because directory listings and the GC cursor rely on it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Protocol, TypeVar

T = TypeVar("T")


class KvTxn(Protocol):
    """One transaction of an engine: reads see one snapshot plus this transaction's own writes."""

    def get(self, table: str, key: bytes, likely_absent: bool = False) -> bytes | None:
        """likely_absent: the caller expects no such key (a name about to be created); an
        optimistic engine may then assume so and let the commit check it."""
        ...

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def delete(self, table: str, key: bytes) -> bool:
        """True when the key existed."""
        ...

    def scan(self, table: str, prefix: bytes = b"", start: bytes | None = None
             ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with prefix, in key-byte order, from start (inclusive)."""
        ...

    def count(self, table: str) -> int:
        """How many keys the table holds."""
        ...


class MetaStore(Protocol):
    """What the meta process needs of an engine (store.Store: LMDB; etcd_store.EtcdStore: etcd).

    ``transact(mutate)`` runs ``mutate(txn)`` (txn: store.Txn) in one
    serializable transaction and returns its result; an optimistic engine
    runs it again when another writer changed what it read, so mutate must
    touch nothing but txn. ``guard`` (etcd only) makes the commit conditional
    on a key the caller holds (the mgmtd primary's election key): a guard that
    no longer holds raises NotPrimary and nothing is applied. ``read()``
    yields a Txn over one consistent snapshot.
    """

    engine: str                    # "lmdb" or "etcd"

    def transact(self, mutate: Callable[[Any], T], guard: Any = None) -> T: ...

    def read(self) -> contextlib.AbstractContextManager[Any]: ...

    def describe(self) -> str:
        """Where the data lives, for logs and errors (a path, or etcd endpoints and prefix)."""
        ...

    def close(self) -> None: ...
