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


_JSON_HELP = "Print machine-readable JSON (same fields as the table; bytes and seconds)."
json_option = click.option(
    "--json", "json_output", is_flag=True, expose_value=False, is_eager=True, callback=_set_json,
    help=_JSON_HELP)

timeout_default_s = 5.0       # how long a command keeps trying to reach the metadata service
TIMEOUT_HELP = f"Give up reaching the cluster after SECONDS (default {timeout_default_s:g}; also FFS_TIMEOUT)."


def _set_timeout(ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
    if value is not None:
        apply_timeout(value)


def apply_timeout(seconds: float) -> None:
    """Clients this command makes give up reaching the metadata service after seconds
    (FFS_CLIENT_META_RETRY_TIME_S in the environment still wins). Storage calls keep their
    own budget: a chain failing over needs mgmtd's heartbeat timeout, not the user's patience."""
    from fireflyfs.client import config

    config.set_process_defaults({"meta_retry_time_s": seconds})


def global_params() -> list[click.Option]:
    """--json and --timeout, accepted after any subcommand as well as before it."""
    return [click.Option(["--json", "json_output"], is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_json, help=_JSON_HELP),
            click.Option(["--timeout"], type=click.FloatRange(min=0.1), expose_value=False, is_eager=True,
                         callback=_set_timeout, metavar="SECONDS",
                         help=TIMEOUT_HELP)]


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


def error_class(exc: BaseException) -> type:
    """The FireflyFS error class exc is reported as (common/errors.py): Python's own OS errors
    under the same names and errnos, so one failure reads the same whichever layer raised it."""
    from fireflyfs.common import errors

    if isinstance(exc, errors.FfsError):
        return type(exc)
    for builtin, ours in ((FileNotFoundError, errors.NotFound), (FileExistsError, errors.AlreadyExists),
                          (NotADirectoryError, errors.NotADirectory), (IsADirectoryError, errors.IsADirectory),
                          (PermissionError, errors.PermissionDenied), (ValueError, errors.InvalidArgument),
                          (TimeoutError, errors.Unavailable), (ConnectionError, errors.Unavailable)):
        if isinstance(exc, builtin):
            return ours
    return type(exc)


def error_name(exc: BaseException) -> str:
    return error_class(exc).__name__


def error_errno(exc: BaseException) -> int:
    """The POSIX errno of exc (EIO when neither it nor its class has one)."""
    import errno

    ours = getattr(error_class(exc), "errno_value", None)
    if ours is not None:
        return ours
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) else errno.EIO


def error_payload(exc: BaseException) -> dict[str, Any]:
    return {"error": error_name(exc), "errno": error_errno(exc), "message": str(exc)}


def report_failure(exc: BaseException) -> None:
    """Print exc on stderr (JSON in --json mode)."""
    from fireflyfs.common.errors import Unavailable

    if json_mode():
        click.echo(json.dumps(error_payload(exc)), err=True)
        return
    click.echo(f"ffs: error: {error_name(exc)}: {exc}", err=True)
    if isinstance(exc, Unavailable):
        click.echo("ffs: hint: is the cluster running at that address? --timeout SECONDS waits longer",
                   err=True)


def size_param(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A click callback: a positive byte size such as 4MiB or 1048576 (None stays None)."""
    from fireflyfs.common.units import parse_positive_size

    if value is None:
        return None
    try:
        return parse_positive_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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


def _stderr_bar(label: str, *columns: str):
    """(a started rich Progress on stderr with a bar and the named rich.progress columns, its
    task), or (None, None) when stderr is not a terminal or the output is --json."""
    if not sys.stderr.isatty() or json_mode():
        return None, None
    from rich import progress
    from rich.console import Console

    bar = progress.Progress(progress.TextColumn("{task.description}"), progress.BarColumn(),
                            *(getattr(progress, name)() for name in columns),
                            console=Console(file=sys.stderr), transient=True)
    task = bar.add_task(label, total=None)
    bar.start()
    return bar, task


class TransferProgress:
    """Bytes moved by put/get: a progress bar on stderr when it is a terminal and not --json,
    nothing when piped; ``summary()`` gives the bytes, files and seconds.

    ``callback`` is what fsspec's put/get take: fsspec branches a callback off it for each
    path and reports a file's size and bytes to it.
    """

    def __init__(self, label: str) -> None:
        import time

        from fsspec.callbacks import Callback

        self.bytes = 0
        self.files = 0
        self._total = 0
        self._started = time.monotonic()
        self._progress, self._task = _stderr_bar(label, "DownloadColumn", "TransferSpeedColumn",
                                                 "TimeRemainingColumn")
        outer = self

        class _FileBytes(Callback):
            def set_size(self, size):       # a file (a directory is made without one)
                outer.files += 1
                outer.expect_bytes(size)

            def relative_update(self, inc=1):
                outer.add_bytes(inc)

        class _Files(Callback):
            def set_size(self, size):
                pass

            def relative_update(self, inc=1):
                pass

            def branched(self, path_1, path_2, **kwargs):
                return _FileBytes()

        self.callback = _Files()

    def expect_bytes(self, count: int) -> None:
        self._total += count
        if self._progress is not None:
            self._progress.update(self._task, total=self._total)

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self._progress is not None:
            self._progress.update(self._task, advance=count)

    def __enter__(self) -> "TransferProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def summary(self) -> dict[str, Any]:
        import time

        return {"bytes": self.bytes, "files": self.files, "seconds": round(time.monotonic() - self._started, 3)}


class StepProgress:
    """Steps of a long command (fsck's chains, a rebalance's moves): a bar on stderr when it is a
    terminal and not --json, nothing when piped."""

    def __init__(self, label: str) -> None:
        self._progress, self._task = _stderr_bar(label, "MofNCompleteColumn", "TimeElapsedColumn")

    def update(self, done: int, total: int, label: str | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total,
                                  **({"description": label} if label else {}))

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
