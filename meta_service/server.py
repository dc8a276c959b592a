"""The metadata service process: LMDB store, Namespace, ClusterState, GC thread
and one gRPC server carrying both the ``Meta`` and ``Mgmtd`` services."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time

from fireflyfs.common.rpc import make_server
from fireflyfs.proto import meta_pb2_grpc, mgmtd_pb2_grpc

from .chunk_store import ChunkStore, LazyStorageClient
from .gc import GarbageCollector
from .mgmtd.cluster import HEARTBEAT_TIMEOUT_MS_DEFAULT, ClusterState
from .mgmtd.servicer import MgmtdServicer
from .mgmtd.ticker import ClusterTicker
from .namespace import Namespace
from .servicer import MetaServicer
from .store import MAP_SIZE_BYTES_DEFAULT, Store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class MetaConfig:
    """Everything the meta process can be told; defaults suit one machine."""

    data_dir: str
    listen: str = "127.0.0.1:0"
    log_file: str | None = None
    fsync: bool = True                       # durable before each reply; False: SIGKILL-safe only (store.py)
    gc_interval_ms: int = 200
    gc_delay_ms: int = 0                     # how long an unlinked file waits before its chunks go
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS_DEFAULT
    map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT
    rpc_workers_max: int = 16


class MetaServer:
    def __init__(self, config: MetaConfig, chunk_store: ChunkStore | None = None) -> None:
        self.config = config
        self.store = Store(os.path.join(config.data_dir, "meta.lmdb"), fsync=config.fsync,
                           map_size_bytes=config.map_size_bytes)
        self.server, self.port = make_server(config.listen, config.rpc_workers_max)
        host = config.listen.rpartition(":")[0]
        self.address = f"{'127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host}:{self.port}"
        self.chunk_store = chunk_store or LazyStorageClient(self.address, f"meta-{os.getpid()}")
        now_ns = time.time_ns()
        self.cluster = ClusterState(self.store, config.heartbeat_timeout_ms, now_ns // 1_000_000)
        self.ticker = ClusterTicker(self.cluster)  # times out silent nodes, advances chains (1 s)
        self.namespace = Namespace(self.store, self.chunk_store, random.Random(os.urandom(16)), now_ns)
        self.gc = GarbageCollector(self.store, self.chunk_store, config.gc_interval_ms, config.gc_delay_ms)
        meta_pb2_grpc.add_MetaServicer_to_server(MetaServicer(self.namespace, self.cluster), self.server)
        mgmtd_pb2_grpc.add_MgmtdServicer_to_server(MgmtdServicer(self.cluster), self.server)
        self._stopped = threading.Event()

    def start(self) -> None:
        self.server.start()
        self.gc.start()
        self.ticker.start()
        log.info("meta service listening on %s (data %s, fsync=%s)", self.address, self.config.data_dir,
                 self.config.fsync)

    def stop(self, grace_s: float = 2.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("meta service stopping")
        self.server.stop(grace_s).wait()
        self.ticker.stop()
        self.gc.stop()
        if hasattr(self.chunk_store, "close"):
            self.chunk_store.close()
        self.store.close()

    def wait(self) -> None:
        self._stopped.wait()


def setup_logging(log_file: str | None, level: int = logging.INFO) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s meta pid=%(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
