"""The cluster secret: the root of every key the cluster's daemons prove themselves with.

Node keys (common/auth.node_token) and capability signing keys
(common/capability.py) are HMACs of it, so mgmtd needs no table of keys and
every meta server derives the same ones. It lives in the metadata store
(table ``secrets``), made on the first start, so the meta servers of an etcd
cluster share it; only meta servers ever hold it. Storage nodes get their own
node key (from an admin, ``ffs admin node key``) and the current signing keys
(with each heartbeat reply), never the secret.
"""

from __future__ import annotations

from fireflyfs.common.auth import new_cluster_secret

from .store import Txn

_KEY = b"cluster"


def cluster_secret(store) -> bytes:
    """The store's cluster secret, made and stored on first use."""
    candidate = new_cluster_secret()

    def mutate(txn: Txn) -> bytes:
        existing = txn.kv.get("secrets", _KEY)
        if existing is not None:
            return existing
        txn.kv.put("secrets", _KEY, candidate)
        return candidate

    return store.transact(mutate)
