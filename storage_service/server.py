"""The storage node process: targets + Storage gRPC server + mgmtd link.

``python -m fireflyfs.storage_service --node-id N --data-dir DIR --listen 127.0.0.1:0
--mgmtd 127.0.0.1:PORT --targets T [--log-file F] [--heartbeat-interval-ms MS]
[--heartbeat-timeout-ms MS] [--no-fsync] [--block-size BYTES] [--bulk-listen HOST:PORT | --no-bulk]
[--chain-forward bulk|grpc]
[--target-capacity SIZE] [--target-reserve SIZE|PCT] [--target-map-size SIZE] [--target-map-size-max SIZE]
[--space-warn-percent PCT]
[--scrub-bytes-per-s N] [--scrub-interval-s S]
[--bulk-connections-max N] [--bulk-connections-per-peer-max N] [--bulk-inflight-bytes-max SIZE]
[--bulk-inflight-bytes-per-peer-max SIZE] [--bulk-budget-wait-s-max S] [--bulk-idle-s-max S] [--bulk-request-s-max S]``

Targets are DIR/target-<id>/ with id = N*100 + i + 1. The server binds first
(port 0 = ephemeral), then registers "127.0.0.1:<bound port>" with mgmtd (with
this process's incarnation); until registration succeeds every request answers
Unavailable, and so does every request after half the heartbeat timeout
without a heartbeat reply (fencing.py). SIGTERM/SIGINT stop it gracefully: stop
heartbeating and resync, drain calls (grace period), close LMDB.

Bulk data path (bulk_server.py): a second listener, by default on the same
host with an ephemeral port, carries chunk reads and client writes over a
framed binary protocol; its address goes to mgmtd in the registration
(``bulk_address``) and from there into every client's routing. ``--no-bulk``
(or FFS_STORAGE_BULK=0) leaves it off: clients then use gRPC for everything.
Chain updates to successors travel over the successors' bulk listeners too
(bulk_peers.py); ``--chain-forward grpc`` (FFS_CHAIN_FORWARD) sends them as
Storage.Update instead, the tested fallback, also used for a successor that
has no bulk listener.
The --bulk-*-max flags bound what it holds (bulk_connections.BulkLimits;
defaults in common/limits.py). At start the process raises its open files
limit to the hard limit (common/process_tuning.py).

Chain replication: Write/TruncateChunk/RemoveChunks at the head and Update
from predecessors run through chain_driver.py (CRAQ, craq.py); resync.py
copies data to a SYNCING successor; rollforward.py completes updates a
failure left pending. Every target starts ONLINE and reports
UPTODATE per local_state.py.

Integrity: a chunk whose bytes fail their CRCs (found by a read here, reported
by a client, or by the background scrub) is re-verified and rewritten from a
good replica (repair.py); the scrub (scrub.py) re-reads every committed chunk
at ``--scrub-bytes-per-s`` (default 8 MiB/s, 0: off), a pass at most every
``--scrub-interval-s``.

Environment overrides (flags win): FFS_HEARTBEAT_INTERVAL_MS, FFS_HEARTBEAT_TIMEOUT_MS,
FFS_STORAGE_FSYNC=0, FFS_CHECKSUM_BLOCK_BYTES, FFS_STORAGE_BULK=0, FFS_CHUNK_POOL_FILES,
FFS_CHUNK_POOL_PREFILL_MIB (chunk_engine.py explains the file pool), FFS_TARGET_CAPACITY,
FFS_TARGET_RESERVE, FFS_TARGET_MAP_SIZE, FFS_TARGET_MAP_SIZE_MAX, FFS_SPACE_WARN_PERCENT, FFS_SCRUB_BYTES_PER_S,
FFS_SCRUB_INTERVAL_S, FFS_DEBUG_LOGGERS (comma-separated logger names logged at DEBUG, e.g.
fireflyfs.storage_service.chunk_engine.durability: one line per fdatasync and durable meta commit).

Space (space_guard.py): each target refuses client writes that would leave
less than its reserve free (default 5% of its capacity or 1 GiB, whichever is
smaller), so a target fills to its reserve and stops with NoSpace instead of
failing mid-write on a full disk. ``--target-capacity`` caps what a target may
hold below its file system's size. Each target's chunk metadata LMDB starts
at ``--target-map-size`` and doubles when full up to ``--target-map-size-max``
(common/lmdb_env.py). A warning is logged once when a target's space or map
passes ``--space-warn-percent`` (default 80), and shown in SpaceInfo.

``fsync`` (default on; docs/durability.md): each replica fdatasyncs the chunk
data (and the chunk directory for a new file) and commits the chunk meta
durably before it acknowledges, so an acknowledged write survives a host power
loss. ``--no-fsync`` (FFS_STORAGE_FSYNC=0) keeps acknowledged writes safe from
a process kill only: a power loss may lose them or corrupt a target's LMDB.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

from fireflyfs.common import limits, logs, metrics, tls
from fireflyfs.common.errors import InvalidArgument
from fireflyfs.common.process_tuning import keep_large_buffers_on_heap, raise_open_files_limit
from fireflyfs.common.primary_follower import PrimaryStub, split_addresses
from fireflyfs.common.auth import NODE_TOKEN_PREFIX, parse_token, read_token_file
from fireflyfs.common.rpc import add_health, advertised_address, make_server
from fireflyfs.common.units import parse_positive_size, parse_size
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc, storage_pb2_grpc

from .bulk_connections import BulkLimits
from .bulk_server import BulkHandler, BulkServer
from .access import CapabilityGate, MgmtdKeys, StorageAuthenticator
from .chain_driver import ChainDriver
from .chunk_engine import CHECKSUM_BLOCK_BYTES_DEFAULT, POOL_FILES_MAX_DEFAULT
from .fencing import Fence, heartbeat_timeout_ms_default
from .heartbeat import MgmtdLink
from .peers import Peers
from .repair import Repairer, RepairQueue
from .retired import RetiredWiper
from .resync import ResyncManager
from .rollforward import RollForwardSweeper
from .routing_view import RoutingView
from .scrub import Scrubber, scrub_bytes_per_s_default, scrub_interval_s_default
from .servicer import StorageServicer
from .space_guard import SpaceReserve
from .target import Target, target_ids

log = logging.getLogger(__name__)

heartbeat_interval_ms_default = 1000
# Request threads block while an update travels the chain (each replica holds
# one per in-flight update), so the pool is sized for chains, not for CPUs.
server_workers_default = 64
stop_grace_s = 2.0


CHAIN_FORWARDS = ("bulk", "grpc")


@dataclasses.dataclass(frozen=True, slots=True)
class StorageConfig:
    node_id: int
    data_dir: Path
    listen: str
    mgmtd: str
    targets: int = 1
    log_file: Path | None = None
    heartbeat_interval_ms: int = heartbeat_interval_ms_default
    heartbeat_timeout_ms: int = heartbeat_timeout_ms_default
    fsync: bool = True               # durable before each ack; False: page cache only (docs/durability.md)
    block_size: int = CHECKSUM_BLOCK_BYTES_DEFAULT
    server_workers: int = server_workers_default
    bulk_listen: str | None = ""     # "" = the gRPC host, ephemeral port; None = no bulk listener
    chain_forward: str = "bulk"      # how chain updates reach successors: "bulk" (their bulk listener) or "grpc"
    chunk_pool_files: int = POOL_FILES_MAX_DEFAULT   # free chunk files kept per target for reuse
    chunk_pool_prefill_mib: int = 0  # per target: zero-filled pool files made at start (background)
    target_capacity_bytes: int = 0   # 0: the file system's size
    target_reserve: SpaceReserve = SpaceReserve()
    target_map_size_bytes: int = limits.target_map_bytes_default
    target_map_size_bytes_max: int = limits.target_map_bytes_max_default
    space_warn_fraction: float = limits.space_warn_fraction_default
    scrub_bytes_per_s: int = scrub_bytes_per_s_default   # 0: no background scrub
    scrub_interval_s: float = scrub_interval_s_default     # a scrub pass starts at most this often
    bulk_limits: BulkLimits = BulkLimits()   # what the bulk listener holds at most
    metrics_listen: str = ""         # host:port of the Prometheus /metrics endpoint; "" = none
    advertise: str = ""              # the host others reach this node at; "": the listen host
    # Security (common/auth.py): the file holding this node's key (`ffs admin node key ID URL`
    # prints it); insecure: no key, no capability checks, every caller trusted (loopback development).
    node_key_file: Path | None = None
    insecure: bool = False
    # TLS (common/tls.py): this node's certificate and key, and the cluster CA. Required unless insecure.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None

    def __post_init__(self) -> None:
        # The command line checks these with its flags' names first; a config file reaches only these.
        if self.node_id < 1 or self.targets < 1:
            raise ValueError(f"node_id and targets must be >= 1, not {self.node_id} and {self.targets}")
        if self.heartbeat_interval_ms < 1 or self.heartbeat_timeout_ms < 2:
            raise ValueError("heartbeat_interval_ms must be >= 1 and heartbeat_timeout_ms >= 2")
        if not 0 < self.space_warn_fraction <= 1:
            raise ValueError(f"space_warn_fraction must be in (0, 1], not {self.space_warn_fraction}")
        if self.target_map_size_bytes_max < self.target_map_size_bytes:
            raise ValueError("target_map_size_bytes_max must be at least target_map_size_bytes")
        if self.scrub_bytes_per_s < 0 or self.scrub_interval_s < 0:
            raise ValueError("scrub_bytes_per_s and scrub_interval_s must be >= 0")
        if self.chain_forward not in CHAIN_FORWARDS:
            raise ValueError(f"chain_forward must be one of {', '.join(CHAIN_FORWARDS)}, not {self.chain_forward!r}")
        if not self.insecure and not (self.tls_cert and self.tls_key and self.tls_ca):
            raise ValueError(f"storage node {self.node_id} needs tls_cert, tls_key and tls_ca (--tls-cert, "
                             "--tls-key, --tls-ca), or --insecure for loopback development")
        if not self.insecure and self.node_key_file is None:
            raise ValueError(f"storage node {self.node_id} needs its node key (--node-key-file; "
                             f"`ffs admin node key {self.node_id} URL` prints it), or --insecure for "
                             "loopback development")

    def node_token(self) -> str:
        """This node's key, checked to be for this node id."""
        token = read_token_file(str(self.node_key_file))
        parsed = parse_token(token)
        if parsed.kind != NODE_TOKEN_PREFIX or parsed.id != self.node_id:
            raise ValueError(f"{self.node_key_file} holds no key for node {self.node_id}")
        return token

    def target_dir(self, target_id: int) -> Path:
        return self.data_dir / f"target-{target_id}"


class StorageNode:
    """Owns the targets, the gRPC server and the mgmtd link of one storage node."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if not config.insecure:
            tls.configure(tls.TlsFiles(str(config.tls_cert), str(config.tls_key), str(config.tls_ca)))
        self.targets = {tid: Target(tid, config.target_dir(tid), block_size=config.block_size,
                                    fsync=config.fsync, pool_files_max=config.chunk_pool_files,
                                    capacity_bytes=config.target_capacity_bytes,
                                    reserve=config.target_reserve,
                                    map_size_bytes=config.target_map_size_bytes,
                                    map_size_bytes_max=config.target_map_size_bytes_max,
                                    space_warn_fraction=config.space_warn_fraction)
                        for tid in target_ids(config.node_id, config.targets)}
        self.incarnation = time.time_ns()   # mgmtd tells a restarted process by it
        self.fence = Fence(config.node_id, config.heartbeat_timeout_ms)
        self.routing = RoutingView(config.node_id, list(self.targets), self.fence)
        # This node's key: every call it makes (to mgmtd, to chain peers) carries it.
        own_token = None if config.insecure else config.node_token()
        self.peers = Peers(self.routing, token=own_token, bulk=config.chain_forward == "bulk")
        self.driver = ChainDriver(self.routing, self.peers)
        self.resync = ResyncManager(self.targets, self.routing, self.peers, self.driver)
        self.retired = RetiredWiper(self.targets, self.routing)
        self.sweeper = RollForwardSweeper(self.targets, self.routing, self.driver)
        self.repairs = RepairQueue(Repairer(self.targets, self.routing, self.peers, self.driver).repair,
                                   sorted(self.targets))
        self.scrubber = (Scrubber(self.targets, self.repairs.offer, config.scrub_bytes_per_s,
                                  config.scrub_interval_s) if config.scrub_bytes_per_s > 0 else None)
        self.routing.add_listener(self._observe_routing)
        self.mgmtd_keys = MgmtdKeys()
        # Clients' reads and writes need capabilities signed by meta (none checked when insecure).
        self.capability_gate = CapabilityGate(None if config.insecure else self.mgmtd_keys)
        authenticate = None
        if not config.insecure:
            authenticate = StorageAuthenticator(self.mgmtd_keys)
        self.server, self.port = make_server(config.listen, config.server_workers, authenticate=authenticate)
        storage_pb2_grpc.add_StorageServicer_to_server(
            StorageServicer(config.node_id, self.targets, self.routing, self.driver, self.repairs,
                            self.scrubber, capabilities=self.capability_gate), self.server)
        self.health = add_health(self.server, ("fireflyfs.Storage",))
        host = config.listen.rsplit(":", 1)[0] or "127.0.0.1"
        self.address = advertised_address(config.listen, self.port, config.advertise)
        self.bulk: BulkServer | None = None
        if config.bulk_listen is not None:
            self.bulk = BulkServer(BulkHandler(config.node_id, self.targets, self.routing, self.driver,
                                               self.repairs, capabilities=self.capability_gate,
                                               authenticate=authenticate),
                                   config.bulk_listen or f"{host}:0", limits=config.bulk_limits,
                                   tls_context=tls.process_tls.bulk_server)
        self.metrics_address = (metrics.serve(config.metrics_listen, metrics.GaugesAtScrape(self._gauges))
                                if config.metrics_listen else "")
        # config.mgmtd: one meta server or several ("h1:p1,h2:p2"): heartbeats follow the primary.
        self._mgmtd = PrimaryStub(split_addresses(config.mgmtd), mgmtd_pb2_grpc.MgmtdStub, token=own_token)
        self.link = MgmtdLink(self._mgmtd, config.node_id, self.address,
                              self._target_infos, self._target_heartbeats, self.routing,
                              config.heartbeat_interval_ms / 1000.0, fence=self.fence,
                              incarnation=self.incarnation, mgmtd_keys=self.mgmtd_keys,
                              bulk_address=advertised_address(self.bulk.address, self.bulk.port, config.advertise)
                              if self.bulk else "",
                              metrics_address=self.metrics_address)
        self._stopped = threading.Event()
        self._closed = threading.Event()

    def _observe_routing(self, routing: RoutingView) -> None:
        """Every routing install: local states follow the public ones; resync starts or stops."""
        for target_id, target in self.targets.items():
            chain = routing.chain_of_target(target_id)
            target.local.observe(chain is not None, chain.state_of(target_id) if chain else 0)
        self.resync.on_routing(routing)
        self.retired.on_routing(routing)

    def _gauges(self):
        """What /metrics shows of this node's targets, read at scrape time."""
        spaces = [(str(target.id), target.space()) for target in self.targets.values()]
        workers = self.resync.workers()
        return [("ffs_target_used_bytes", "Bytes of chunks held by a target", ["target"],
                 [([tid], space.used_bytes) for tid, space in spaces]),
                ("ffs_target_capacity_bytes", "A target's quota, or its file system's size", ["target"],
                 [([tid], space.capacity_bytes) for tid, space in spaces]),
                ("ffs_target_chunks", "Chunks held by a target", ["target"],
                 [([tid], space.chunk_count) for tid, space in spaces]),
                ("ffs_resync_chunks_sent", "Chunks a running resync has pushed to its successor", ["target", "successor"],
                 [([str(w.target.id), str(w.successor)], w.chunks_sent) for w in workers]),
                ("ffs_resyncs_running", "Resyncs this node is running (one per syncing successor)", [],
                 [([], len(workers))])]

    def _target_infos(self):
        return [target.info(self.config.node_id) for target in self.targets.values()]

    def _target_heartbeats(self):
        beats = []
        for target in self.targets.values():
            space = target.space()
            beats.append(mgmtd_pb2.TargetHeartbeat(
                target_id=target.id, local_state=target.local_state, used_bytes=space.used_bytes,
                capacity_bytes=space.capacity_bytes, chunk_count=space.chunk_count,
                fs_free_bytes=space.fs_free_bytes, fs_id=target.engine.fs_id,
                capacity_configured=bool(target.capacity_bytes)))
        return beats

    def start(self) -> None:
        self.server.start()
        if self.bulk is not None:
            self.bulk.start()
        log.info("storage node %d serving on %s (bulk %s) with targets %s", self.config.node_id,
                 self.address, self.bulk.address if self.bulk else "off", sorted(self.targets))
        self.link.start()
        self.sweeper.start()
        self.repairs.start()
        if self.scrubber is not None:
            self.scrubber.start()
        if self.config.chunk_pool_prefill_mib > 0:
            threading.Thread(target=self._prefill_pools, name="chunk-pool-prefill", daemon=True).start()

    def _prefill_pools(self) -> None:
        file_bytes = limits.chunk_size_default
        files = self.config.chunk_pool_prefill_mib * 1024 * 1024 // file_bytes
        for target in self.targets.values():
            try:
                made = target.engine.prefill_pool(files, file_bytes, self._stopped)
            except Exception:   # a full disk, a closed engine: the pool is an optimization only
                log.warning("target %d: chunk pool prefill stopped", target.id, exc_info=True)
                return
            log.info("target %d: chunk pool prefilled with %d files", target.id, made)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("storage node %d stopping", self.config.node_id)
        self.health.enter_graceful_shutdown()
        self.link.stop()
        self.driver.close()
        self.sweeper.stop()
        if self.scrubber is not None:
            self.scrubber.stop()
        self.repairs.stop()
        self.resync.close()
        self.retired.close()
        if self.bulk is not None:
            self.bulk.stop()
        self.server.stop(stop_grace_s).wait()
        self._mgmtd.close()
        self.peers.close()
        for target in self.targets.values():
            target.close()
        self._closed.set()

    def wait(self) -> None:
        """Block until stop() has finished (LMDB closed)."""
        self._closed.wait()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def parse_args(argv: list[str] | None = None) -> StorageConfig:
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.storage_service",
                                     description="FireflyFS storage node")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--mgmtd", required=True,
                        help="host:port of the meta/mgmtd service, or several (h1:p1,h2:p2): the node "
                             "heartbeats to whichever is the mgmtd primary")
    parser.add_argument("--targets", type=int, default=1)
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--heartbeat-interval-ms", type=int,
                        default=_env_int("FFS_HEARTBEAT_INTERVAL_MS", heartbeat_interval_ms_default))
    parser.add_argument("--heartbeat-timeout-ms", type=int,
                        default=_env_int("FFS_HEARTBEAT_TIMEOUT_MS", heartbeat_timeout_ms_default),
                        help="mgmtd's heartbeat timeout; the node fences itself after half of it "
                             "without a heartbeat reply (mgmtd's replies override it)")
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("FFS_STORAGE_FSYNC", "1") != "0",
                        help="make chunk data and metadata durable before each ack (default); "
                             "--no-fsync: faster, loses power-loss safety")
    parser.add_argument("--block-size", type=int,
                        default=_env_int("FFS_CHECKSUM_BLOCK_BYTES", CHECKSUM_BLOCK_BYTES_DEFAULT),
                        help="CRC32C block size of new chunks (bytes)")
    parser.add_argument("--advertise", default="", metavar="HOST",
                        help="the host name or IP other hosts reach this node at (default: the --listen "
                             "host; needed when listening on 0.0.0.0)")
    parser.add_argument("--metrics-listen", default="",
                        help="host:port to serve Prometheus /metrics on (port 0: any; default: not served)")
    parser.add_argument("--bulk-listen", default="",
                        help="host:port of the bulk data listener (default: the --listen host, port 0)")
    parser.add_argument("--chain-forward", choices=CHAIN_FORWARDS,
                        default=os.environ.get("FFS_CHAIN_FORWARD", "bulk"),
                        help="how chain updates reach successors: over their bulk listeners (default) "
                             "or as gRPC Storage.Update (the fallback; used anyway for nodes without one)")
    parser.add_argument("--chunk-pool-files", type=int,
                        default=_env_int("FFS_CHUNK_POOL_FILES", POOL_FILES_MAX_DEFAULT),
                        help="free chunk files kept per target for reuse (0: unlink freed files)")
    parser.add_argument("--chunk-pool-prefill-mib", type=int,
                        default=_env_int("FFS_CHUNK_POOL_PREFILL_MIB", 0),
                        help="per target, zero-filled chunk files made in the background at start")
    parser.add_argument("--target-capacity", type=parse_size,
                        default=os.environ.get("FFS_TARGET_CAPACITY", "0"),
                        help="bytes each target may hold, e.g. 500GiB (0: its file system's size)")
    parser.add_argument("--target-reserve", type=SpaceReserve.parse,
                        default=os.environ.get("FFS_TARGET_RESERVE", ""),
                        help="free space each target keeps back from new chunk bytes: a size (2GiB) or a "
                             "share of its capacity (5%%); default 5%% or 1GiB, whichever is smaller")
    parser.add_argument("--target-map-size", type=parse_positive_size,
                        default=os.environ.get("FFS_TARGET_MAP_SIZE", str(limits.target_map_bytes_default)),
                        help="initial LMDB map of each target's chunk metadata (address space, not disk)")
    parser.add_argument("--target-map-size-max", type=parse_positive_size,
                        default=os.environ.get("FFS_TARGET_MAP_SIZE_MAX",
                                               str(limits.target_map_bytes_max_default)),
                        help="the most that map may grow to; at it, writes answer NoSpace")
    parser.add_argument("--space-warn-percent", type=float,
                        default=float(os.environ.get("FFS_SPACE_WARN_PERCENT",
                                                     limits.space_warn_fraction_default * 100)),
                        help="log a warning once when a target's space or map passes this fill")
    parser.add_argument("--scrub-bytes-per-s", type=int,
                        default=_env_int("FFS_SCRUB_BYTES_PER_S", scrub_bytes_per_s_default),
                        help="background scrub rate: bytes re-read and verified per second (0: off)")
    parser.add_argument("--scrub-interval-s", type=float,
                        default=float(os.environ.get("FFS_SCRUB_INTERVAL_S") or scrub_interval_s_default),
                        help="a scrub pass starts at most this often (seconds between pass starts)")
    parser.add_argument("--node-key-file", type=Path, default=os.environ.get("FFS_NODE_KEY_FILE") or None,
                        help="the file holding this node's key (mode 0600; `ffs admin node key ID URL` "
                             "prints it)")
    parser.add_argument("--insecure", action="store_true",
                        help="no node key, TLS or capability checks: loopback development only")
    for name, what in (("cert", "this node's TLS certificate (PEM)"), ("key", "its private key (PEM, mode 0600)"),
                       ("ca", "the cluster CA's certificate (PEM)")):
        parser.add_argument(f"--tls-{name}", type=Path, default=os.environ.get(f"FFS_TLS_{name.upper()}_FILE") or None,
                            help=what)
    parser.add_argument("--bulk", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("FFS_STORAGE_BULK", "1") != "0",
                        help="serve the bulk data path (--no-bulk: gRPC only)")
    bulk_defaults = BulkLimits()
    for name, kind, what in (
            ("connections_max", int, "open bulk connections"),
            ("connections_per_peer_max", int, "bulk connections from one client address"),
            ("inflight_bytes_max", parse_positive_size, "bulk request buffer bytes (e.g. 256MiB)"),
            ("inflight_bytes_per_peer_max", parse_positive_size, "of those for one client address"),
            ("budget_wait_s_max", float, "seconds a bulk request waits for buffer budget"),
            ("idle_s_max", float, "seconds a bulk connection may sit idle"),
            ("request_s_max", float, "seconds to receive one bulk request, or send one reply")):
        parser.add_argument(f"--bulk-{name.replace('_', '-')}", dest=f"bulk_{name}", type=kind,
                            default=getattr(bulk_defaults, name), help=f"at most this many {what}")
    args = parser.parse_args(argv)
    try:
        bulk_limits = BulkLimits(**{field.name: getattr(args, f"bulk_{field.name}")
                                    for field in dataclasses.fields(BulkLimits)})
    except InvalidArgument as exc:
        parser.error(str(exc))
    if args.node_id < 1:
        parser.error("--node-id must be >= 1")
    if not args.insecure and not (args.tls_cert and args.tls_key and args.tls_ca):
        parser.error("--tls-cert, --tls-key and --tls-ca are required, or --insecure for loopback development")
    if not args.insecure and args.node_key_file is None:
        parser.error("--node-key-file is required (`ffs admin node key ID URL` prints a node's key), "
                     "or --insecure for loopback development")
    if args.heartbeat_interval_ms < 1:
        parser.error("--heartbeat-interval-ms must be >= 1")
    if args.heartbeat_timeout_ms < 2:
        parser.error("--heartbeat-timeout-ms must be >= 2")
    if not 0 < args.space_warn_percent <= 100:
        parser.error("--space-warn-percent must be in (0, 100]")
    if args.target_map_size_max < args.target_map_size:
        parser.error("--target-map-size-max must be at least --target-map-size")
    if args.scrub_bytes_per_s < 0 or args.scrub_interval_s < 0:
        parser.error("--scrub-bytes-per-s and --scrub-interval-s must be >= 0")
    return StorageConfig(node_id=args.node_id, data_dir=args.data_dir, listen=args.listen,
                         mgmtd=args.mgmtd, targets=args.targets, log_file=args.log_file,
                         heartbeat_interval_ms=args.heartbeat_interval_ms,
                         heartbeat_timeout_ms=args.heartbeat_timeout_ms, fsync=args.fsync,
                         block_size=args.block_size, bulk_listen=args.bulk_listen if args.bulk else None,
                         metrics_listen=args.metrics_listen, advertise=args.advertise,
                         chain_forward=args.chain_forward,
                         chunk_pool_files=args.chunk_pool_files,
                         chunk_pool_prefill_mib=args.chunk_pool_prefill_mib,
                         target_capacity_bytes=args.target_capacity, target_reserve=args.target_reserve,
                         target_map_size_bytes=args.target_map_size,
                         target_map_size_bytes_max=args.target_map_size_max,
                         space_warn_fraction=args.space_warn_percent / 100,
                         scrub_bytes_per_s=args.scrub_bytes_per_s, scrub_interval_s=args.scrub_interval_s,
                         bulk_limits=bulk_limits, node_key_file=args.node_key_file, insecure=args.insecure,
                         tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca)


def setup_logging(config: StorageConfig) -> None:
    logs.setup("storage", config.node_id, config.log_file)


def main(argv: list[str] | None = None) -> int:
    return serve(parse_args(argv))


def serve(config: StorageConfig) -> int:
    """Run a storage node with config until SIGTERM or SIGINT (also ``ffs storage serve --config``)."""
    setup_logging(config)
    keep_large_buffers_on_heap()
    raise_open_files_limit()
    node = StorageNode(config)

    def on_signal(signum, frame) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=node.stop, name="stopper").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node.start()
    node.wait()
    log.info("storage node %d stopped", config.node_id)
    return 0
