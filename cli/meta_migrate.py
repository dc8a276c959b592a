"""``ffs admin meta export|import``: move a metadata store between engines (meta_service/migrate.py).

    ffs admin meta export FILE --data-dir DIR                       a stopped LMDB meta server's store
    ffs admin meta export FILE --engine etcd --etcd-endpoints H:P,...
    ffs admin meta import FILE --engine etcd --etcd-endpoints H:P,... [--etcd-prefix P]
    ffs admin meta import FILE --data-dir DIR                       into a fresh LMDB store

Offline: run them with the meta servers of that store stopped (an LMDB export
is one snapshot even so, but later mutations would not be in the file).
Import refuses a store that already holds records and checks the file whole
before writing anything; both print record counts and the CRC32C of the
records, equal on both sides after a good import.
"""

from __future__ import annotations

import functools
import os
import time

import click

from ._output import emit_json, json_mode, json_option, print_table


def engine_options(command):
    @click.option("--engine", type=click.Choice(["lmdb", "etcd"]), default="lmdb", show_default=True,
                  help="the engine of the store")
    @click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                  help="the meta server's data dir (engine lmdb: DIR/meta.lmdb)")
    @click.option("--etcd-endpoints", default="", help="host:port,... of the etcd members (engine etcd)")
    @click.option("--etcd-prefix", default="/fireflyfs/", show_default=True, help="the cluster's key prefix")
    @functools.wraps(command)
    def wrapped(*args, **kwargs):
        return command(*args, **kwargs)
    return wrapped


def open_engine(engine: str, data_dir: str | None, etcd_endpoints: str, etcd_prefix: str, must_exist: bool):
    from fireflyfs.meta_service.engines import open_store
    from fireflyfs.meta_service.server import MetaConfig

    if engine == "lmdb":
        if not data_dir:
            raise click.UsageError("--engine lmdb needs --data-dir DIR (the meta server's data dir)")
        if must_exist and not os.path.exists(os.path.join(data_dir, "meta.lmdb")):
            raise click.UsageError(f"no metadata store in {data_dir} (expected {data_dir}/meta.lmdb)")
    elif not etcd_endpoints:
        raise click.UsageError("--engine etcd needs --etcd-endpoints host:port[,host:port...]")
    return open_store(MetaConfig(data_dir=data_dir or "", engine=engine, etcd_endpoints=etcd_endpoints,
                                 etcd_prefix=etcd_prefix))


def _run(action, what: str, path: str, store) -> None:
    """action(store, path) timed, its summary printed; the store closed."""
    try:
        started = time.monotonic()
        summary = action(store, path)
        _report(what, path, summary, time.monotonic() - started)
    finally:
        store.close()


def _report(what: str, path: str, summary: dict, seconds: float) -> None:
    summary = {**summary, "file": path, "seconds": round(seconds, 3),
               "records_per_s": round(summary["records"] / seconds) if seconds > 0 else None}
    if json_mode():
        emit_json(summary)
        return
    print_table(f"{what} {path}: {summary['records']} records, crc32c {summary['crc32c']:08x}, "
                f"{seconds:.1f} s", ["table", "records"], sorted(summary["counts"].items()))


@click.group("meta")
def meta() -> None:
    """Metadata store: export it to a file, import it into another engine (offline)."""


@meta.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@engine_options
@json_option
def export(file: str, engine: str, data_dir: str | None, etcd_endpoints: str, etcd_prefix: str) -> None:
    """Write every metadata record (one snapshot) to FILE."""
    from fireflyfs.meta_service.migrate import export_store

    _run(export_store, "exported to", file, open_engine(engine, data_dir, etcd_endpoints, etcd_prefix,
                                                        must_exist=True))


@meta.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@engine_options
@json_option
def import_(file: str, engine: str, data_dir: str | None, etcd_endpoints: str, etcd_prefix: str) -> None:
    """Load FILE into an empty store, then check counts and checksum against the file."""
    from fireflyfs.meta_service.migrate import import_store

    _run(import_store, "imported from", file, open_engine(engine, data_dir, etcd_endpoints, etcd_prefix,
                                                          must_exist=False))
