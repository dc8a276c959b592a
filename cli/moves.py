"""``ffs admin rebalance`` and ``ffs admin node drain|remove``: moving replicas between nodes.

    ffs admin rebalance URL [--dry-run] [--moves-in-flight N] [--wait] [--cancel]
    ffs admin node drain URL ID [--dry-run] [--moves-in-flight N] [--wait]
    ffs admin node remove URL ID

mgmtd plans and runs the moves (meta_service/mgmtd/chain_moves.py: the new
replica joins, syncs through the normal resync, then the old one leaves); the
CLI asks, and with --wait follows routing until the moves are done, then
prints the spread: replicas and bytes per storage node, as Ceph's
``osd df`` shows PGs per OSD.
"""

from __future__ import annotations

import time
from typing import Any

import click

from ._output import StepProgress, emit_json, human_bytes, json_mode, json_option, print_table
from .admin import _call, _enum, _url_and_id, fetch_routing
from .fs import _url_arg

wait_poll_s = 0.5


def move_rows(moves) -> list[dict[str, Any]]:
    from fireflyfs.proto import types_pb2

    return [{"chain": m.chain_id, "from_target": m.from_target, "to_target": m.to_target,
             "phase": _enum(types_pb2.ChainMove.Phase, m.phase), "reason": m.reason} for m in moves]


def spread_rows(routing) -> list[dict[str, Any]]:
    """Per storage node: replicas it holds (targets in a chain), bytes, free targets."""
    from fireflyfs.proto import types_pb2

    rows = {n.id: {"node": n.id, "status": _enum(types_pb2.NodeStatus, n.status), "replicas": 0,
                   "used_bytes": 0, "free_targets": 0}
            for n in routing.nodes if n.type == types_pb2.NODE_STORAGE}
    for target in routing.targets:
        row = rows.get(target.node_id)
        if row is None:
            continue
        row["used_bytes"] += target.used_bytes
        if target.chain_id:
            row["replicas"] += 1
        elif not target.retired:
            row["free_targets"] += 1
    return [rows[node] for node in sorted(rows)]


def _wait_for_moves(url: str, wait_timeout_s: float):
    """Follow routing until no move is pending (a progress bar on a terminal); the routing at the end."""
    started = time.monotonic()
    routing = fetch_routing(url)
    total = len(routing.moves)
    with StepProgress("moving replicas") as progress:
        while routing.moves:
            progress.update(total - len(routing.moves), total)
            if wait_timeout_s and time.monotonic() - started > wait_timeout_s:
                raise click.ClickException(f"{len(routing.moves)} moves still pending after {wait_timeout_s:g} s; "
                                           "they go on (ffs status URL shows them)")
            time.sleep(wait_poll_s)
            routing = fetch_routing(url)
    return routing


def _report(url: str, reply, dry_run: bool, wait: bool, wait_timeout_s: float, what: str) -> None:
    planned, pending = move_rows(reply.planned), move_rows(reply.pending)
    routing = _wait_for_moves(url, wait_timeout_s) if wait and not dry_run else fetch_routing(url)
    spread = spread_rows(routing)
    if json_mode():
        emit_json({"dry_run": dry_run, "planned": planned, "pending": move_rows(routing.moves) if wait else pending,
                   "draining": list(reply.draining), "spread": spread})
        return
    verb = "would move" if dry_run else "moved" if wait else "moving"
    click.echo(f"{what}: {verb} {len(planned)} replicas" + ("" if wait or dry_run else
                                                             f" ({len(pending)} moves pending in all)"))
    if planned:
        print_table(None, ["chain", "from target", "to target"],
                    [(m["chain"], m["from_target"], m["to_target"]) for m in planned])
    print_table("replicas per storage node", ["node", "status", "replicas", "used", "free targets"],
                [(r["node"], r["status"].removeprefix("HEARTBEAT_").lower(), r["replicas"],
                  human_bytes(r["used_bytes"]), r["free_targets"]) for r in spread])


def _move_options(wait_help: str):
    """The options rebalance and drain share: --dry-run, --moves-in-flight, --wait, --wait-timeout."""
    options = [
        click.option("--dry-run", is_flag=True, help="Show the moves without making them."),
        click.option("--moves-in-flight", type=click.IntRange(1, 64), default=None,
                     help="Chains syncing a new replica at once; bounds the resync traffic  "
                          "[default: 1, or as last set]"),
        click.option("--wait", is_flag=True, help=wait_help),
        click.option("--wait-timeout", type=click.FloatRange(0), default=0.0, metavar="SECONDS",
                     help="Give up waiting after this long (the moves go on)  [default: no limit]"),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@click.command("rebalance")
@click.argument("url", callback=_url_arg)
@_move_options("Return once every move is done (a progress bar on a terminal).")
@click.option("--cancel", is_flag=True, help="Drop queued moves, take back syncing ones, end every drain.")
@json_option
def rebalance(url: str, dry_run: bool, moves_in_flight: int | None, wait: bool, wait_timeout: float,
              cancel: bool) -> None:
    """Move replicas so every storage node holds a fair share (new nodes fill up).

    Each move adds a replica on a free target, lets it sync while reads and
    writes go on, then retires the old one; a node dying mid-move loses nothing.
    """
    from fireflyfs.proto import mgmtd_pb2

    reply = _call(url, "Rebalance", mgmtd_pb2.RebalanceRequest(dry_run=dry_run, cancel=cancel,
                                                               moves_in_flight=moves_in_flight or 0))
    if cancel:
        if json_mode():
            emit_json({"cancelled": move_rows(reply.planned)})
        else:
            click.echo(f"cancelled {len(reply.planned)} moves")
        return
    _report(url, reply, dry_run, wait, wait_timeout, "rebalance")


@click.command("drain")
@click.argument("url_and_id", nargs=2, metavar="URL ID", callback=_url_and_id("node"))
@_move_options("Return once the node holds no replica.")
@json_option
def drain(url_and_id: tuple[str, int], dry_run: bool, moves_in_flight: int | None, wait: bool,
          wait_timeout: float) -> None:
    """Move every replica off storage node ID, then keep it empty; stop it and `node remove` it."""
    from fireflyfs.proto import mgmtd_pb2

    url, node_id = url_and_id
    reply = _call(url, "DrainNode", mgmtd_pb2.DrainNodeRequest(node_id=node_id, dry_run=dry_run,
                                                               moves_in_flight=moves_in_flight or 0))
    _report(url, reply, dry_run, wait, wait_timeout, f"drain node {node_id}")


@click.command("remove")
@click.argument("url_and_id", nargs=2, metavar="URL ID", callback=_url_and_id("node"))
@json_option
def remove(url_and_id: tuple[str, int]) -> None:
    """Forget storage node ID: drained (no replica) and stopped."""
    from fireflyfs.proto import mgmtd_pb2

    url, node_id = url_and_id
    reply = _call(url, "RemoveNode", mgmtd_pb2.RemoveNodeRequest(node_id=node_id))
    if json_mode():
        emit_json({"node_id": node_id, "targets": list(reply.targets)})
    else:
        click.echo(f"node {node_id} removed with targets {', '.join(map(str, reply.targets)) or 'none'}")
