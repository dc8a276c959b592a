"""File commands as operators know them from coreutils and s3/gsutil CLIs (cli/fs.py)."""

from __future__ import annotations

import errno
import json

import click
import pytest

from tests.cli.test_cli import run
from tests.conftest import unique_dir


@pytest.fixture
def base(cluster) -> str:
    return f"{cluster.url}{unique_dir('fscmd')}"


def _put_bytes(url: str, data: bytes) -> None:
    result = run("put", "-", url, input=data)
    assert result.exit_code == 0, result.stderr


def test_put_dash_reads_stdin(base):
    data = bytes(range(256)) * 5000
    _put_bytes(f"{base}/from-stdin", data)
    assert run("cat", f"{base}/from-stdin").stdout_bytes == data


def test_rm_goes_on_past_an_error_and_f_ignores_missing_paths(base):
    for name in ("a", "b"):
        _put_bytes(f"{base}/{name}", b"x")
    result = run("rm", f"{base}/a", f"{base}/nope", f"{base}/b", "--json")
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)
    assert outcome["removed"] == [f"{base}/a", f"{base}/b"] and not outcome["ok"]
    assert [(f["url"], f["errno"]) for f in outcome["failed"]] == [(f"{base}/nope", errno.ENOENT)]
    assert not run("ls", base).stdout.split()
    _put_bytes(f"{base}/c", b"x")
    result = run("rm", "-f", f"{base}/nope", f"{base}/c")
    assert result.exit_code == 0 and result.stderr == ""
    assert run("rm", f"{base}/nope").exit_code == 1


def test_rmdir_removes_only_empty_directories(base):
    assert run("mkdir", "-p", f"{base}/empty", f"{base}/full").exit_code == 0
    _put_bytes(f"{base}/full/f", b"x")
    result = run("rmdir", f"{base}/full", f"{base}/empty")
    assert result.exit_code == 1 and "NotEmpty" in result.stderr
    assert run("ls", base).stdout.split() == ["full/"]


def test_a_file_in_the_parent_path_is_not_a_directory(base):
    _put_bytes(f"{base}/x", b"file")
    result = run("put", "-", f"{base}/x/a.txt", "--json", input=b"data")
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["error"] == "NotADirectory" and error["errno"] == errno.ENOTDIR
    result = run("put", "-", f"{base}/x/deeper/a.txt", input=b"data")
    assert result.exit_code == 1 and "NotADirectory" in result.stderr
    assert run("cat", f"{base}/x").stdout_bytes == b"file", "nothing changed"


def test_mv_makes_missing_parents_and_names_a_missing_source(base):
    _put_bytes(f"{base}/src", b"moving")
    result = run("mv", f"{base}/src", f"{base}/new/dir/dst")
    assert result.exit_code == 0, result.stderr
    assert run("cat", f"{base}/new/dir/dst").stdout_bytes == b"moving"
    missing = run("mv", f"{base}/src", f"{base}/other/dst")
    assert missing.exit_code == 1 and "NotFound" in missing.stderr
    assert run("ls", base).stdout.split() == ["new/"], "a failed mv makes no directories"


def test_cp_copies_files_and_trees_within_the_cluster(base):
    _put_bytes(f"{base}/t/one", b"1" * 5000)
    _put_bytes(f"{base}/t/sub/two", b"2" * 7)
    assert run("cp", f"{base}/t/one", f"{base}/copies/one").exit_code == 0
    assert run("cat", f"{base}/copies/one").stdout_bytes == b"1" * 5000
    assert run("cp", f"{base}/t", f"{base}/t2").exit_code == 1          # a directory needs -r
    assert run("cp", "-r", f"{base}/t", f"{base}/t2").exit_code == 0
    assert run("cat", f"{base}/t2/sub/two").stdout_bytes == b"2" * 7
    assert run("cat", f"{base}/t/one").stdout_bytes == b"1" * 5000, "the source stays"


def test_find_and_tree_walk_a_directory(base):
    for name in ("a/x.bin", "a/b/y.txt", "z.txt"):
        _put_bytes(f"{base}/{name}", b"12345")
    root = base.split("/", 3)[3]
    found = run("find", base).stdout.split()
    assert found == [f"/{root}/", f"/{root}/a/", f"/{root}/a/b/", f"/{root}/a/b/y.txt", f"/{root}/a/x.bin",
                     f"/{root}/z.txt"]
    assert run("find", base, "--name", "*.txt", "--type", "f").stdout.split() == [
        f"/{root}/a/b/y.txt", f"/{root}/z.txt"]
    assert run("find", base, "--type", "d", "--maxdepth", "1").stdout.split() == [f"/{root}/", f"/{root}/a/"]
    assert run("tree", base).stdout.splitlines() == [
        f"/{root}", "├── a/", "│   ├── b/", "│   │   └── y.txt  (5 B)", "│   └── x.bin  (5 B)", "└── z.txt  (5 B)",
        "", "2 directories, 3 files"]
    assert run("find", f"{base}/nope").exit_code == 1


def test_mkdir_sets_the_layout_of_files_created_in_it_and_stat_shows_it(base):
    result = run("mkdir", "-p", f"{base}/small", "--chunk-size", "1MiB", "--stripe", "2", "--chain-table", "1")
    assert result.exit_code == 0, result.stderr
    directory = json.loads(run("stat", f"{base}/small", "--json").stdout)
    assert (directory["chunk_size"], directory["stripe_size"], directory["chain_table"]) == (1 << 20, 2, 1)
    _put_bytes(f"{base}/small/sub/file", b"z" * (3 << 20))
    info = json.loads(run("stat", f"{base}/small/sub/file", "--json").stdout)
    assert (info["chunk_size"], info["stripe_size"]) == (1 << 20, 2), "inherited through sub/"
    assert "chunk_size   1048576" in run("stat", f"{base}/small/sub/file").stdout
    bad = run("mkdir", f"{base}/odd", "--chunk-size", "3MiB")
    assert bad.exit_code == 1 and "InvalidArgument" in bad.stderr
    assert run("mkdir", f"{base}/neg", "--chunk-size", "0").exit_code == 2


def test_put_and_get_report_bytes_files_and_seconds(base, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_bytes(b"a" * 5000)
    (tree / "sub" / "b").write_bytes(b"b" * (5 << 20))
    single = json.loads(run("put", str(tree / "a"), f"{base}/a", "--json").stdout)
    assert (single["bytes"], single["files"]) == (5000, 1) and single["seconds"] >= 0
    many = json.loads(run("put", "-r", str(tree), f"{base}/tree", "--json").stdout)
    assert (many["bytes"], many["files"]) == (5000 + (5 << 20), 2)
    out = tmp_path / "out"
    back = json.loads(run("get", "-r", f"{base}/tree", str(out), "--json").stdout)
    assert (back["bytes"], back["files"]) == (5000 + (5 << 20), 2)
    assert (out / "sub" / "b").read_bytes() == b"b" * (5 << 20)
    piped = json.loads(run("put", "-", f"{base}/stdin", "--json", input=b"s" * 777).stdout)
    assert (piped["bytes"], piped["files"]) == (777, 1)
    plain = run("get", f"{base}/a", str(tmp_path / "a-copy"))
    assert plain.exit_code == 0 and plain.stdout == "" and plain.stderr == "", "no progress bar when piped"


def test_the_progress_bar_draws_on_a_terminal(base, tmp_path, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    local = tmp_path / "big"
    local.write_bytes(b"p" * (9 << 20))
    from fireflyfs.cli._output import TransferProgress

    fs_url = f"{base}/big"
    import fsspec
    fs, path = fsspec.url_to_fs(fs_url, skip_instance_cache=True)
    with TransferProgress("put big") as progress:
        fs.put(str(local), path, callback=progress.callback)
    assert progress.summary()["bytes"] == 9 << 20
    assert "put big" in terminal.getvalue()


def test_urls_name_one_or_several_meta_servers():
    from fireflyfs.cli.fs import parse_url, url_addresses

    assert url_addresses("ffs://10.0.0.1:7000,10.0.0.2:7000/data") == ["10.0.0.1:7000", "10.0.0.2:7000"]
    assert url_addresses("ffs://[fd00::1]:7000/x") == ["[fd00::1]:7000"]
    assert parse_url("ffs://10.0.0.1:7000,10.0.0.2:7000/data") == ("10.0.0.1", 7000, "/data")
    for bad in ("s3://bucket/x", "ffs://host/x", "ffs://h:1,h2/x"):
        with pytest.raises(click.BadParameter, match="ffs://"):
            url_addresses(bad)
