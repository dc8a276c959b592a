"""``ffs admin fsck URL [--metadata-only] [--repair [--yes] [--max-delete N] [--force-orphan-delete]] [--json]``.

Compares chunk replicas (their bytes too, unless --metadata-only) and finds
orphans. Only reads unless --repair; --repair alone prints what it would do
(rewrites and deletions per target, and what it refuses) and changes nothing;
--yes makes it act. Exit codes: 0 clean (after repair, if any), 1 problems
found or left, or a repair shown but not carried out (no --yes). The logic is
in fsck_findings (the vote per chunk), fsck_plan (what repair may do) and
fsck_runner (gathering and repair).
"""

from __future__ import annotations

import click

from ._output import EXIT_FAILURE, StepProgress, emit_json, json_mode, json_option, print_table
from .fs import _url_arg, parse_url
from .fsck_plan import delete_max_default


@click.command("fsck")
@click.argument("url", callback=_url_arg)
@click.option("--metadata-only", is_flag=True,
              help="Compare stored metadata only; skip re-reading chunk bytes (faster, misses bit rot).")
@click.option("--repair", is_flag=True,
              help="Plan the repair: rewrite bad replicas from the copy the majority agrees on; delete "
                   "chunks the majority lacks and orphans. Shows the plan; acts only with --yes. "
                   "Meant for a quiet cluster.")
@click.option("--yes", is_flag=True, help="With --repair: carry the plan out.")
@click.option("--max-delete", type=click.IntRange(min=0), default=delete_max_default, show_default=True,
              help="With --repair: when more chunks would be deleted, delete none.")
@click.option("--force-orphan-delete", is_flag=True,
              help="With --repair: delete orphans even when the metadata store looks older than the chunks "
                   "(still capped by --max-delete).")
@click.option("--recheck-delay", type=float, default=1.0, show_default=True,
              help="Seconds between the two passes whose common findings are reported.")
@json_option
@click.pass_context
def fsck(ctx: click.Context, url: str, metadata_only: bool, repair: bool, yes: bool, max_delete: int,
         force_orphan_delete: bool, recheck_delay: float) -> None:
    """Compare every chain's serving replicas (bytes, length, checksum, version) and find orphaned chunks."""
    from fireflyfs.cli.fsck_plan import plan_repair
    from fireflyfs.cli.fsck_runner import FsckRunner

    if (yes or force_orphan_delete) and not repair:
        raise click.UsageError("--yes and --force-orphan-delete only make sense with --repair")
    host, port, _ = parse_url(url)
    with StepProgress("checking chains") as progress:
        runner = FsckRunner(f"{host}:{port}", recheck_delay_s=recheck_delay, verify_bytes=not metadata_only,
                            progress=lambda done, total, label: progress.update(done, total, label))
        report = runner.check()
        found = list(report.findings)
        plan = None
        if repair and found:
            plan = plan_repair(found, runner.census(), delete_max=max_delete,
                               force_orphan_delete=force_orphan_delete)
            if yes and not plan.empty:
                runner.repair(plan, report)
                report.findings = runner.check().findings
    acted = bool(plan) and yes
    problems = bool(report.findings) or bool(report.repair_failures)
    if json_mode():
        payload = report.to_json()
        payload.update(repair=repair, acted=acted, found_before_repair=len(found) if repair else None,
                       plan=plan.to_json() if plan else None)
        emit_json(payload)
    else:
        _print(report, found, plan, acted)
    if problems:
        ctx.exit(EXIT_FAILURE)


def _print(report, found, plan, acted: bool) -> None:
    how = "bytes verified" if report.bytes_verified else "metadata only"
    click.echo(f"checked {report.chains_checked} chains, {report.replicas_checked} serving replicas, "
               f"{report.chunks_checked} chunk copies ({how})")
    if found:
        print_table("findings" + (" (before repair)" if acted else ""),
                    ["kind", "chain", "chunk", "target", "good copy on", "detail"],
                    [(f.kind.value, f.chain_id, f"{f.inode}:{f.index}", f.target_id or "",
                      f.source_target_id or "", f.detail) for f in found])
    if plan is not None:
        _print_plan(plan, acted)
    if acted:
        click.echo(f"repaired {len(report.repaired)}, failed {len(report.repair_failures)}, "
                   f"left after re-check {len(report.findings)}")
        for finding, error in report.repair_failures:
            click.echo(f"  {finding.kind.value} {finding.inode}:{finding.index} on target "
                       f"{finding.target_id}: {error}", err=True)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n)
    click.echo("clean" if report.clean else f"problems: {counts}")


def _print_plan(plan, acted: bool) -> None:
    if not plan.empty:
        print_table("repair plan", ["target", "rewrites", "deletions"],
                    [(target, counts["rewrites"], counts["deletions"])
                     for target, counts in plan.per_target().items()])
    click.echo(f"repair plan{'' if acted else ' (dry run)'}: {len(plan.rewrites)} rewrites, "
               f"{len(plan.deletions)} deletions, {len(plan.left_alone)} findings left alone")
    reasons: dict[str, int] = {}
    for _finding, reason in plan.left_alone:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        click.echo(f"  left alone ({count}): {reason}")
    for refusal in plan.refusals:
        click.echo(refusal, err=True)
    if not acted:
        click.echo("dry run: nothing changed; run again with --yes to carry this plan out", err=True)
