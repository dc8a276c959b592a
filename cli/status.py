"""``ffs status URL`` and ``ffs df URL``: the cluster's health and space at a glance, as
``ceph health`` / ``ceph df`` or ``juicefs status``.

One verdict with an exit code a script can branch on:

- HEALTHY (0): every meta server answers, every storage node is online,
  every chain has all its targets serving;
- DEGRADED (1): everything stays readable and writable, but with less
  redundancy or headroom than configured: a node or meta server down, a
  chain short of a replica (resyncing or waiting for one), a space warning,
  no chain table yet;
- UNAVAILABLE (3): some data cannot be served: a chain with no serving
  target, or no meta server answering.

The facts come from mgmtd's routing info (nodes, targets, chains), each meta
server's StatFs (usage) and the chains' targets' used bytes (how far a
resync has come: a syncing target's bytes against its chain head's).
"""

from __future__ import annotations

from typing import Any

import click

from ._output import emit_json, human_bytes, json_mode, json_option, print_table
from .admin import _call, _enum, fetch_routing, node_rows, target_rows
from .fs import _url_arg, url_addresses

HEALTHY, DEGRADED, UNAVAILABLE = "HEALTHY", "DEGRADED", "UNAVAILABLE"
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, UNAVAILABLE: 3}


def _meta_statfs(address: str) -> tuple[Any | None, str | None]:
    """(StatFsReply, None) from one meta server, or (None, why it did not answer)."""
    from fireflyfs.client.config import ClientConfig
    from fireflyfs.common import auth
    from fireflyfs.common.errors import FfsError
    from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
    from fireflyfs.proto import meta_pb2_grpc, types_pb2

    try:
        with make_channel(address, token=auth.client_token()) as channel, rpc_errors_mapped():
            return meta_pb2_grpc.MetaStub(channel).StatFs(
                types_pb2.Empty(), timeout=ClientConfig.from_env().meta_retry_time_s), None
    except FfsError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _chain_report(routing) -> dict[str, Any]:
    """Chains by health, each unhealthy one with its targets' states, and resync progress."""
    from fireflyfs.proto import types_pb2

    targets = {t.id: t for t in routing.targets}
    serving = types_pb2.SERVING
    counts = {"total": len(routing.chains), "healthy": 0, "degraded": 0, "unavailable": 0}
    unhealthy, resyncing = [], []
    arriving = {move.to_target for move in routing.moves}    # a move's new replica: extra until it serves
    for chain in sorted(routing.chains, key=lambda c: c.id):
        members = [targets.get(t) for t in chain.targets]
        states = [_enum(types_pb2.PublicTargetState, m.public_state) if m else "UNKNOWN" for m in members]
        serving_members = [m for m in members if m is not None and m.public_state == serving]
        head_bytes = serving_members[0].used_bytes if serving_members else 0
        for member in members:
            if member is not None and member.public_state == types_pb2.SYNCING:
                resyncing.append({"target": member.id, "chain": chain.id, "node": member.node_id,
                                  "bytes": member.used_bytes, "head_bytes": head_bytes,
                                  "fraction": round(min(1.0, member.used_bytes / head_bytes), 3)
                                  if head_bytes else None, "move": member.id in arriving})
        if serving_members and len(serving_members) >= len([t for t in chain.targets if t not in arriving]):
            counts["healthy"] += 1
            continue
        health = "degraded" if serving_members else "unavailable"
        counts[health] += 1
        unhealthy.append({"id": chain.id, "health": health, "targets": list(chain.targets),
                          "target_states": states})
    return {"counts": counts, "unhealthy": unhealthy, "resyncing": resyncing}


def cluster_status(url: str) -> dict[str, Any]:
    """Everything ``ffs status`` prints, with its verdict under "health"."""
    from fireflyfs.common.errors import FfsError
    from fireflyfs.proto import mgmtd_pb2, types_pb2

    addresses = url_addresses(url)
    problems: list[str] = []
    metas = []
    usage = None
    for address in addresses:
        reply, why = _meta_statfs(address)
        metas.append({"address": address, "answers": reply is not None, "error": why})
        if reply is None:
            problems.append(f"meta server {address} does not answer: {why}")
        elif usage is None:
            usage = reply
    report: dict[str, Any] = {"url": url, "meta_servers": metas}
    if usage is None:
        report.update(health=UNAVAILABLE, problems=problems)
        return report
    try:
        routing = _call(url, "GetRoutingInfo", mgmtd_pb2.GetRoutingInfoRequest()).routing
    except FfsError as exc:
        problems.append(f"the cluster manager does not answer: {type(exc).__name__}: {exc}")
        report.update(health=UNAVAILABLE, problems=problems)
        return report

    nodes = node_rows(routing)
    storage_nodes = [n for n in nodes if n["type"] == "STORAGE"]
    for node in storage_nodes:
        if node["status"] != "HEARTBEAT_CONNECTED":
            problems.append(f"storage node {node['id']} ({node['address']}) is {node['status']}")
    chains = _chain_report(routing)
    for chain in chains["unhealthy"]:
        states = ", ".join(f"{t} {s}" for t, s in zip(chain["targets"], chain["target_states"]))
        problems.append(f"chain {chain['id']} is {chain['health']}: {states}")
    if not routing.chain_tables:
        problems.append("no chain table: files cannot be written (ffs admin chain-table create)")
    if usage.meta_warning:
        problems.append(f"metadata: {usage.meta_warning}")
    target_states: dict[str, int] = {}
    for t in routing.targets:
        # A target in no chain has no public state that means anything: free, or retired by a move
        # (its node is deleting the old copy).
        name = (_enum(types_pb2.PublicTargetState, t.public_state) if t.chain_id
                else "RETIRED" if t.retired else "FREE")
        target_states[name] = target_states.get(name, 0) + 1

    if chains["counts"]["unavailable"]:
        health = UNAVAILABLE
    elif problems:
        health = DEGRADED
    else:
        health = HEALTHY
    report.update(
        health=health, problems=problems, routing_version=routing.version,
        nodes=nodes, targets=target_states, chains=chains["counts"],
        unhealthy_chains=chains["unhealthy"], resyncing=chains["resyncing"],
        moves=[{"chain": m.chain_id, "from_target": m.from_target, "to_target": m.to_target,
                "phase": _enum(types_pb2.ChainMove.Phase, m.phase), "reason": m.reason} for m in routing.moves],
        chain_tables=[{"id": t.id, "replicas": t.replicas, "chains": len(t.chains)}
                      for t in routing.chain_tables],
        usage={"capacity_bytes": usage.capacity_bytes, "used_bytes": usage.used_bytes,
               "free_bytes": usage.free_bytes, "inodes": usage.inodes,
               "gc_pending": usage.gc_pending})
    return report


def _print(report: dict[str, Any]) -> None:
    click.echo(f"cluster {report['url']}: {report['health']}")
    metas = report["meta_servers"]
    answering = [m["address"] for m in metas if m["answers"]]
    click.echo(f"  meta      {len(answering)} of {len(metas)} answering")
    if "nodes" in report:
        storage = [n for n in report["nodes"] if n["type"] == "STORAGE"]
        online = sum(n["status"] == "HEARTBEAT_CONNECTED" for n in storage)
        click.echo(f"  storage   {online} of {len(storage)} nodes online")
        click.echo("  targets   " + ", ".join(f"{count} {state.lower()}"
                                             for state, count in sorted(report["targets"].items())))
        counts = report["chains"]
        tables = ", ".join(f"table {t['id']}: {t['chains']} x {t['replicas']}" for t in report["chain_tables"])
        click.echo(f"  chains    {counts['healthy']} healthy, {counts['degraded']} degraded, "
                   f"{counts['unavailable']} unavailable" + (f" ({tables})" if tables else ""))
        usage = report["usage"]
        share = usage["used_bytes"] / usage["capacity_bytes"] if usage["capacity_bytes"] else 0.0
        click.echo(f"  usage     {human_bytes(usage['used_bytes'])} of {human_bytes(usage['capacity_bytes'])} "
                   f"({share:.1%}), {human_bytes(usage['free_bytes'])} free, {usage['inodes']} inodes, "
                   f"{usage['gc_pending']} awaiting GC")
        if report["moves"]:
            syncing = sum(m["phase"] == "SYNCING" for m in report["moves"])
            reasons = ", ".join(sorted({m["reason"] for m in report["moves"]}))
            click.echo(f"  moving    {len(report['moves'])} replicas ({syncing} syncing, "
                       f"{len(report['moves']) - syncing} queued): {reasons}")
        for sync in report["resyncing"]:
            how_far = f"{sync['fraction']:.0%}" if sync["fraction"] is not None else "?"
            click.echo(f"  resyncing target {sync['target']} (chain {sync['chain']}, node {sync['node']}): "
                       f"{human_bytes(sync['bytes'])} of the head's {human_bytes(sync['head_bytes'])} "
                       f"({how_far})")
    for problem in report["problems"]:
        click.echo(f"  ! {problem}")


@click.command("status")
@click.argument("url", callback=_url_arg)
@json_option
@click.pass_context
def status(ctx: click.Context, url: str) -> None:
    """Health of the cluster at URL: nodes, chains by state, resyncs, usage.

    Exit code 0 HEALTHY, 1 DEGRADED (all data served, with less redundancy or
    headroom than configured), 3 UNAVAILABLE (some data cannot be served)."""
    report = cluster_status(url)
    report["exit_code"] = EXIT_CODES[report["health"]]
    if json_mode():
        emit_json(report)
    else:
        _print(report)
    ctx.exit(report["exit_code"])


@click.command("df")
@click.argument("url", callback=_url_arg)
@json_option
def df(url: str) -> None:
    """Space of the cluster at URL: each target's used bytes and capacity (its quota, or its fair
    share of its file system's free space), per node and in total."""
    routing = fetch_routing(url)
    rows = target_rows(routing)
    nodes: dict[int, dict[str, int]] = {}
    for row in rows:
        node = nodes.setdefault(row["node_id"], {"node_id": row["node_id"], "targets": 0, "used_bytes": 0,
                                                 "capacity_bytes": 0})
        node["targets"] += 1
        node["used_bytes"] += row["used_bytes"]
        node["capacity_bytes"] += row["capacity_bytes"]
    total = {"targets": len(rows), "used_bytes": sum(r["used_bytes"] for r in rows),
             "capacity_bytes": sum(r["capacity_bytes"] for r in rows),
             "file_systems": len({r["fs_id"] for r in rows if r["fs_id"]})}
    total["free_bytes"] = max(0, total["capacity_bytes"] - total["used_bytes"])
    if json_mode():
        emit_json({"total": total, "nodes": list(nodes.values()),
                   "targets": [{k: r[k] for k in ("id", "node_id", "chain_id", "used_bytes", "capacity_bytes",
                                                  "chunk_count", "fs_id", "public_state")} for r in rows]})
        return

    def use(used: int, capacity: int) -> str:
        return f"{used / capacity:.1%}" if capacity else ""

    # 80 columns: each target's file system (host:device) is in --json.
    print_table(None, ["target", "node", "chain", "used", "capacity", "use", "chunks"],
                [(r["id"], r["node_id"], r["chain_id"], human_bytes(r["used_bytes"]), human_bytes(r["capacity_bytes"]),
                  use(r["used_bytes"], r["capacity_bytes"]), r["chunk_count"]) for r in rows])
    click.echo(f"total: {human_bytes(total['used_bytes'])} of {human_bytes(total['capacity_bytes'])} "
               f"({use(total['used_bytes'], total['capacity_bytes'])}), {human_bytes(total['free_bytes'])} free; "
               f"{total['targets']} targets, {total['file_systems']} file system(s)")
