"""Output plumbing shared by every command group: --json, tables, errors, exit codes.

Data goes to stdout, logs and errors to stderr. Exit codes: 0 success,
1 operation failure (with --json a JSON error object on stderr), 2 usage.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Iterable, Sequence

import click

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_JSON_KEY = "ffs_json"


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_JSON_KEY] = True


json_option = click.option(
    "--json", "json_output", is_flag=True, expose_value=False, is_eager=True, callback=_set_json,
    help="Print machine-readable JSON (same fields as the table; bytes and seconds).")


def json_mode(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(_JSON_KEY))


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table on stdout; plain (no color, no wrapping) when stdout is not a terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    stream = sys.stdout
    is_tty = stream.isatty()
    console = Console(file=stream, no_color=not is_tty or "NO_COLOR" in os.environ,
                      width=None if is_tty else max(shutil.get_terminal_size((200, 24)).columns, 200),
                      highlight=False)
    # Piped: no box drawing, just aligned columns that awk/cut can read.
    table = Table(title=title, box=box.HEAVY_HEAD if is_tty else None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def error_payload(exc: BaseException) -> dict[str, Any]:
    payload: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    errno_value = getattr(exc, "errno", None)
    if errno_value is not None:
        payload["errno"] = errno_value
    return payload


def report_failure(exc: BaseException) -> None:
    """Print exc on stderr (JSON in --json mode)."""
    if json_mode():
        click.echo(json.dumps(error_payload(exc)), err=True)
    else:
        click.echo(f"ffs: error: {type(exc).__name__}: {exc}", err=True)


def human_bytes(count: int | None) -> str:
    if count is None:
        return ""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(count)


def stdout_binary():
    """The binary stdout (sys.stdout is looked up at call time so test runners can swap it)."""
    return sys.stdout.buffer
