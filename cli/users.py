"""``ffs admin user ...`` and ``ffs admin node key``: who may use the cluster.

    ffs admin user add URL NAME [--uid N] [--gid N ...] [--admin]   prints the token, once
    ffs admin user list URL
    ffs admin user remove URL NAME
    ffs admin user token rotate URL NAME                            prints the new token, once
    ffs admin node key URL ID                                       a storage node's key
    ffs whoami URL                                                  who the token says you are

As 3FS's user-add and Ceph's ``auth get-or-create``: the token is shown once
and the cluster keeps only its hash. ``--token-file PATH`` writes it to a file
with mode 0600 instead of printing it. Every command but whoami is for admins.
"""

from __future__ import annotations

import click

from ._output import emit_json, json_mode, json_option, print_table
from .fs import _url_arg, parse_url, positive_id, url_and


def _meta(url: str):
    from fireflyfs.client.meta_client import MetaClient
    from fireflyfs.common import auth

    host, port, _ = parse_url(url)
    return MetaClient(f"{host}:{port}", token=auth.client_token(), unavailable_retry_s=10.0)


def _user_row(user) -> dict:
    return {"name": user.name, "uid": user.uid, "gids": list(user.gids), "admin": user.admin,
            "id": user.id, "created_ns": user.created_ns}


def _show_token(reply, token_file: str | None, what: str) -> None:
    from fireflyfs.common import auth

    if token_file:
        auth.write_token_file(token_file, reply.token)
    if json_mode():
        emit_json({"user": _user_row(reply.user), **({"token_file": token_file} if token_file
                                                      else {"token": reply.token})})
        return
    if token_file:
        click.echo(f"{what} user {reply.user.name!r} (uid {reply.user.uid}); token written to {token_file}")
        return
    click.echo(f"{what} user {reply.user.name!r} (uid {reply.user.uid}). Its token, shown only this once:")
    click.echo(reply.token)
    click.echo("Use it as FFS_TOKEN, token= in fsspec storage options, or in a 0600 file named by "
               "FFS_TOKEN_FILE (default ~/.config/fireflyfs/token).", err=True)


_token_file_option = click.option("--token-file", type=click.Path(dir_okay=False),
                                  help="Write the token to this file (mode 0600) instead of printing it.")


@click.group("user")
def user() -> None:
    """Users and their tokens (admins only)."""


@user.command("add")
@click.argument("url_and_name", nargs=2, metavar="URL NAME", callback=url_and("user name"))
@click.option("--uid", type=click.IntRange(0, 2**32 - 1), default=None, help="[default: the next from 1000]")
@click.option("--gid", "gids", type=click.IntRange(0, 2**32 - 1), multiple=True,
              help="A group; the first is the primary one (repeat for more) [default: the uid]")
@click.option("--admin", "is_admin", is_flag=True, help="May change the cluster and bypasses file modes.")
@_token_file_option
@json_option
def user_add(url_and_name: tuple[str, str], uid: int | None, gids: tuple[int, ...], is_admin: bool,
             token_file: str | None) -> None:
    """Add user NAME and print its token once."""
    url, name = url_and_name
    _show_token(_meta(url).user_add(name, uid=uid, gids=list(gids), admin=is_admin), token_file, "added")


@user.command("list")
@click.argument("url", callback=_url_arg)
@json_option
def user_list(url: str) -> None:
    """List users (never their tokens)."""
    rows = [_user_row(u) for u in _meta(url).user_list()]
    if json_mode():
        emit_json({"users": rows})
        return
    print_table("users", ["name", "uid", "gids", "admin"],
                [(r["name"], r["uid"], ",".join(map(str, r["gids"])), "yes" if r["admin"] else "")
                 for r in rows])


@user.command("remove")
@click.argument("url_and_name", nargs=2, metavar="URL NAME", callback=url_and("user name"))
@json_option
def user_remove(url_and_name: tuple[str, str]) -> None:
    """Remove user NAME: its token stops working (within seconds on every meta server)."""
    url, name = url_and_name
    _meta(url).user_remove(name)
    if json_mode():
        emit_json({"removed": name})
    else:
        click.echo(f"removed user {name!r}")


@user.group("token")
def token() -> None:
    """A user's token."""


@token.command("rotate")
@click.argument("url_and_name", nargs=2, metavar="URL NAME", callback=url_and("user name"))
@_token_file_option
@json_option
def token_rotate(url_and_name: tuple[str, str], token_file: str | None) -> None:
    """Give user NAME a new token; the old one stops working."""
    url, name = url_and_name
    _show_token(_meta(url).user_rotate_token(name), token_file, "new token for")


@click.group("node")
def node() -> None:
    """Storage nodes: keys, draining, removal (admins only)."""


@node.command("key")
@click.argument("url_and_id", nargs=2, metavar="URL NODE_ID",
                callback=url_and("node id (a number such as 1)", positive_id))
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="Write the key to this file (mode 0600; the node's --node-key-file) instead of printing it.")
@json_option
def node_key(url_and_id: tuple[str, int], key_file: str | None) -> None:
    """The key storage node NODE_ID proves itself with (its --node-key-file)."""
    url, node_id = url_and_id
    from fireflyfs.common import auth

    key = _meta(url).node_key(node_id)
    if key_file:
        auth.write_token_file(key_file, key)
    if json_mode():
        emit_json({"node_id": node_id, **({"key_file": key_file} if key_file else {"key": key})})
    elif key_file:
        click.echo(f"key of node {node_id} written to {key_file}")
    else:
        click.echo(key)


@click.command("whoami")
@click.argument("url", callback=_url_arg)
@json_option
def whoami(url: str) -> None:
    """Who the cluster at URL takes you for (the user of your token)."""
    reply = _meta(url).whoami()
    if reply.node_id:
        row = {"node_id": reply.node_id}
    else:
        row = {"name": reply.user.name, "uid": reply.user.uid, "gids": list(reply.user.gids),
               "admin": reply.user.admin}
    if json_mode():
        emit_json(row)
    elif reply.node_id:
        click.echo(f"node {reply.node_id}")
    else:
        click.echo(f"{row['name']} uid={row['uid']} gids={','.join(map(str, row['gids']))}"
                   f"{' admin' if row['admin'] else ''}")


@click.group("tls")
def tls_group() -> None:
    """TLS certificates for real hosts (ffs cluster up makes its own)."""


@tls_group.command("issue")
@click.argument("name")
@click.option("--ca-dir", required=True, type=click.Path(file_okay=False),
              help="The CA's directory: ca.pem and ca.key, made there when missing.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where NAME.pem and NAME.key (mode 0600) go.")
@click.option("--host", "hosts", multiple=True, required=True,
              help="A host name or address the certificate names (repeat): the ones clients dial.")
@json_option
def tls_issue(name: str, ca_dir: str, out_dir: str, hosts: tuple[str, ...]) -> None:
    """A certificate for service NAME, signed by the cluster CA (common/tls.py)."""
    from fireflyfs.common import tls

    files = tls.issue(ca_dir, out_dir, name, list(hosts))
    if json_mode():
        emit_json({"cert": files.cert, "key": files.key, "ca": files.ca})
    else:
        click.echo(f"{files.cert}\n{files.key}\nCA: {files.ca}")
