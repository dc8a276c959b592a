"""The metadata service process: LMDB store, Namespace, ClusterState, the GC and
session-reaper threads, and one gRPC server carrying both the ``Meta`` and
``Mgmtd`` services."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from typing import Mapping

from fireflyfs.common import limits, logs, metrics, tls
from fireflyfs.common.auth import node_key_hash, node_token
from fireflyfs.common.rpc import add_health, advertised_address, make_server
from fireflyfs.proto import meta_pb2_grpc, mgmtd_pb2_grpc

from .capabilities import CapabilityIssuer
from .cluster_secret import cluster_secret
from .chunk_store import ChunkStore, GatedChunkStore, LazyStorageClient
from .gc import GarbageCollector
from .leases import SESSION_LEASE_MS_DEFAULT, LeaseTable, SessionReaper
from .membership import MetaMembership, meta_node_id
from .mgmtd.cluster import HEARTBEAT_TIMEOUT_MS_DEFAULT, ClusterState
from .mgmtd.servicer import MgmtdServicer
from .mgmtd.ticker import ClusterTicker
from .namespace import Namespace
from .servicer import MetaServicer
from .space_check import SPACE_CHECK_INTERVAL_MS_DEFAULT, MetaSpaceCheck
from .engines import ENGINES, open_store
from .users import MetaAuthenticator, Users, bootstrap_admin
from .store import MAP_SIZE_BYTES_DEFAULT, MAP_SIZE_BYTES_MAX_DEFAULT

log = logging.getLogger(__name__)

ENV_PREFIX = "FFS_META_"


@dataclasses.dataclass(frozen=True, slots=True)
class MetaConfig:
    """Everything the meta process can be told; defaults suit one machine.

    Every field but data_dir can be overridden from the environment as
    ``FFS_META_<FIELD>`` (``from_env``), as ClientConfig does for clients, so
    a launcher such as deploy/local_cluster.py passes one through ``extra_env``.
    """

    data_dir: str
    listen: str = "127.0.0.1:0"
    metrics_listen: str = ""                 # host:port of the Prometheus /metrics endpoint; "" = none
    advertise: str = ""                      # the host others reach this server at; "": the listen host
    log_file: str | None = None
    fsync: bool = True                       # durable before each reply; False: SIGKILL-safe only (store.py)
    gc_interval_ms: int = 200
    gc_delay_ms: int = 0                     # how long an unlinked file waits before its chunks go
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS_DEFAULT
    map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT          # LMDB map at start; doubles when full...
    map_size_bytes_max: int = MAP_SIZE_BYTES_MAX_DEFAULT  # ...up to this, then writes answer NoSpace
    space_warn_fraction: float = limits.space_warn_fraction_default
    space_check_interval_ms: int = SPACE_CHECK_INTERVAL_MS_DEFAULT
    rpc_workers_max: int = 16
    # A client's write sessions end this long after its last renewal (leases.py); clients renew
    # every third of it.
    session_lease_ms: int = SESSION_LEASE_MS_DEFAULT
    # gRPC workers that may wait on storage at once (chunk_store.GatedChunkStore): half of them,
    # so slow storage leaves the other half to metadata.
    storage_calls_max: int = 8
    # Where metadata lives (engines.py): "lmdb" under data_dir (one box, the default) or "etcd".
    engine: str = "lmdb"
    etcd_endpoints: str = ""                 # "host:port,host:port,...": the etcd members (engine etcd)
    etcd_prefix: str = "/fireflyfs/"         # every key of this cluster lives under it
    # This meta server's node id (0: taken from DATA_DIR/meta_node_id, allocated on first start).
    # Meta servers number from META_NODE_ID_FIRST, apart from storage nodes.
    node_id: int = 0
    # Security (common/auth.py): off only for loopback development (`--insecure`): then every call
    # acts as an admin. admin_token_file: where the first admin's token is written, 0600, when the
    # cluster has no user yet (as etcd's root user; `ffs cluster up` passes DIR/admin.token).
    insecure: bool = False
    admin_token_file: str = ""
    # How long a chunk capability lives (common/capability.py); at most the key rotation period.
    capability_ttl_ms: int = limits.capability_ttl_ms
    # TLS (common/tls.py): this server's certificate and key, and the CA its peers' certificates
    # chain to. Required unless insecure.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.storage_calls_max < self.rpc_workers_max:
            raise ValueError(f"storage_calls_max must be in [1, rpc_workers_max={self.rpc_workers_max}): "
                             "some workers must stay free for metadata")
        if not 0 < self.capability_ttl_ms <= limits.capability_rotation_ms:
            raise ValueError(f"capability_ttl_ms must be in (0, {limits.capability_rotation_ms}]")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown metadata engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.engine == "etcd" and not self.etcd_endpoints:
            raise ValueError("the etcd engine needs etcd_endpoints (--etcd-endpoints host:port,...)")
        if not 0 < self.space_warn_fraction <= 1:
            raise ValueError(f"space_warn_fraction must be in (0, 1], not {self.space_warn_fraction}")
        if self.map_size_bytes_max < self.map_size_bytes:
            raise ValueError("map_size_bytes_max must be at least map_size_bytes")

    @classmethod
    def from_env(cls, data_dir: str, environ: Mapping[str, str] | None = None, **overrides) -> "MetaConfig":
        """Defaults, then FFS_META_* variables, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or field.name == "data_dir":
                continue
            kind = {"int": int, "float": float, "bool": lambda text: text.lower() in ("1", "true", "yes")}.get(field.type, str)
            try:
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a {field.type}") from exc
        values.update(overrides)
        return cls(data_dir=data_dir, **values)


class MetaServer:
    def __init__(self, config: MetaConfig, chunk_store: ChunkStore | None = None) -> None:
        self.config = config
        self.store = open_store(config)
        # The space check watches an LMDB map and the disk under it; etcd members guard their own
        # space (--quota-backend-bytes), so an etcd-backed server has none.
        self.space_check = (MetaSpaceCheck(self.store, config.space_warn_fraction, config.space_check_interval_ms)
                            if config.engine == "lmdb" else None)
        if not config.insecure:
            if not (config.tls_cert and config.tls_key and config.tls_ca):
                raise ValueError("a meta server needs tls_cert, tls_key and tls_ca (`ffs cluster up` makes them "
                                 "under DIR/tls), or insecure for loopback development")
            tls.configure(tls.TlsFiles(config.tls_cert, config.tls_key, config.tls_ca))
        now_ns = time.time_ns()
        self.node_id = config.node_id or meta_node_id(config.data_dir, self.store)
        logs.set_node(self.node_id)
        self.users = Users(self.store)
        self.cluster_secret = cluster_secret(self.store)
        if config.admin_token_file and bootstrap_admin(self.users, config.admin_token_file, now_ns):
            log.info("made the first admin user; its token is in %s", config.admin_token_file)
        authenticate = None
        # This server's own calls (to storage nodes, as meta's chunk store) carry its node key.
        own_token = None if config.insecure else node_token(self.cluster_secret, self.node_id)
        if not config.insecure:
            authenticate = MetaAuthenticator(self.users, self.cluster_secret)
        self.server, self.port = make_server(config.listen, config.rpc_workers_max, authenticate=authenticate)
        self.address = advertised_address(config.listen, self.port, config.advertise)
        self.capabilities = CapabilityIssuer(self.cluster_secret, config.capability_ttl_ms)
        self.chunk_store = chunk_store or LazyStorageClient(self.address, f"meta-{os.getpid()}", own_token,
                                                            self.capabilities)
        # On etcd every meta server runs a mgmtd and the election picks the one that acts.
        self.cluster = ClusterState(self.store, config.heartbeat_timeout_ms, now_ns // 1_000_000,
                                    acting=self.store.engine != "etcd")
        self.ticker = ClusterTicker(self.cluster)  # times out silent nodes, advances chains (1 s)
        self.leases = LeaseTable(config.session_lease_ms)
        self.namespace = Namespace(self.store, GatedChunkStore(self.chunk_store, config.storage_calls_max),
                                   random.Random(os.urandom(16)), now_ns, leases=self.leases)
        self.gc = GarbageCollector(self.store, self.chunk_store, config.gc_interval_ms, config.gc_delay_ms,
                                   idem=self.namespace.idem, active=lambda: self.cluster.acting)
        # Only the mgmtd primary reaps: clients renew their leases with every meta server they
        # know, so the primary's table is complete (and a new primary grants every holder a term).
        self.reaper = SessionReaper(
            self.store, self.leases, excluded=Namespace.OWN_CLIENT_IDS,
            end_session=lambda inode_id, session_id, client_id: self.namespace.close(
                inode_id, session_id, time.time_ns(), client_id=client_id),
            active=lambda: self.cluster.acting)
        self.metrics_address = (metrics.serve(config.metrics_listen, metrics.GaugesAtScrape(self._gauges))
                                if config.metrics_listen else "")
        self.membership = MetaMembership(self.store, self.node_id, self.address, self.cluster, self.leases,
                                         config.heartbeat_timeout_ms, frozenset(Namespace.OWN_CLIENT_IDS),
                                         metrics_address=self.metrics_address
                                         ) if self.store.engine == "etcd" else None
        meta_pb2_grpc.add_MetaServicer_to_server(MetaServicer(self.namespace, self.cluster, self.space_check,
                                                              self.users, self.cluster_secret,
                                                              self.capabilities), self.server)
        mgmtd_pb2_grpc.add_MgmtdServicer_to_server(MgmtdServicer(self.cluster, self._node_key_hashes,
                                                                 self.users.admin_token_hashes,
                                                                 self.cluster_secret,
                                                                 lambda: self.metrics_address), self.server)
        self.health = add_health(self.server, ("fireflyfs.Meta", "fireflyfs.Mgmtd"))
        self._stopped = threading.Event()

    def _gauges(self):
        """What /metrics shows of the namespace, read at scrape time."""
        stats = self.namespace.statfs()
        return [("ffs_meta_inodes", "Inodes in the namespace", [], [([], stats.inodes)]),
                ("ffs_meta_gc_pending", "Unlinked files whose chunks GC has yet to remove", [],
                 [([], stats.gc_pending)]),
                ("ffs_meta_session_clients", "Clients holding write-session leases on this server", [],
                 [([], self.leases.holders())])]

    def _node_key_hashes(self) -> dict[int, bytes]:
        """What storage nodes check their callers' node keys with: every node routing names, and us."""
        routing = self.cluster.routing(time.time_ns() // 1_000_000)
        node_ids = {node.id for node in routing.nodes} | {self.node_id}
        return {node_id: node_key_hash(self.cluster_secret, node_id) for node_id in node_ids}

    def start(self) -> None:
        self.server.start()
        if self.membership is not None:
            self.membership.start()
        self.gc.start()
        self.reaper.start()
        self.ticker.start()
        if self.space_check is not None:
            self.space_check.start()
        log.info("meta service listening on %s (data %s, fsync=%s, session lease %d ms)", self.address,
                 self.config.data_dir, self.config.fsync, self.config.session_lease_ms)
        if self.config.insecure:
            log.warning("security is OFF (--insecure): no tokens, no permission checks, every caller acts "
                        "as an admin; for loopback development only")

    def stop(self, grace_s: float = 2.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("meta service stopping")
        self.health.enter_graceful_shutdown()
        if self.membership is not None:
            self.membership.stop()
        self.server.stop(grace_s).wait()
        self.ticker.stop()
        self.reaper.stop()
        self.gc.stop()
        if self.space_check is not None:
            self.space_check.stop()
        if hasattr(self.chunk_store, "close"):
            self.chunk_store.close()
        self.store.close()

    def wait(self) -> None:
        self._stopped.wait()


def setup_logging(log_file: str | None, level: int = logging.INFO) -> None:
    logs.setup("meta", None, log_file, level)     # the node id follows once the store names it
