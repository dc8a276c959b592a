"""``ffs admin scrub URL [--json]``: scrub progress and repairs of every storage target.

Asks each storage node routing names (Mgmtd.GetRoutingInfo) for
Storage.ScrubStatus: per target, how far the current scrub pass is (bytes
verified of the target's used bytes when the pass started), when the last full
pass ended and how long it took, and what scrub, reads and client reports
found: bad chunks confirmed, repaired from a replica, unrepairable (no replica
held a good copy), repairs still queued. Read-only. Exit code 1 when a node
did not answer (the others are still shown) or a target holds unrepairable
chunks.
"""

from __future__ import annotations

import time
from typing import Any

import click

from ._output import EXIT_FAILURE, emit_json, human_bytes, json_mode, json_option, print_table
from .admin import fetch_routing
from .fs import _url_arg

rpc_timeout_s = 10.0


def scrub_rows(reply, node_id: int, address: str, now_s: float) -> list[dict[str, Any]]:
    """One row per target of a ScrubStatus reply, with stable field names (seconds, bytes)."""
    rows = []
    for status in reply.targets:
        running = status.pass_started_s > 0
        total = status.pass_bytes_total
        rows.append({
            "node_id": node_id, "address": address, "target_id": status.target_id,
            "rate_bytes_per_s": reply.rate_bytes_per_s, "pass_running": running,
            "pass_started_s": status.pass_started_s or None,
            "pass_chunks_checked": status.pass_chunks_checked, "pass_bytes_checked": status.pass_bytes_checked,
            "pass_bytes_total": total,
            "progress_percent": (round(min(100.0, 100.0 * status.pass_bytes_checked / total), 1) if total
                                 else 100.0) if running else None,
            "last_pass_ended_s": status.last_pass_ended_s or None,
            "last_pass_age_s": round(now_s - status.last_pass_ended_s, 1) if status.last_pass_ended_s else None,
            "last_pass_duration_s": round(status.last_pass_duration_s, 3) if status.last_pass_ended_s else None,
            "passes_completed": status.passes_completed,
            "bad_found": status.bad_found, "repaired": status.repaired, "unrepairable": status.unrepairable,
            "reports_received": status.reports_received, "reports_unconfirmed": status.reports_unconfirmed,
            "repairs_queued": status.repairs_queued,
        })
    return rows


def fetch_scrub_status(address: str):
    from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
    from fireflyfs.proto import storage_pb2_grpc, types_pb2

    with make_channel(address) as channel, rpc_errors_mapped():
        return storage_pb2_grpc.StorageStub(channel).ScrubStatus(types_pb2.Empty(), timeout=rpc_timeout_s)


@click.command("scrub")
@click.argument("url", callback=_url_arg)
@json_option
@click.pass_context
def scrub(ctx: click.Context, url: str) -> None:
    """Scrub progress, last full pass and bad chunks found/repaired, per storage target."""
    from fireflyfs.common.errors import FfsError
    from fireflyfs.proto import types_pb2

    routing = fetch_routing(url)
    rows: list[dict[str, Any]] = []
    unreachable: list[dict[str, Any]] = []
    for node in sorted(routing.nodes, key=lambda n: n.id):
        if node.type != types_pb2.NODE_STORAGE:
            continue
        try:
            reply = fetch_scrub_status(node.address)
        except FfsError as exc:
            unreachable.append({"node_id": node.id, "address": node.address,
                                "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.extend(scrub_rows(reply, node.id, node.address, time.time()))
    if json_mode():
        emit_json({"routing_version": routing.version, "targets": rows, "unreachable": unreachable})
    else:
        print_table(f"scrub (routing version {routing.version})",
                    ["node", "target", "rate/s", "pass", "verified", "last full", "bad", "fixed", "lost",
                     "queued"],
                    [(r["node_id"], r["target_id"], human_bytes(r["rate_bytes_per_s"]) if r["rate_bytes_per_s"]
                      else "off", f"{r['progress_percent']}%" if r["pass_running"] else "idle",
                      human_bytes(r["pass_bytes_checked"]),
                      f"{r['last_pass_age_s']:.0f}s ago" if r["last_pass_ended_s"] else "never",
                      r["bad_found"], r["repaired"], r["unrepairable"], r["repairs_queued"]) for r in rows])
        for node in unreachable:
            click.echo(f"node {node['node_id']} ({node['address']}): {node['error']}", err=True)
    if unreachable or any(r["unrepairable"] for r in rows):
        ctx.exit(EXIT_FAILURE)
