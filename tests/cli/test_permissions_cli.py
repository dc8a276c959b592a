"""ffs chmod, ffs chown, ffs ls -l and the user commands, against the session cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from click.testing import CliRunner

from fireflyfs.cli.main import cli
from tests.conftest import unique_dir


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_as(token: str, *args: str) -> subprocess.CompletedProcess:
    """ffs in its own process with token (in this process fsspec would reuse the admin's filesystem)."""
    return subprocess.run([sys.executable, "-m", "fireflyfs.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "FFS_TOKEN": token}, timeout=60)


def test_chmod_chown_and_ls_long(cluster, tmp_path):
    base = f"{cluster.url}{unique_dir('perm-cli')}"
    local = tmp_path / "a.txt"
    local.write_bytes(b"hello")
    assert run("put", str(local), f"{base}/a.txt").exit_code == 0
    listing = run("ls", "-l", base)
    assert listing.exit_code == 0 and "-rw-r--r--" in listing.stdout, listing.stdout   # umask 022
    assert run("chmod", "640", f"{base}/a.txt").exit_code == 0
    assert run("chown", "1234:2345", f"{base}/a.txt").exit_code == 0        # the admin may
    info = json.loads(run("--json", "stat", f"{base}/a.txt").stdout)
    assert (info["mode"] & 0o7777, info["uid"], info["gid"]) == (0o640, 1234, 2345)
    listing = run("ls", "-l", base).stdout
    assert "-rw-r-----" in listing and "1234" in listing and "2345" in listing
    bad = run("chmod", "999", f"{base}/a.txt")
    assert bad.exit_code != 0 and "octal" in bad.output


def test_users_whoami_and_a_denied_chmod(cluster):
    name = f"carol{uuid.uuid4().hex[:6]}"
    added = json.loads(run("admin", "user", "add", cluster.url, name, "--uid", "4321", "--json").stdout)
    token = added["token"]
    assert added["user"]["uid"] == 4321 and token.startswith("ffsu.")
    listed = json.loads(run("admin", "user", "list", cluster.url, "--json").stdout)["users"]
    assert any(u["name"] == name for u in listed) and all("token" not in u for u in listed)
    who = json.loads(run_as(token, "whoami", cluster.url, "--json").stdout)
    assert (who["name"], who["uid"], who["admin"]) == (name, 4321, False)
    denied = run_as(token, "chmod", "777", f"{cluster.url}/")
    assert denied.returncode == 1 and "PermissionDenied" in denied.stderr, denied
    refused = run_as(token, "admin", "user", "list", cluster.url)
    assert refused.returncode == 1 and "for admins" in refused.stderr, refused
    rotated = json.loads(run("admin", "user", "token", "rotate", name, cluster.url, "--json").stdout)["token"]
    assert rotated != token
    assert run("admin", "user", "remove", cluster.url, name).exit_code == 0
