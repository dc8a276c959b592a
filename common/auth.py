"""Who is calling: principals, their tokens, and the caller of the RPC being served.

Two kinds of principal call FireflyFS services, as in Ceph (cephx: every
client and daemon has a key):

- a *user* (``ffs admin user add``): a uid, its groups, maybe admin. Its token
  is ``ffsu.<user id>.<secret>``; meta keeps only the secret's SHA-256, so a
  copy of the metadata store gives no one a usable token.
- a *node* (a storage node or meta server): ``ffsn.<node id>.<key>``, where the
  key is an HMAC of the cluster secret and the node id. mgmtd, which holds the
  cluster secret, recomputes it; storage nodes, which do not, compare the key's
  SHA-256 with the hashes mgmtd hands them. A node's key names it: no node can
  speak for another, or for a user.

Secrets are 32 random bytes, so a plain SHA-256 (not a slow password hash)
keeps a stored hash useless.

A server's interceptor (``common/rpc.py``) turns the call's ``authorization``
metadata into a Principal and sets it as the *caller* for the handler's thread
(``caller()``); code that serves the call reads it there instead of passing it
down every signature. Code run outside an RPC (unit tests driving a Namespace
directly, the service's own GC) acts as ``SUPERUSER``.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import hashlib
import hmac
import os
import secrets
from typing import Iterator

from .errors import InvalidArgument, PermissionDenied, Unauthenticated

META_NODE_ID_FIRST = 10_001
"""Meta servers' node ids start here, apart from storage nodes': a storage node can never hold one."""

AUTH_METADATA_KEY = "authorization"
BEARER = "Bearer "
USER_TOKEN_PREFIX = "ffsu"
NODE_TOKEN_PREFIX = "ffsn"
SECRET_BYTES = 32


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a user (node_id 0) or a node (node_id > 0)."""

    name: str
    uid: int = 0
    gids: tuple[int, ...] = ()
    admin: bool = False
    node_id: int = 0

    @property
    def gid(self) -> int:
        """The primary group: new files are created with it."""
        return self.gids[0] if self.gids else self.uid

    @property
    def is_node(self) -> bool:
        return self.node_id > 0

    @property
    def superuser(self) -> bool:
        """Bypasses permission bits, as root does: admins and the cluster's own nodes."""
        return self.admin or self.is_node

    def describe(self) -> str:
        if self.is_node:
            return f"node {self.node_id}"
        return f"user {self.name!r} (uid {self.uid})"


SUPERUSER = Principal(name="(in-process)", uid=0, gids=(0,), admin=True)
"""The caller of code that runs outside any RPC, and of every RPC when security is off."""

_caller: contextvars.ContextVar[Principal] = contextvars.ContextVar("ffs_caller", default=SUPERUSER)


def caller() -> Principal:
    """The principal of the RPC this thread serves (SUPERUSER outside an RPC)."""
    return _caller.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    token = _caller.set(principal)
    try:
        yield
    finally:
        _caller.reset(token)


def require_admin(what: str) -> Principal:
    """The caller, when it is an admin (or security is off); PermissionDenied naming what otherwise."""
    principal = caller()
    if not principal.admin:
        raise PermissionDenied(f"{what} is for admins; {principal.describe()} is not one")
    return principal


def require_node(node_id: int, what: str) -> Principal:
    """The caller, when it is node node_id itself (or security is off); PermissionDenied otherwise.

    Not even an admin may speak for a node: its key is what proves a
    registration or heartbeat comes from the process that owns the node id.
    """
    principal = caller()
    if principal is not SUPERUSER and principal.node_id != node_id:
        raise PermissionDenied(f"{what} for node {node_id} needs that node's key; "
                               f"the caller is {principal.describe()}")
    return principal


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def new_user_token(user_id: int) -> tuple[str, bytes]:
    """A fresh token for user_id and the hash meta stores instead of it."""
    secret = secrets.token_bytes(SECRET_BYTES)
    return f"{USER_TOKEN_PREFIX}.{user_id}.{_b64(secret)}", secret_hash(secret)


def new_cluster_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def node_key(cluster_secret: bytes, node_id: int) -> bytes:
    return hmac.new(cluster_secret, f"node:{node_id}".encode(), hashlib.sha256).digest()


def node_token(cluster_secret: bytes, node_id: int) -> str:
    """The token node node_id presents: only holders of the cluster secret can make it."""
    return f"{NODE_TOKEN_PREFIX}.{node_id}.{_b64(node_key(cluster_secret, node_id))}"


def node_key_hash(cluster_secret: bytes, node_id: int) -> bytes:
    """What a storage node compares a peer's key with (mgmtd hands these out, never the keys)."""
    return secret_hash(node_key(cluster_secret, node_id))


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: str       # USER_TOKEN_PREFIX or NODE_TOKEN_PREFIX
    id: int         # the user id or node id
    secret: bytes


def parse_token(token: str) -> ParsedToken:
    """Split a token into kind, id and secret; Unauthenticated when it is not one of ours."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] not in (USER_TOKEN_PREFIX, NODE_TOKEN_PREFIX) or not parts[1].isdigit():
        raise Unauthenticated("the token is malformed: expected ffsu.<id>.<secret> (a user token from "
                              "`ffs admin user add`) or ffsn.<id>.<key> (a node key)")
    try:
        secret = _unb64(parts[2])
    except ValueError as exc:
        raise Unauthenticated("the token is malformed: its secret is not base64") from exc
    if len(secret) != SECRET_BYTES:
        raise Unauthenticated("the token is malformed: its secret has the wrong length")
    return ParsedToken(parts[0], int(parts[1]), secret)


def token_of_metadata(metadata) -> str | None:
    """The bearer token of a call's invocation metadata, or None."""
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY:
            if not value.startswith(BEARER):
                raise Unauthenticated(f"the {AUTH_METADATA_KEY} metadata must be 'Bearer <token>'")
            return value[len(BEARER):]
    return None


# --- where a client finds its token -------------------------------------------------------

TOKEN_ENV = "FFS_TOKEN"
TOKEN_FILE_ENV = "FFS_TOKEN_FILE"
TOKEN_FILE_DEFAULT = os.path.join("~", ".config", "fireflyfs", "token")


def read_token_file(path: str) -> str:
    """The token in path, refused when others may read it (as ssh refuses a readable key)."""
    path = os.path.expanduser(path)
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise InvalidArgument(f"token file {path} is readable by others (mode {mode & 0o777:o}); "
                              f"chmod 600 {path}")
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        raise InvalidArgument(f"token file {path} is empty")
    return token


def write_token_file(path: str, token: str) -> None:
    """Write token to path with mode 0600 from the start (never readable by others, even briefly)."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)


def client_token(explicit: str | None = None, environ=None) -> str | None:
    """The token a client presents: explicit (``token=``), else FFS_TOKEN, else the token file
    (FFS_TOKEN_FILE, default ~/.config/fireflyfs/token) when it exists; None when there is none."""
    environ = os.environ if environ is None else environ
    if explicit:
        return explicit.strip()
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV].strip()
    path = environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token_file(path)
    if os.path.exists(os.path.expanduser(TOKEN_FILE_DEFAULT)):
        return read_token_file(TOKEN_FILE_DEFAULT)
    return None
