"""``ffs admin nodes|targets|chains URL``: what the cluster manager knows (Mgmtd.GetRoutingInfo).

Verbs mirror 3FS's admin_cli list-nodes / list-targets / list-chains; unlike
it, every view also prints as JSON with stable field names.
"""

from __future__ import annotations

import time
from typing import Any

import click

from ._output import emit_json, human_bytes, json_mode, json_option, print_table
from .fs import _url_arg, parse_url

rpc_timeout_s = 10.0


def fetch_routing(url: str):
    from fireflyfs.common.errors import rpc_errors_mapped
    from fireflyfs.common.rpc import make_channel
    from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

    host, port, _ = parse_url(url)
    with make_channel(f"{host}:{port}") as channel, rpc_errors_mapped():
        reply = mgmtd_pb2_grpc.MgmtdStub(channel).GetRoutingInfo(
            mgmtd_pb2.GetRoutingInfoRequest(), timeout=rpc_timeout_s)
    return reply.routing


def _enum(enum_type, value: int) -> str:
    try:
        return enum_type.Name(value)
    except ValueError:
        return str(value)


def node_rows(routing) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    now_ms = time.time() * 1000
    return [{
        "id": n.id, "type": _enum(types_pb2.NodeType, n.type).removeprefix("NODE_"),
        "address": n.address, "status": _enum(types_pb2.NodeStatus, n.status),
        "last_heartbeat_age_s": round((now_ms - n.last_heartbeat_ms) / 1000, 3) if n.last_heartbeat_ms else None,
        "hostname": n.hostname, "pid": n.pid or None,
    } for n in sorted(routing.nodes, key=lambda n: (n.type, n.id))]


def target_rows(routing) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    return [{
        "id": t.id, "node_id": t.node_id, "chain_id": t.chain_id or None,
        "public_state": _enum(types_pb2.PublicTargetState, t.public_state),
        "local_state": _enum(types_pb2.LocalTargetState, t.local_state),
        "used_bytes": t.used_bytes, "capacity_bytes": t.capacity_bytes,
        "chunk_count": t.chunk_count, "path": t.path,
    } for t in sorted(routing.targets, key=lambda t: t.id)]


def chain_rows(routing) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    states = {t.id: _enum(types_pb2.PublicTargetState, t.public_state) for t in routing.targets}
    tables: dict[int, list[int]] = {}
    for table in routing.chain_tables:
        for chain_id in table.chains:
            tables.setdefault(chain_id, []).append(table.id)
    return [{
        "id": c.id, "version": c.version, "targets": list(c.targets),
        "target_states": [states.get(t, "UNKNOWN") for t in c.targets],
        "chain_tables": tables.get(c.id, []),
    } for c in sorted(routing.chains, key=lambda c: c.id)]


@click.group()
def admin() -> None:
    """Cluster manager views: nodes, targets, chains."""


@admin.command("nodes")
@click.argument("url", callback=_url_arg)
@json_option
def nodes(url: str) -> None:
    """List nodes with their heartbeat status."""
    routing = fetch_routing(url)
    rows = node_rows(routing)
    if json_mode():
        emit_json({"routing_version": routing.version, "nodes": rows})
        return
    print_table(f"nodes (routing version {routing.version})",
                ["id", "type", "address", "status", "heartbeat age s", "hostname", "pid"],
                [(r["id"], r["type"], r["address"], r["status"], r["last_heartbeat_age_s"],
                  r["hostname"], r["pid"]) for r in rows])


@admin.command("targets")
@click.argument("url", callback=_url_arg)
@json_option
def targets(url: str) -> None:
    """List storage targets with state and space."""
    routing = fetch_routing(url)
    rows = target_rows(routing)
    if json_mode():
        emit_json({"routing_version": routing.version, "targets": rows})
        return
    print_table(f"targets (routing version {routing.version})",
                ["id", "node", "chain", "public state", "local state", "used", "capacity",
                 "chunks", "path"],
                [(r["id"], r["node_id"], r["chain_id"], r["public_state"], r["local_state"],
                  human_bytes(r["used_bytes"]), human_bytes(r["capacity_bytes"]), r["chunk_count"],
                  r["path"]) for r in rows])


@admin.command("chains")
@click.argument("url", callback=_url_arg)
@json_option
def chains(url: str) -> None:
    """List chains (head first) and the chain tables using them."""
    routing = fetch_routing(url)
    rows = chain_rows(routing)
    if json_mode():
        emit_json({"routing_version": routing.version,
                   "chain_tables": [{"id": t.id, "version": t.version, "replicas": t.replicas,
                                     "chains": list(t.chains)} for t in routing.chain_tables],
                   "chains": rows})
        return
    print_table(f"chains (routing version {routing.version})",
                ["id", "version", "targets", "states", "tables"],
                [(r["id"], r["version"], ",".join(map(str, r["targets"])),
                  ",".join(r["target_states"]), ",".join(map(str, r["chain_tables"])))
                 for r in rows])
