"""``ffs cluster up|down|status --dir DIR``: a whole cluster on this machine.

``up --meta-engine etcd [--etcd-members 3] [--meta-servers 2]`` puts the metadata in etcd
members on loopback ports (data under DIR/etcd-<k>) with several meta servers over them.
``status`` exits 1 when any process of the cluster is stopped or unhealthy.
"""

from __future__ import annotations

import pathlib
import sys

import click

from fireflyfs.deploy.local_cluster import (etcd_members_default, etcd_members_max, meta_servers_etcd_default,
                                            meta_servers_max)
from fireflyfs.meta_service.engines import ENGINES

from ._output import EXIT_FAILURE, emit_json, json_mode, json_option, print_table

dir_option = click.option("--dir", "base_dir", required=True,
                          type=click.Path(file_okay=False, path_type=pathlib.Path),
                          help="Directory holding the cluster's data, logs and pid files.")


def _cluster(base_dir: pathlib.Path, **kwargs):
    from fireflyfs.deploy.local_cluster import LocalCluster

    return LocalCluster(base_dir, python=sys.executable, **kwargs)


@click.group()
def cluster() -> None:
    """Start, stop and inspect a local cluster (meta servers, storage processes, etcd members)."""


@cluster.command("up")
@dir_option
@click.option("--storage-nodes", type=click.IntRange(1, 64), default=None,
              help="Storage processes  [default: 3, or as in DIR/cluster.json]")
@click.option("--targets-per-node", type=click.IntRange(1, 64), default=None,
              help="Targets per storage node  [default: 2, or as in DIR/cluster.json]")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Meta/mgmtd port; 0 picks a free one once and keeps it  [default: 0]")
@click.option("--replicas", type=click.IntRange(1, 8), default=None,
              help="Targets per chain, on distinct nodes  [default: 3 with >= 3 storage nodes, else 1, "
                   "or as in DIR/cluster.json]")
@click.option("--heartbeat-timeout-ms", type=click.IntRange(100), default=None,
              help="mgmtd marks a silent storage node offline after this; storage fences at half  "
                   "[default: the services' 10000, or as in DIR/cluster.json]")
@click.option("--chain-table/--no-chain-table", default=True, show_default=True,
              help="Create the chain table once the storage nodes registered.")
@click.option("--fsync/--no-fsync", default=None,
              help="Acknowledge writes only once on disk (the default); --no-fsync is faster and loses "
                   "power-loss safety (docs/durability.md)  [default: --fsync, or as in DIR/cluster.json]")
@click.option("--meta-engine", type=click.Choice(ENGINES), default=None,
              help="Where metadata lives: lmdb (one meta server, its LMDB in DIR/meta) or etcd "
                   "(etcd members on loopback ports, several meta servers)  "
                   "[default: lmdb, or as in DIR/cluster.json]")
@click.option("--etcd-members", type=click.IntRange(1, etcd_members_max), default=None,
              help="etcd processes (--meta-engine etcd), fixed once the cluster exists  "
                   f"[default: {etcd_members_default}, or as in DIR/cluster.json]")
@click.option("--meta-servers", type=click.IntRange(1, meta_servers_max), default=None,
              help="Meta server processes (more than one needs --meta-engine etcd)  "
                   f"[default: 1 on lmdb, {meta_servers_etcd_default} on etcd, or as in DIR/cluster.json]")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the cluster to serve.")
@click.option("--insecure", is_flag=True, default=None,
              help="No TLS, tokens, permission checks or capabilities: loopback development only. "
                   "Fixed once the cluster exists.")
@json_option
def up(base_dir, storage_nodes, targets_per_node, port, replicas, heartbeat_timeout_ms, chain_table,
       fsync, meta_engine, etcd_members, meta_servers, timeout_s, insecure) -> None:
    """Start what is not running in DIR and print the cluster URL."""
    try:
        local = _cluster(base_dir, storage_nodes=storage_nodes, targets_per_node=targets_per_node,
                         port=port, replicas=replicas, heartbeat_timeout_ms=heartbeat_timeout_ms,
                         chain_table=chain_table, fsync=fsync, startup_timeout_s=timeout_s,
                         meta_engine=meta_engine, etcd_members=etcd_members, meta_servers=meta_servers,
                         insecure=insecure)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    url = local.up()
    token_file = None if local.insecure else str(local.admin_token_file)
    if json_mode():
        emit_json({"url": url, "dir": str(local.base_dir), "processes": local.status(),
                   "admin_token_file": token_file, "tls_ca": None if local.insecure else str(local.ca_file),
                   "insecure": local.insecure})
        return
    click.echo(url)
    if token_file:
        click.echo(f"The admin's token is in {token_file} (mode 0600) and the cluster's CA in {local.ca_file}.\n"
                   f"To use the cluster as the admin:\n"
                   f"  export FFS_TOKEN_FILE={token_file} FFS_TLS_CA={local.ca_file}\n"
                   f"and add users with `ffs admin user add {url} NAME`.", err=True)
    else:
        click.echo("WARNING: --insecure: no TLS, no tokens, no permission checks; anyone who reaches these "
                   "ports can read and change everything. Loopback development only.", err=True)


@cluster.command("down")
@dir_option
@json_option
def down(base_dir) -> None:
    """Stop every process of the cluster in DIR (SIGTERM, then SIGKILL)."""
    if not (base_dir / "cluster.json").exists():
        raise click.UsageError(f"{base_dir} holds no cluster (no cluster.json)")
    stopped = _cluster(base_dir).down()
    if json_mode():
        emit_json({"stopped": stopped})
    else:
        click.echo(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""),
                   err=True)


@cluster.command("status")
@dir_option
@json_option
@click.pass_context
def status(ctx: click.Context, base_dir) -> None:
    """Show each process of the cluster in DIR: role, name, node id, pid, address, state, and which
    meta server is the mgmtd primary. Exit code 1 when any is stopped or unhealthy."""
    if not (base_dir / "cluster.json").exists():
        raise click.UsageError(f"{base_dir} holds no cluster (no cluster.json)")
    local = _cluster(base_dir)
    rows = local.status()
    if json_mode():
        emit_json(rows)
    else:
        click.echo(f"cluster {local.url}  (health: ffs status URL)")
        print_table(None, ["role", "name", "node id", "pid", "address", "state", "mgmtd"],
                    [(r["role"], r["name"], r["node_id"], r["pid"], r["address"], r["state"], r["mgmtd"])
                     for r in rows])
    down = [r["name"] for r in rows if r["state"] != "running"]
    if down:
        click.echo(f"{len(down)} of {len(rows)} process(es) not running: {', '.join(down)}", err=True)
        ctx.exit(EXIT_FAILURE)
