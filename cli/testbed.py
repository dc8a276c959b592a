"""``ffs testbed up|down|status|shape|exec``: the namespace testbed (deploy/testbed.py).

    ffs testbed up [--name tb] [--storage-hosts 2] [--peer-hosts 1] [--rate-mbit 100]
                   [--mode classes|shared|none] [--weights hfreduce=0.94,storage=0.02,...]
    ffs testbed shape --rate-mbit 100 --mode shared      (or --mode none: remove the shaping)
    ffs testbed exec c -- python -m fireflyfs.fabric.hfreduce ...
    ffs testbed status | down

Needs root (network namespaces, tc). State lives in --dir (default
/tmp/ffstb-<name>); ``down`` removes everything the testbed made, even
after a failed ``up``.
"""

from __future__ import annotations

import subprocess
import sys

import click

from ._output import emit_json, json_mode, json_option, print_table

name_option = click.option("--name", default="tb", show_default=True,
                           help="Testbed name (1-6 letters/digits); namespaces are ffstb-<name>-<host>.")
dir_option = click.option("--dir", "base_dir", default=None,
                          help="State directory  [default: /tmp/ffstb-<name>]")


def _testbed(name: str, base_dir: str | None, **spec):
    from fireflyfs.deploy.testbed import Testbed, TestbedSpec

    try:
        return Testbed(TestbedSpec(name=name, **spec), base_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _shaping(rate_mbit: float, mode: str, weights: str | None, buffer_bytes: int):
    from fireflyfs.deploy.testbed_shaping import ShapingSpec, parse_weights

    if mode == "none":
        return None
    try:
        return ShapingSpec(rate_mbit=rate_mbit, mode=mode, buffer_bytes=buffer_bytes,
                           **({"weights": parse_weights(weights)} if weights else {}))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


shaping_options = [
    click.option("--rate-mbit", type=float, default=100.0, show_default=True,
                 help="Bottleneck rate toward the client host."),
    click.option("--mode", type=click.Choice(["classes", "shared", "none"]), default="classes",
                 show_default=True, help="HTB class per traffic class, one shared queue, or no shaping."),
    click.option("--weights", default=None,
                 help="Guaranteed shares, e.g. hfreduce=0.4,storage=0.4 [default: hfreduce=0.94, the others 0.02]"),
    click.option("--buffer-bytes", type=int, default=1_000_000, show_default=True,
                 help="Byte FIFO of each class (the one FIFO in shared mode)."),
]


def _with(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


@click.group()
def testbed() -> None:
    """Network-namespace hosts behind a shaped router, running FireflyFS (root only)."""


@testbed.command("up")
@name_option
@dir_option
@click.option("--storage-hosts", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--peer-hosts", type=click.IntRange(0, 16), default=1, show_default=True,
              help="Compute hosts besides the client host (HFReduce ranks).")
@click.option("--services/--no-services", default=True, show_default=True,
              help="Start meta and storage processes.")
@click.option("--meta-engine", type=click.Choice(["lmdb", "etcd"]), default="lmdb", show_default=True,
              help="etcd: etcd members and meta servers each on a host of their own (e1.., m, m2..)")
@click.option("--etcd-members", type=click.IntRange(1, 7), default=3, show_default=True,
              help="with --meta-engine etcd")
@click.option("--meta-servers", type=click.IntRange(1, 8), default=2, show_default=True,
              help="with --meta-engine etcd")
@_with(shaping_options)
@json_option
def up(name, base_dir, storage_hosts, peer_hosts, services, meta_engine, etcd_members, meta_servers,
       rate_mbit, mode, weights, buffer_bytes) -> None:
    """Build the testbed (if not built), shape the bottleneck, start the services."""
    shaping = _shaping(rate_mbit, mode, weights, buffer_bytes)
    engine = (dict(meta_engine="etcd", etcd_members=etcd_members, meta_servers=meta_servers)
              if meta_engine == "etcd" else {})
    bed = _testbed(name, base_dir, storage_hosts=storage_hosts, peer_hosts=peer_hosts, **engine)
    bed.up(services=services, shaping=shaping)
    if shaping is None:
        bed.remove_shaping()
    _print_status(bed.status())


@testbed.command("down")
@name_option
@dir_option
@json_option
def down(name, base_dir) -> None:
    """Stop everything and remove every namespace, link and qdisc of the testbed."""
    removed = _testbed(name, base_dir).down()
    if json_mode():
        emit_json(removed)
    else:
        click.echo(f"removed {len(removed['namespaces'])} namespaces")


@testbed.command("status")
@name_option
@dir_option
@json_option
def status(name, base_dir) -> None:
    """Hosts, addresses, shaping, processes, and the bottleneck's per-class counters."""
    _print_status(_testbed(name, base_dir).status())


@testbed.command("shape")
@name_option
@dir_option
@_with(shaping_options)
@json_option
def shape(name, base_dir, rate_mbit, mode, weights, buffer_bytes) -> None:
    """Replace the bottleneck's shaping (--mode none removes it)."""
    bed = _testbed(name, base_dir)
    shaping = _shaping(rate_mbit, mode, weights, buffer_bytes)
    if shaping is None:
        bed.remove_shaping()
    else:
        bed.apply_shaping(shaping)
    _print_status(bed.status())


@testbed.command("exec", context_settings={"ignore_unknown_options": True})
@name_option
@dir_option
@click.argument("host")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_(name, base_dir, host, argv) -> None:
    """Run a command on one of the testbed's hosts (c, m, s1.., p1.., sw)."""
    bed = _testbed(name, base_dir)
    try:
        command = bed.command(host, list(argv))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    sys.exit(subprocess.call(command))


def _print_status(state: dict) -> None:
    if json_mode():
        if state["up"]:
            from fireflyfs.deploy.testbed import Testbed, TestbedSpec
            bed = Testbed(TestbedSpec(name=state["name"]), state["dir"])
            if state.get("shaping"):
                state["counters"] = bed.class_counters()
        emit_json(state)
        return
    if not state["up"]:
        click.echo(f"testbed {state['name']} is down")
        return
    rows = [(host, address, " ".join(map(str, state["processes"].get(f"ffstb-{state['name']}-{host}", []))))
            for host, address in state["hosts"].items()]
    print_table(f"testbed {state['name']} (meta {state['meta'] or '-'})", ["host", "address", "pids"], rows)
    shaping = state.get("shaping")
    click.echo("shaping: " + (f"{shaping['mode']} at {shaping['rate_mbit']} Mbit/s, weights "
                              f"{shaping['weights']}" if shaping else "none"))
