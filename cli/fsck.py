"""``ffs admin fsck URL [--repair] [--json]``: compare chunk replicas, find orphans, optionally repair.

A dry run by default: it only reads. Exit codes: 0 clean, 1 problems found
(dry run) or left after ``--repair``. The logic is in fireflyfs.cli.fsck_findings
(comparison) and fireflyfs.cli.fsck_runner (gathering and repair).
"""

from __future__ import annotations

import click

from ._output import EXIT_FAILURE, emit_json, json_mode, json_option, print_table
from .fs import _url_arg, parse_url


@click.command("fsck")
@click.argument("url", callback=_url_arg)
@click.option("--repair", is_flag=True,
              help="Re-copy divergent or missing chunks from the chain head; remove orphaned and "
                   "head-less chunks. Meant for a quiet cluster.")
@click.option("--recheck-delay", type=float, default=1.0, show_default=True,
              help="Seconds between the two passes whose common findings are reported.")
@json_option
@click.pass_context
def fsck(ctx: click.Context, url: str, repair: bool, recheck_delay: float) -> None:
    """Compare every chain's serving replicas (length, checksum, version) and find orphaned chunks."""
    from fireflyfs.cli.fsck_runner import FsckRunner

    host, port, _ = parse_url(url)
    runner = FsckRunner(f"{host}:{port}", recheck_delay_s=recheck_delay)
    report = runner.check()
    found = list(report.findings)
    if repair and found:
        runner.repair(report)
        after = runner.check()
        report.findings = after.findings
    problems = bool(report.findings) or bool(report.repair_failures)
    if json_mode():
        payload = report.to_json()
        payload.update(repair=repair, found_before_repair=len(found) if repair else None)
        emit_json(payload)
    else:
        _print(report, found, repair)
    if problems:
        ctx.exit(EXIT_FAILURE)


def _print(report, found, repair: bool) -> None:
    click.echo(f"checked {report.chains_checked} chains, {report.replicas_checked} serving replicas, "
               f"{report.chunks_checked} chunk copies")
    shown = found if repair else report.findings
    if shown:
        print_table("findings" + (" (before repair)" if repair else ""),
                    ["kind", "chain", "chunk", "target", "head", "detail"],
                    [(f.kind.value, f.chain_id, f"{f.inode}:{f.index}", f.target_id, f.head_target_id,
                      f.detail) for f in shown])
    if repair:
        click.echo(f"repaired {len(report.repaired)}, failed {len(report.repair_failures)}, "
                   f"left after re-check {len(report.findings)}")
        for finding, error in report.repair_failures:
            click.echo(f"  {finding.kind.value} {finding.inode}:{finding.index} on target "
                       f"{finding.target_id}: {error}", err=True)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n)
    click.echo("clean" if report.clean else f"problems: {counts}")
