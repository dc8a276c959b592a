"""``python -m fireflyfs.meta_service --data-dir DIR --listen HOST:PORT``: run the meta process
(Meta + Mgmtd services). SIGTERM or SIGINT stops it gracefully. Durable by default
(``--no-fsync`` opts out; docs/durability.md)."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from .server import MetaConfig, MetaServer, setup_logging


def parse_args(argv: list[str] | None = None) -> MetaConfig:
    defaults = MetaConfig(data_dir="")
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.meta_service", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="directory for meta.lmdb")
    parser.add_argument("--listen", default=defaults.listen, help="host:port to serve on (port 0: any)")
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("FFS_META_FSYNC", "1") != "0",
                        help="each mutation durable (fdatasync, group commit) before its reply (default); "
                             "--no-fsync or FFS_META_FSYNC=0: faster, loses power-loss safety")
    parser.add_argument("--gc-interval-ms", type=int, default=defaults.gc_interval_ms)
    parser.add_argument("--gc-delay-ms", type=int, default=defaults.gc_delay_ms)
    parser.add_argument("--heartbeat-timeout-ms", type=int, default=defaults.heartbeat_timeout_ms)
    args = parser.parse_args(argv)
    return MetaConfig(data_dir=args.data_dir, listen=args.listen, log_file=args.log_file, fsync=args.fsync,
                      gc_interval_ms=args.gc_interval_ms, gc_delay_ms=args.gc_delay_ms,
                      heartbeat_timeout_ms=args.heartbeat_timeout_ms)


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    setup_logging(config.log_file)
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
