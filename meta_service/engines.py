"""Which engine holds the metadata: the one place that picks it (MetaConfig.engine).

``lmdb``: store.Store, one LMDB file under data_dir, one meta process (the
embedded default for one box). ``etcd``: etcd_store.EtcdStore, every record
in an etcd cluster under etcd_prefix, so several stateless meta processes
serve one namespace and the loss of one host loses nothing (issue 11).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .kv import MetaStore

if TYPE_CHECKING:
    from .server import MetaConfig

ENGINES = ("lmdb", "etcd")


def open_store(config: "MetaConfig") -> MetaStore:
    if config.engine == "etcd":
        from .etcd_store import EtcdStore     # only etcd deployments load the etcd stubs
        return EtcdStore([address for address in config.etcd_endpoints.split(",") if address],
                         config.etcd_prefix)
    from .store import Store
    return Store(os.path.join(config.data_dir, "meta.lmdb"), fsync=config.fsync,
                 map_size_bytes=config.map_size_bytes, map_size_bytes_max=config.map_size_bytes_max)
