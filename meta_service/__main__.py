"""``python -m fireflyfs.meta_service --data-dir DIR --listen HOST:PORT``: run the meta process
(Meta + Mgmtd services). SIGTERM or SIGINT stops it gracefully. Durable by default
(``--no-fsync`` opts out; docs/durability.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import threading

from fireflyfs.common.process_tuning import raise_open_files_limit
from fireflyfs.common.units import parse_positive_size

from .engines import ENGINES
from .server import MetaConfig, MetaServer, setup_logging


def parse_args(argv: list[str] | None = None) -> MetaConfig:
    defaults = MetaConfig.from_env(data_dir="")
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.meta_service", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="directory for meta.lmdb")
    parser.add_argument("--listen", default=defaults.listen, help="host:port to serve on (port 0: any)")
    parser.add_argument("--advertise", default=defaults.advertise, metavar="HOST",
                        help="the host name or IP other hosts reach this server at (default: the --listen "
                             "host; needed when listening on 0.0.0.0)")
    parser.add_argument("--metrics-listen", default=defaults.metrics_listen,
                        help="host:port to serve Prometheus /metrics on (port 0: any; default: not served)")
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=defaults.fsync,
                        help="each mutation durable (fdatasync, group commit) before its reply (default); "
                             "--no-fsync or FFS_META_FSYNC=0: faster, loses power-loss safety")
    parser.add_argument("--gc-interval-ms", type=int, default=defaults.gc_interval_ms)
    parser.add_argument("--gc-delay-ms", type=int, default=defaults.gc_delay_ms)
    parser.add_argument("--heartbeat-timeout-ms", type=int, default=defaults.heartbeat_timeout_ms)
    parser.add_argument("--session-lease-ms", type=int, default=defaults.session_lease_ms,
                        help="write sessions of a client that stops renewing end after this long")
    parser.add_argument("--storage-calls-max", type=int, default=defaults.storage_calls_max,
                        help="request threads that may wait on storage at once; more fail fast (retryable)")
    parser.add_argument("--map-size", type=parse_positive_size,
                        default=os.environ.get("FFS_META_MAP_SIZE", str(defaults.map_size_bytes)),
                        help="initial LMDB map of the metadata store, e.g. 64GiB (address space, not disk); "
                             "it doubles when full")
    parser.add_argument("--map-size-max", type=parse_positive_size,
                        default=os.environ.get("FFS_META_MAP_SIZE_MAX", str(defaults.map_size_bytes_max)),
                        help="the most the map may grow to; at it, metadata writes answer NoSpace")
    parser.add_argument("--space-warn-percent", type=float,
                        default=float(os.environ.get("FFS_SPACE_WARN_PERCENT", defaults.space_warn_fraction * 100)),
                        help="log a warning once when the map (of its max) or the disk passes this fill")
    parser.add_argument("--meta-engine", choices=ENGINES, default=defaults.engine,
                        help="where metadata lives: lmdb under --data-dir (one box, default) or etcd")
    parser.add_argument("--etcd-endpoints", default=defaults.etcd_endpoints,
                        help="host:port,host:port,... of the etcd members (--meta-engine etcd)")
    parser.add_argument("--etcd-prefix", default=defaults.etcd_prefix,
                        help="key prefix of this cluster in etcd (several clusters may share one etcd)")
    parser.add_argument("--admin-token-file", default=defaults.admin_token_file,
                        help="when the cluster has no user yet, make the first admin and write its token "
                             "here (mode 0600)")
    parser.add_argument("--insecure", action="store_true", default=defaults.insecure,
                        help="no tokens, TLS or permission checks: loopback development only")
    parser.add_argument("--tls-cert", default=defaults.tls_cert, help="this server's TLS certificate (PEM)")
    parser.add_argument("--tls-key", default=defaults.tls_key, help="its private key (PEM, mode 0600)")
    parser.add_argument("--tls-ca", default=defaults.tls_ca, help="the cluster CA's certificate (PEM)")
    args = parser.parse_args(argv)
    if args.meta_engine == "etcd" and not args.etcd_endpoints:
        parser.error("--meta-engine etcd needs --etcd-endpoints host:port[,host:port...]")
    if not 0 < args.space_warn_percent <= 100:
        parser.error("--space-warn-percent must be in (0, 100]")
    if args.map_size_max < args.map_size:
        parser.error("--map-size-max must be at least --map-size")
    return dataclasses.replace(
        defaults, data_dir=args.data_dir, listen=args.listen, metrics_listen=args.metrics_listen,
        advertise=args.advertise,
        log_file=args.log_file, fsync=args.fsync,
        gc_interval_ms=args.gc_interval_ms, gc_delay_ms=args.gc_delay_ms,
        heartbeat_timeout_ms=args.heartbeat_timeout_ms, session_lease_ms=args.session_lease_ms,
        storage_calls_max=args.storage_calls_max, map_size_bytes=args.map_size,
        map_size_bytes_max=args.map_size_max, space_warn_fraction=args.space_warn_percent / 100,
        engine=args.meta_engine, etcd_endpoints=args.etcd_endpoints, etcd_prefix=args.etcd_prefix,
        admin_token_file=args.admin_token_file, insecure=args.insecure, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_ca=args.tls_ca)


def main(argv: list[str] | None = None) -> None:
    serve(parse_args(argv))


def serve(config: MetaConfig) -> None:
    """Run a meta server with config until SIGTERM or SIGINT (also ``ffs meta serve --config``)."""
    setup_logging(config.log_file)
    raise_open_files_limit()
    server = MetaServer(config)
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    server.start()
    while not stop_requested.wait(1.0):
        pass
    server.stop()


if __name__ == "__main__":
    main()
