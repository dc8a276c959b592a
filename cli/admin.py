"""``ffs admin ...``: what the cluster manager knows, and the operator's levers.

    ffs admin nodes|targets|chains URL             views (Mgmtd.GetRoutingInfo)
    ffs admin metrics URL                          every service's /metrics, summed up
    ffs admin target offline|online URL ID         Mgmtd.SetTargetState
    ffs admin chain-table create URL --replicas R  Mgmtd.CreateChainTable
    ffs admin rebalance URL, node drain|remove URL ID  replica moves (moves.py)

Verbs mirror 3FS's admin_cli list-nodes / list-targets / list-chains /
offline-target; unlike it, every command also prints JSON with stable field
names. Targets show both states: public (routing: serving, syncing, waiting,
lastsrv, offline) and local (what the node reports: uptodate, online, offline),
plus whether an operator holds the target offline.
"""

from __future__ import annotations

import time
from typing import Any

import click

from ._output import emit_json, human_bytes, json_mode, json_option, print_table
from .fs import _url_arg, positive_id, url_addresses, url_and

rpc_timeout_s = 10.0


def _call(url: str, method: str, request):
    """One Mgmtd RPC to the cluster at url (to its mgmtd primary when url names several meta
    servers), errors mapped to FfsError."""
    from fireflyfs.common import auth
    from fireflyfs.common.primary_follower import PrimaryStub
    from fireflyfs.proto import mgmtd_pb2_grpc

    stub = PrimaryStub(url_addresses(url), mgmtd_pb2_grpc.MgmtdStub, token=auth.client_token())
    try:
        return getattr(stub, method)(request, timeout=rpc_timeout_s)
    finally:
        stub.close()


def fetch_routing_reply(url: str):
    from fireflyfs.proto import mgmtd_pb2

    return _call(url, "GetRoutingInfo", mgmtd_pb2.GetRoutingInfoRequest())


def fetch_routing(url: str):
    return fetch_routing_reply(url).routing


def _enum(enum_type, value: int) -> str:
    try:
        return enum_type.Name(value)
    except ValueError:
        return str(value)


def _short(state: str) -> str:
    """HEARTBEAT_CONNECTED -> connected, SERVING -> serving: the tables' spelling (JSON keeps the enum's)."""
    return state.removeprefix("HEARTBEAT_").removeprefix("LOCAL_").lower()


def _states(states: list[str]) -> str:
    """A chain's member states, once when they are all the same (3 x 'serving' fits 80 columns)."""
    if states and len(set(states)) == 1:
        return f"{_short(states[0])} x{len(states)}" if len(states) > 1 else _short(states[0])
    return ",".join(_short(state) for state in states)


def node_rows(routing) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    now_ms = time.time() * 1000
    return [{
        "id": n.id, "type": _enum(types_pb2.NodeType, n.type).removeprefix("NODE_"),
        "address": n.address, "status": _enum(types_pb2.NodeStatus, n.status),
        "last_heartbeat_age_s": round((now_ms - n.last_heartbeat_ms) / 1000, 3) if n.last_heartbeat_ms else None,
        "hostname": n.hostname, "pid": n.pid or None,
    } for n in sorted(routing.nodes, key=lambda n: (n.type, n.id))]


def target_rows(routing, admin_offline=()) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    held = set(admin_offline)
    return [{
        "id": t.id, "node_id": t.node_id, "chain_id": t.chain_id or None,
        "public_state": _enum(types_pb2.PublicTargetState, t.public_state),
        "local_state": _enum(types_pb2.LocalTargetState, t.local_state),
        "admin_offline": t.id in held, "retired": t.retired,
        "used_bytes": t.used_bytes, "capacity_bytes": t.capacity_bytes,
        "chunk_count": t.chunk_count, "path": t.path, "fs_id": t.fs_id,
    } for t in sorted(routing.targets, key=lambda t: t.id)]


def chain_rows(routing) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    states = {t.id: _enum(types_pb2.PublicTargetState, t.public_state) for t in routing.targets}
    local = {t.id: _enum(types_pb2.LocalTargetState, t.local_state) for t in routing.targets}
    tables: dict[int, list[int]] = {}
    for table in routing.chain_tables:
        for chain_id in table.chains:
            tables.setdefault(chain_id, []).append(table.id)
    return [{
        "id": c.id, "version": c.version, "targets": list(c.targets),
        "target_states": [states.get(t, "UNKNOWN") for t in c.targets],
        "local_states": [local.get(t, "UNKNOWN") for t in c.targets],
        "chain_tables": tables.get(c.id, []),
    } for c in sorted(routing.chains, key=lambda c: c.id)]


@click.group()
def admin() -> None:
    """Cluster manager: nodes, targets, chains; target offline/online; chain tables."""


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
                ["id", "type", "address", "status", "last beat", "hostname", "pid"],
                [(r["id"], r["type"].lower(), r["address"], _short(r["status"]),
                  f"{r['last_heartbeat_age_s']:.1f}s ago" if r["last_heartbeat_age_s"] is not None else "",
                  r["hostname"], r["pid"]) for r in rows])


@admin.command("targets")
@click.argument("url", callback=_url_arg)
@json_option
def targets(url: str) -> None:
    """List storage targets: public and local state, admin hold, space."""
    reply = fetch_routing_reply(url)
    routing = reply.routing
    rows = target_rows(routing, reply.admin_offline_targets)
    if json_mode():
        emit_json({"routing_version": routing.version, "targets": rows})
        return
    # 80 columns: the path and file system are in --json.
    print_table(f"targets (routing version {routing.version})",
                ["id", "node", "chain", "public", "local", "held", "used", "capacity", "chunks"],
                [(r["id"], r["node_id"], r["chain_id"],
                  _short(r["public_state"]) if r["chain_id"] else "retired" if r["retired"] else "free",
                  _short(r["local_state"]), "offline" if r["admin_offline"] else "", human_bytes(r["used_bytes"]),
                  human_bytes(r["capacity_bytes"]), r["chunk_count"]) for r in rows])


@admin.command("chains")
@click.argument("url", callback=_url_arg)
@json_option
def chains(url: str) -> None:
    """List chains (head first) with their versions, states and the chain tables using them."""
    routing = fetch_routing(url)
    rows = chain_rows(routing)
    if json_mode():
        emit_json({"routing_version": routing.version,
                   "chain_tables": [{"id": t.id, "version": t.version, "replicas": t.replicas,
                                     "chains": list(t.chains)} for t in routing.chain_tables],
                   "chains": rows})
        return
    print_table(f"chains (routing version {routing.version})",
                ["id", "version", "targets", "public", "local", "tables"],
                [(r["id"], r["version"], ",".join(map(str, r["targets"])), _states(r["target_states"]),
                  _states(r["local_states"]), ",".join(map(str, r["chain_tables"]))) for r in rows])


def metrics_endpoints(url: str) -> list[dict[str, Any]]:
    """Every service's /metrics the routing info names: the answering meta server's, each meta
    node's (etcd engine) and each storage node's."""
    from fireflyfs.proto import types_pb2

    reply = fetch_routing_reply(url)
    endpoints = {}
    if reply.metrics_address:
        endpoints[reply.metrics_address] = {"service": "meta", "node_id": None, "address": reply.metrics_address}
    for node in sorted(reply.routing.nodes, key=lambda n: (n.type, n.id)):
        if node.metrics_address:
            kind = "meta" if node.type == types_pb2.NODE_META else "storage"
            endpoints[node.metrics_address] = {"service": kind, "node_id": node.id, "address": node.metrics_address}
    return list(endpoints.values())


def scrape(address: str) -> dict[str, float]:
    """One /metrics page as {"name{label=value,...}": value} (histogram buckets left out)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=rpc_timeout_s) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _sum(samples: dict[str, float], prefix: str, having: str = "") -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix) and having in k)


@admin.command("metrics")
@click.argument("url", callback=_url_arg)
@click.option("--raw", is_flag=True, help="Every sample of every service, not the summary.")
@json_option
def metrics(url: str, raw: bool) -> None:
    """Scrape every service's Prometheus /metrics and sum them up: calls, errors, mean latency,
    bulk bytes, chunks and inodes."""
    rows = []
    for endpoint in metrics_endpoints(url):
        try:
            samples = scrape(endpoint["address"])
        except OSError as exc:
            rows.append({**endpoint, "error": str(exc)})
            continue
        calls = _sum(samples, "ffs_rpc_requests_total")
        seconds = _sum(samples, "ffs_rpc_seconds_sum")
        rows.append({**endpoint, "error": None, "rpc_calls": int(calls),
                     "rpc_errors": int(calls - _sum(samples, "ffs_rpc_requests_total", "outcome=ok")),
                     "rpc_mean_ms": round(1000 * seconds / calls, 3) if calls else None,
                     "bulk_read_bytes": int(_sum(samples, "ffs_bulk_bytes_total", "op=read")),
                     "bulk_write_bytes": int(_sum(samples, "ffs_bulk_bytes_total", "op=write")),
                     "bulk_update_bytes": int(_sum(samples, "ffs_bulk_bytes_total", "op=update")),
                     "chunks": int(_sum(samples, "ffs_target_chunks")),
                     "inodes": int(_sum(samples, "ffs_meta_inodes")) if endpoint["service"] == "meta" else None,
                     **({"samples": samples} if raw else {})})
    if json_mode():
        emit_json({"endpoints": rows})
        return
    if raw:
        for row in rows:
            for name, value in sorted(row.get("samples", {}).items()):
                click.echo(f"{row['service']}:{row['node_id'] or ''} {name} {value:g}")
        return
    # 80 columns: endpoints and bytes forwarded along chains are in --json.
    print_table("metrics", ["service", "calls", "errors", "mean ms", "read", "written", "chunks", "inodes"],
                [(f"{r['service']} {r['node_id'] or ''}".strip(), r.get("rpc_calls", r["error"]),
                  r.get("rpc_errors", ""), r.get("rpc_mean_ms") or "", human_bytes(r.get("bulk_read_bytes")),
                  human_bytes(r.get("bulk_write_bytes")),
                  r.get("chunks", "") if r["service"] == "storage" else "",
                  r.get("inodes") if r.get("inodes") is not None else "") for r in rows])


@admin.group("target")
def target() -> None:
    """Take a target offline (held there until set online) or back online."""


def _set_target_state(target_id: int, url: str, offline: bool) -> None:
    from fireflyfs.proto import mgmtd_pb2, types_pb2

    reply = _call(url, "SetTargetState", mgmtd_pb2.SetTargetStateRequest(target_id=target_id, offline=offline))
    state = _enum(types_pb2.PublicTargetState, reply.target.public_state)
    chain = {"id": reply.chain.id, "version": reply.chain.version, "targets": list(reply.chain.targets)} \
        if reply.HasField("chain") else None
    if json_mode():
        emit_json({"target_id": target_id, "admin_offline": offline, "public_state": state,
                   "chain": chain, "routing_version": reply.routing_version})
        return
    where = f"; chain {chain['id']} v{chain['version']}: {','.join(map(str, chain['targets']))}" if chain else ""
    click.echo(f"target {target_id} {'held offline' if offline else 'released'}: now {state}{where}")


def _url_and_id(noun: str):
    """URL ID (ID URL still works, the old order of `target offline`)."""
    return url_and(f"{noun} id (a number such as 1)", positive_id)


@target.command("offline")
@click.argument("url_and_id", nargs=2, metavar="URL ID", callback=_url_and_id("target"))
@json_option
def target_offline(url_and_id: tuple[str, int]) -> None:
    """Hold target ID OFFLINE (it moves to its chain's end) until `target online`."""
    url, target_id = url_and_id
    _set_target_state(target_id, url, True)


@target.command("online")
@click.argument("url_and_id", nargs=2, metavar="URL ID", callback=_url_and_id("target"))
@json_option
def target_online(url_and_id: tuple[str, int]) -> None:
    """Release target ID: it resyncs (waiting, syncing) and serves again."""
    url, target_id = url_and_id
    _set_target_state(target_id, url, False)


@admin.group("chain-table")
def chain_table() -> None:
    """Chain tables: ordered lists of chains that file layouts stripe over."""


@chain_table.command("create")
@click.argument("url", callback=_url_arg)
@click.option("--replicas", type=click.IntRange(1, 8), default=None,
              help="Targets per chain, on distinct nodes  [default: 3 with >= 3 storage nodes, else 1]")
@click.option("--table-id", type=click.IntRange(1), default=None, help="[default: the next free id]")
@click.option("--if-missing", is_flag=True, help="Succeed without change when a chain table exists.")
@json_option
def chain_table_create(url: str, replicas: int | None, table_id: int | None, if_missing: bool) -> None:
    """Build a chain table over the targets not yet in a chain."""
    from fireflyfs.proto import mgmtd_pb2

    reply = _call(url, "CreateChainTable", mgmtd_pb2.CreateChainTableRequest(
        table_id=table_id or 0, replicas=replicas or 0, only_if_missing=if_missing))
    table = reply.table
    if json_mode():
        emit_json({"created": reply.created, "id": table.id, "version": table.version,
                   "replicas": table.replicas, "chains": list(table.chains)})
        return
    click.echo(f"chain table {table.id} {'created' if reply.created else 'exists'}: "
               f"{len(table.chains)} chains of {table.replicas} replicas")
