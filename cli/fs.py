"""File commands through fsspec: ``ffs ls|stat|cat|put|get|rm|rmdir|mkdir|mv|cp|du|find|tree URL``.

Everything goes through ``fsspec.url_to_fs`` so the CLI exercises exactly the
path user code takes.
"""

from __future__ import annotations

import datetime
import stat as stat_module
import urllib.parse
from typing import Any

import click

from ._output import (EXIT_FAILURE, TransferProgress, emit_json, error_payload, human_bytes, json_mode,
                      json_option, print_table, report_failure, size_param, stdout_binary)

read_block_bytes = 4 * 1024 * 1024


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of ffs://host:port/path (of its first server when it names several,
    ffs://h1:p1,h2:p2/path); a usage error otherwise."""
    addresses = url_addresses(url)
    host, _, port = addresses[0].rpartition(":")
    return host.strip("[]"), int(port), urllib.parse.urlsplit(url).path or "/"


def url_addresses(url: str) -> list[str]:
    """Every metadata server's host:port an ffs:// URL names; a usage error otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ffs":
        raise click.BadParameter(f"{url!r} is not an ffs:// URL (ffs://host:port/path)")
    addresses = []
    for netloc in parts.netloc.split(","):
        one = urllib.parse.urlsplit(f"ffs://{netloc}")
        try:
            port = one.port
        except ValueError as exc:
            raise click.BadParameter(f"bad port in {url!r}") from exc
        if not one.hostname or port is None:
            raise click.BadParameter(f"{url!r} lacks host:port (ffs://host:port/path)")
        host = f"[{one.hostname}]" if ":" in one.hostname else one.hostname    # IPv6 stays bracketed
        addresses.append(f"{host}:{port}")
    return addresses


def open_fs(url: str):
    """(filesystem, path) for an ffs:// URL."""
    import fsspec

    parse_url(url)
    # Not fsspec's instance cache: a command's client carries its --timeout, and a process
    # that runs the CLI in-process (tests, notebooks) must not get that client back later.
    return fsspec.url_to_fs(url, skip_instance_cache=True)


def _url_arg(ctx, param, value):
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        parse_url(v)
    return value


def url_and(noun: str, convert=str):
    """A click callback for two arguments, URL and one NOUN, in either order: URL first as in
    every command, the NOUN-first order of earlier releases still works."""
    def parse(ctx, param, values: tuple[str, str]):
        url, other = values if values[0].startswith("ffs://") else (values[1], values[0])
        _url_arg(ctx, param, url)
        try:
            return url, convert(other)
        except ValueError as exc:
            raise click.BadParameter(f"{other!r} is not a {noun}: {exc}") from None
    return parse


def positive_id(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError("ids start at 1")
    return number


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """An fsspec info dict made JSON-safe (bytes and seconds as numbers)."""
    out = {}
    for key, value in info.items():
        if isinstance(value, (datetime.datetime, datetime.date)):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = value.hex()
        elif not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            value = str(value)
        out[key] = value
    return out


def _mtime(info: dict[str, Any]) -> str:
    for key in ("mtime", "modified", "LastModified"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            # mtime may be in seconds or nanoseconds
            seconds = value / 1e9 if value > 1e12 else value
            return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
    return ""


@click.command()
@click.argument("url", callback=_url_arg)
@click.option("-l", "--long", "long_format", is_flag=True, help="Mode, owner, group, size and mtime too.")
@json_option
def ls(url: str, long_format: bool) -> None:
    """List a directory (or show one file)."""
    fs, path = open_fs(url)
    entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
    if json_mode():
        emit_json([_plain(e) for e in entries])
    elif long_format:
        print_table(None, ["mode", "uid", "gid", "size", "mtime", "name"],
                    [(stat_module.filemode(e.get("mode", 0)), e.get("uid", ""), e.get("gid", ""), e.get("size", ""),
                      _mtime(e), e["name"].rsplit("/", 1)[-1] or "/") for e in entries])
    else:
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            click.echo(name + ("/" if entry.get("type") == "directory" else ""))


@click.command()
@click.argument("url", callback=_url_arg)
@json_option
def stat(url: str) -> None:
    """Show the metadata of a file or directory."""
    fs, path = open_fs(url)
    info = _plain(fs.info(path))
    if json_mode():
        emit_json(info)
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        click.echo(f"{key:<{width}}  {_readable(key, value)}")


def _readable(key: str, value: Any) -> str:
    """One stat field as a person reads it: sizes in units, modes as ls shows them, times as dates."""
    if key == "size" and isinstance(value, int):
        return f"{value} ({human_bytes(value)})"
    if key == "mode" and isinstance(value, int):
        return f"{stat_module.filemode(value)} ({stat_module.S_IMODE(value):04o})"
    if key in ("mtime", "ctime", "atime", "created") and isinstance(value, (int, float)):
        return f"{_mtime({'mtime': value})} ({value})"
    return str(value)


@click.command()
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
def cat(urls: tuple[str, ...]) -> None:
    """Write files' bytes to stdout."""
    out = stdout_binary()
    for url in urls:
        fs, path = open_fs(url)
        with fs.open(path, "rb") as handle:
            while True:
                block = handle.read(read_block_bytes)
                if not block:
                    break
                out.write(block)
    out.flush()


@click.command()
@click.argument("local", type=click.Path(exists=True, allow_dash=True, path_type=str))
@click.argument("url", callback=_url_arg)
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory tree.")
@json_option
def put(local: str, url: str, recursive: bool) -> None:
    """Copy a local file (or tree with -r; - for stdin) into the cluster."""
    import os

    fs, path = open_fs(url)
    if local == "-":
        stdin = click.open_file("-", "rb")
        with TransferProgress(f"put - {url}") as progress, fs.open(path, "wb") as handle:
            while block := stdin.read(read_block_bytes):
                handle.write(block)
                progress.add_bytes(len(block))
            progress.files = 1
        _done({"put": "-", "to": url, **progress.summary()})
        return
    if os.path.isdir(local) and not recursive:
        raise IsADirectoryError(f"{local} is a directory (use -r)")
    with TransferProgress(f"put {local}") as progress:
        fs.put(local, path, recursive=recursive, callback=progress.callback)
    _done({"put": local, "to": url, **progress.summary()})


@click.command()
@click.argument("url", callback=_url_arg)
@click.argument("local", type=click.Path(path_type=str))
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory tree.")
@json_option
def get(url: str, local: str, recursive: bool) -> None:
    """Copy a file (or tree with -r) out of the cluster."""
    fs, path = open_fs(url)
    if not recursive and fs.isdir(path):
        raise IsADirectoryError(f"{url} is a directory (use -r)")
    with TransferProgress(f"get {url}") as progress:
        fs.get(path, local, recursive=recursive, callback=progress.callback)
    _done({"get": url, "to": local, **progress.summary()})


@click.command()
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@click.option("-r", "--recursive", is_flag=True, help="Remove directories and their contents.")
@click.option("-f", "--force", is_flag=True, help="Ignore paths that do not exist.")
@json_option
def rm(urls: tuple[str, ...], recursive: bool, force: bool) -> None:
    """Remove files (directories need -r); an error on one URL does not stop the others."""
    def remove(url: str) -> None:
        fs, path = open_fs(url)
        if not recursive and fs.isdir(path):
            raise IsADirectoryError(f"{url} is a directory (use -r)")
        fs.rm(path, recursive=recursive)

    _for_each(urls, remove, "removed", ignore_missing=force)


@click.command()
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@json_option
def rmdir(urls: tuple[str, ...]) -> None:
    """Remove empty directories."""
    def remove(url: str) -> None:
        fs, path = open_fs(url)
        fs.rmdir(path)

    _for_each(urls, remove, "removed")


@click.command()
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@click.option("-p", "--parents", is_flag=True, help="Create parents; no error if it exists.")
@click.option("--chunk-size", callback=size_param, metavar="SIZE",
              help="Chunk size of files created in it (a power of two, such as 1MiB; docs/layouts.md).")
@click.option("--stripe", "stripe_size", type=click.IntRange(min=1), help="Chains each file stripes over.")
@click.option("--chain-table", "chain_table_id", type=click.IntRange(min=1), help="Chain table its files use.")
@json_option
def mkdir(urls: tuple[str, ...], parents: bool, chunk_size: int | None, stripe_size: int | None,
          chain_table_id: int | None) -> None:
    """Create directories; --chunk-size, --stripe and --chain-table set the layout of the files
    created in them (else inherited from the parent; `ffs stat` shows it)."""
    layout = {key: value for key, value in (("chunk_size", chunk_size), ("stripe_size", stripe_size),
                                            ("chain_table_id", chain_table_id)) if value is not None}

    def create(url: str) -> None:
        fs, path = open_fs(url)
        if parents and not layout:
            fs.makedirs(path, exist_ok=True)
        else:
            fs.mkdir(path, create_parents=parents, **layout)

    _for_each(urls, create, "created")


@click.command()
@click.argument("source", callback=_url_arg)
@click.argument("destination", callback=_url_arg)
@json_option
def mv(source: str, destination: str) -> None:
    """Rename a file or directory within one cluster."""
    src_host, src_port, _ = parse_url(source)
    dst_host, dst_port, _ = parse_url(destination)
    if (src_host, src_port) != (dst_host, dst_port):
        raise click.BadParameter("source and destination must be on the same cluster")
    fs, src_path = open_fs(source)
    _, dst_path = open_fs(destination)
    fs.info(src_path)                    # a missing source is named as such, before anything is made
    parent = dst_path.rstrip("/").rpartition("/")[0] or "/"
    fs.makedirs(parent, exist_ok=True)   # as fsspec's local file system: missing parents are made
    fs.mv(src_path, dst_path)
    _done({"moved": source, "to": destination})


@click.command()
@click.argument("source", callback=_url_arg)
@click.argument("destination", callback=_url_arg)
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory tree.")
@json_option
def cp(source: str, destination: str, recursive: bool) -> None:
    """Copy a file (or tree with -r) within one cluster; the bytes stay on the storage nodes' side
    of the network (the metadata service copies chunk by chunk)."""
    if url_addresses(source) != url_addresses(destination):
        raise click.BadParameter("source and destination must be on the same cluster (use get, then put)")
    fs, src_path = open_fs(source)
    _, dst_path = open_fs(destination)
    if not recursive and fs.isdir(src_path):
        raise IsADirectoryError(f"{source} is a directory (use -r)")
    parent = dst_path.rstrip("/").rpartition("/")[0] or "/"
    fs.makedirs(parent, exist_ok=True)
    fs.copy(src_path, dst_path, recursive=recursive)
    _done({"copied": source, "to": destination})


@click.command()
@click.argument("url", callback=_url_arg)
@click.option("--name", "pattern", default=None, help="Only names matching this glob (as find -name).")
@click.option("--type", "kind", type=click.Choice(["f", "d"]), default=None, help="Files (f) or directories (d).")
@click.option("--maxdepth", type=click.IntRange(min=1), default=None, help="Descend at most this many levels.")
@json_option
def find(url: str, pattern: str | None, kind: str | None, maxdepth: int | None) -> None:
    """Every path below URL (one paged Meta.Find), as find(1) prints them."""
    import fnmatch

    fs, path = open_fs(url)
    fs.info(path)
    entries = fs.find(path, maxdepth=maxdepth, withdirs=kind != "f", detail=True)
    rows = [e for name, e in sorted(entries.items())
            if (pattern is None or fnmatch.fnmatch(name.rsplit("/", 1)[-1], pattern))
            and (kind is None or (e.get("type") == "directory") == (kind == "d"))]
    if json_mode():
        emit_json([_plain(e) for e in rows])
        return
    for entry in rows:
        click.echo(entry["name"] + ("/" if entry.get("type") == "directory" and entry["name"] != "/" else ""))


@click.command()
@click.argument("url", callback=_url_arg)
@click.option("-L", "--level", "maxdepth", type=click.IntRange(min=1), default=None, help="Descend at most this many levels.")
def tree(url: str, maxdepth: int | None) -> None:
    """The directory tree below URL, as tree(1) draws it, with sizes."""
    fs, path = open_fs(url)
    fs.info(path)
    entries = fs.find(path, maxdepth=maxdepth, withdirs=True, detail=True)
    children: dict[str, list[dict[str, Any]]] = {}
    for name, entry in sorted(entries.items()):
        if name != path:
            children.setdefault(name.rstrip("/").rpartition("/")[0] or "/", []).append(entry)
    click.echo(path)
    counts = {"directory": 0, "file": 0}

    def draw(directory: str, prefix: str) -> None:
        below = children.get(directory, [])
        for index, entry in enumerate(below):
            last = index == len(below) - 1
            is_dir = entry.get("type") == "directory"
            counts["directory" if is_dir else "file"] += 1
            label = entry["name"].rsplit("/", 1)[-1] + ("/" if is_dir else f"  ({human_bytes(entry.get('size'))})")
            click.echo(f"{prefix}{'└── ' if last else '├── '}{label}")
            if is_dir:
                draw(entry["name"], prefix + ("    " if last else "│   "))

    draw(path.rstrip("/") or "/", "")
    click.echo(f"\n{counts['directory']} directories, {counts['file']} files")


def _octal_mode(ctx, param, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal mode such as 750 or 2775") from None
    if not 0 <= mode <= 0o7777:
        raise click.BadParameter(f"mode {value} has bits outside 7777")
    return mode


@click.command()
@click.argument("mode", callback=_octal_mode)
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@json_option
def chmod(mode: int, urls: tuple[str, ...]) -> None:
    """Set the permission bits (octal MODE) of each URL: its owner or an admin."""
    def change(url: str) -> None:
        fs, path = open_fs(url)
        fs.chmod(path, mode)

    _for_each(urls, change, "changed")


def _owner(ctx, param, value: str) -> tuple[int | None, int | None]:
    uid, _, gid = value.partition(":")
    try:
        return (int(uid) if uid else None), (int(gid) if gid else None)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give numeric [UID][:GID], such as 1000:1000 or :2000") from None


@click.command()
@click.argument("owner", callback=_owner)
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@json_option
def chown(owner: tuple[int | None, int | None], urls: tuple[str, ...]) -> None:
    """Set the owner (admins) and/or group (the owner, to one of its groups) as [UID][:GID]."""
    uid, gid = owner
    def change(url: str) -> None:
        fs, path = open_fs(url)
        fs.chown(path, uid=uid, gid=gid)

    _for_each(urls, change, "changed")


def _done(result: dict[str, Any]) -> None:
    if json_mode():
        emit_json({"ok": True, **result})


def _for_each(urls: tuple[str, ...], action, done_key: str, ignore_missing: bool = False) -> None:
    """action(url) for every URL: a failure is reported and the rest still run, as rm(1) and
    mkdir(1) do; the command exits 1 when any failed (a missing path does not count with
    ignore_missing, as ``rm -f``)."""
    from fireflyfs.common.errors import FfsError

    done, failed = [], []
    for url in urls:
        try:
            action(url)
        except (FfsError, OSError) as exc:
            if ignore_missing and isinstance(exc, FileNotFoundError):
                continue
            report_failure(exc)
            failed.append({"url": url, **error_payload(exc)})
        else:
            done.append(url)
    if json_mode():
        emit_json({"ok": not failed, done_key: done, "failed": failed})
    if failed:
        click.get_current_context().exit(EXIT_FAILURE)


@click.command()
@click.argument("urls", nargs=-1, required=True, callback=_url_arg)
@json_option
def du(urls: tuple[str, ...]) -> None:
    """Bytes, files and directories under each URL (a file: its own size)."""
    rows = []
    for url in urls:
        fs, path = open_fs(url)
        fs.info(path)                     # a missing path is an error, not 0 bytes
        entries = fs.find(path, withdirs=True, detail=True).values()
        files = [e for e in entries if e.get("type") != "directory"]
        rows.append({"url": url, "bytes": sum(e.get("size") or 0 for e in files), "files": len(files),
                     "directories": sum(e.get("type") == "directory" and e["name"] != path for e in entries)})
    if json_mode():
        emit_json(rows)
        return
    print_table(None, ["size", "bytes", "files", "dirs", "url"],
                [(human_bytes(r["bytes"]), r["bytes"], r["files"], r["directories"], r["url"]) for r in rows])


COMMANDS = [ls, stat, cat, put, get, rm, rmdir, mkdir, mv, cp, chmod, chown, du, find, tree]
