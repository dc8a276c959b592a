"""Every table and report the CLI prints fits 80 columns (issue 14): a terminal of that width
shows it unwrapped, and a piped one is no wider. Details that do not fit (paths, endpoints)
are in --json."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import run

COMMANDS = [
    ("status",), ("df",), ("admin", "nodes"), ("admin", "targets"), ("admin", "chains"),
    ("admin", "metrics"), ("admin", "scrub"), ("admin", "fsck", "--metadata-only"),
    ("admin", "rebalance", "--dry-run"), ("admin", "user", "list"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_cluster_views_fit_80_columns(cluster, command):
    if command == ("admin", "user", "list"):
        args = [*command[:-1], command[-1], cluster.url]
    else:
        args = [*command[:2], cluster.url, *command[2:]] if len(command) > 2 else [*command, cluster.url]
    result = run(*args)
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines, f"{' '.join(command)} printed nothing"
    wide = [line for line in lines if len(line.rstrip()) > 80]
    assert not wide, f"{' '.join(command)}: lines over 80 columns:\n" + "\n".join(wide)


def test_file_views_fit_80_columns(cluster):
    url = f"{cluster.url}/widths"
    assert run("put", "-", f"{url}/a-file-with-a-long-name.bin", input=b"x" * 5000).exit_code == 0
    for args in (("ls", "-l", "-h", url), ("stat", f"{url}/a-file-with-a-long-name.bin"), ("du", url),
                 ("cluster", "status", "--dir", str(cluster.cluster.base_dir))):
        result = run(*args)
        assert result.exit_code == 0, result.stdout + result.stderr
        wide = [line for line in result.stdout.splitlines() if len(line.rstrip()) > 80]
        assert not wide, f"{' '.join(args)}: lines over 80 columns:\n" + "\n".join(wide)
