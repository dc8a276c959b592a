"""Users and their tokens, and how meta turns a call's token into its caller.

Users live in the metadata store (table ``users``: ``i<id>`` -> User,
``n<name>`` -> id), so every meta server of an etcd cluster knows the same
ones. A token is shown once, when made (add, rotate); the store keeps its
secret's SHA-256 only.

``MetaAuthenticator`` is meta's ``authenticate`` (common/rpc.make_server): a
user token is checked against the store, a node token against the key derived
from the cluster secret. Accepted tokens are remembered for ``cache_s`` so a
busy client costs no store read per call; a removed user or rotated token
stops working within that time on every meta server.
"""

from __future__ import annotations

import hmac
import os
import secrets
import struct
import threading
import time

from fireflyfs.common import auth, limits
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from fireflyfs.proto import meta_pb2

from .store import Txn

_ID = struct.Struct(">Q")
UID_FIRST = 1000                     # uids handed out when add() is given none, as useradd does
ADMIN_NAME = "admin"
NAME_LENGTH_MAX = 64


def _id_key(user_id: int) -> bytes:
    return b"i" + _ID.pack(user_id)


def _name_key(name: str) -> bytes:
    return b"n" + name.encode()


def _check_name(name: str) -> str:
    if not name or len(name) > NAME_LENGTH_MAX or not all(c.isalnum() or c in "._-" for c in name):
        raise InvalidArgument(f"user name {name!r}: use 1-{NAME_LENGTH_MAX} letters, digits, '.', '_' or '-'")
    return name


def public(user: meta_pb2.User) -> meta_pb2.User:
    """user without its token hash, as replies carry it."""
    shown = meta_pb2.User()
    shown.CopyFrom(user)
    shown.token_hash = b""
    return shown


class Users:
    """The users table: add, list, remove, rotate, look up."""

    def __init__(self, store) -> None:
        self.store = store

    def add(self, name: str, now_ns: int, uid: int | None = None, gids: list[int] | None = None,
            admin: bool = False, token: str | None = None) -> tuple[meta_pb2.User, str]:
        """A new user and its token (the only time the token is seen).

        token: adopt this one (a pre-provisioned admin token, bootstrap_admin) instead of making one.
        User ids are random 63-bit numbers, so an adopted token's id never meets a counter's.
        """
        adopted = auth.parse_token(token) if token else None
        if adopted is not None and adopted.kind != auth.USER_TOKEN_PREFIX:
            raise InvalidArgument("a user's token must be a user token (ffsu.<id>.<secret>)")
        _check_name(name)
        for gid in gids or ():
            if not 0 <= gid < 2**32:
                raise InvalidArgument(f"gid {gid} is out of range")

        def mutate(txn: Txn):
            if txn.kv.get("users", _name_key(name)) is not None:
                raise AlreadyExists(f"user {name!r} exists")
            taken = {user.uid for user in self._all(txn)}
            chosen = uid
            if chosen is None:
                chosen = max([u for u in taken if u >= UID_FIRST], default=UID_FIRST - 1) + 1
            elif chosen in taken:
                raise AlreadyExists(f"uid {chosen} belongs to another user")
            if adopted is not None:
                user_id, made, token_hash = adopted.id, token, auth.secret_hash(adopted.secret)
            else:
                user_id = secrets.randbits(63) or 1
                made, token_hash = auth.new_user_token(user_id)
            if txn.kv.get("users", _id_key(user_id)) is not None:
                raise AlreadyExists(f"user id {user_id} is taken; try again")
            user = meta_pb2.User(id=user_id, name=name, uid=chosen, gids=list(gids or [chosen]), admin=admin,
                                 token_hash=token_hash, created_ns=now_ns)
            txn.put_msg("users", _id_key(user_id), user)
            txn.kv.put("users", _name_key(name), _ID.pack(user_id))
            return user, made

        user, made = self.store.transact(mutate)
        return public(user), made

    def rotate(self, name: str) -> tuple[meta_pb2.User, str]:
        """A new token for name; the old one stops working."""
        def mutate(txn: Txn):
            user = self._by_name(txn, name)
            token, user.token_hash = auth.new_user_token(user.id)
            txn.put_msg("users", _id_key(user.id), user)
            return user, token

        user, token = self.store.transact(mutate)
        return public(user), token

    def remove(self, name: str) -> None:
        def mutate(txn: Txn):
            user = self._by_name(txn, name)
            if user.admin and sum(1 for other in self._all(txn) if other.admin) == 1:
                raise InvalidArgument(f"user {name!r} is the last admin; add another admin first")
            txn.delete("users", _id_key(user.id))
            txn.delete("users", _name_key(name))

        self.store.transact(mutate)

    def list(self) -> list[meta_pb2.User]:
        with self.store.read() as txn:
            return [public(user) for user in sorted(self._all(txn), key=lambda u: u.name)]

    def admin_token_hashes(self) -> dict[int, bytes]:
        """{user id: token hash} of the admins, as storage nodes get them; read at most once per
        auth_cache_s (every storage node asks with each heartbeat)."""
        now = time.monotonic()
        cached = getattr(self, "_admin_hashes", None)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.store.read() as txn:
            hashes = {user.id: user.token_hash for user in self._all(txn) if user.admin}
        self._admin_hashes = (now + limits.auth_cache_s, hashes)
        return hashes

    def get(self, user_id: int) -> meta_pb2.User | None:
        with self.store.read() as txn:
            return txn.get_msg("users", _id_key(user_id), meta_pb2.User)

    def empty(self) -> bool:
        with self.store.read() as txn:
            return next(iter(txn.scan("users", b"i")), None) is None

    @staticmethod
    def _all(txn: Txn) -> list[meta_pb2.User]:
        users = []
        for _, value in txn.scan("users", b"i"):
            user = meta_pb2.User()
            user.ParseFromString(value)
            users.append(user)
        return users

    @staticmethod
    def _by_name(txn: Txn, name: str) -> meta_pb2.User:
        raw = txn.kv.get("users", _name_key(name))
        user = None if raw is None else txn.get_msg("users", _id_key(_ID.unpack(raw)[0]), meta_pb2.User)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user


def principal_of(user: meta_pb2.User) -> Principal:
    return Principal(name=user.name, uid=user.uid, gids=tuple(user.gids) or (user.uid,), admin=user.admin)


def bootstrap_admin(users: Users, token_file: str, now_ns: int) -> bool:
    """Make the first admin when the cluster has no user; returns whether it made one.

    As etcd's root user or Ceph's client.admin keyring: the one credential a
    new cluster starts with. When token_file already holds a user token (a
    harness that runs many clusters pre-provisions one), the admin adopts it;
    otherwise a new token is written there with mode 0600.
    """
    if not users.empty():
        return False
    existing = auth.read_token_file(token_file) if os.path.exists(os.path.expanduser(token_file)) else None
    try:
        _, token = users.add(ADMIN_NAME, now_ns, uid=0, gids=[0], admin=True, token=existing)
    except AlreadyExists:        # another meta server of an etcd cluster bootstrapped first
        return False
    if existing is None:
        auth.write_token_file(token_file, token)
    return True


NO_TOKEN = ("the call carries no token: pass token= in the storage options, or set FFS_TOKEN or "
            "FFS_TOKEN_FILE (default ~/.config/fireflyfs/token); `ffs admin user add` makes users")


class MetaAuthenticator:
    """Meta's check of a call's token: the calling user or node, or Unauthenticated."""

    def __init__(self, users: Users, cluster_secret: bytes, cache_s: float = limits.auth_cache_s,
                 clock=time.monotonic) -> None:
        self.users = users
        self._secret = cluster_secret
        self._cache_s = cache_s
        self._clock = clock
        self._accepted: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str | None) -> Principal:
        if token is None:
            raise Unauthenticated(NO_TOKEN)
        now = self._clock()
        hit = self._accepted.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = self._check(token)
        with self._lock:
            if len(self._accepted) >= limits.auth_cache_entries_max:
                self._accepted.clear()
            self._accepted[token] = (now + self._cache_s, principal)
        return principal

    def _check(self, token: str) -> Principal:
        parsed = auth.parse_token(token)
        if parsed.kind == auth.NODE_TOKEN_PREFIX:
            if not hmac.compare_digest(parsed.secret, auth.node_key(self._secret, parsed.id)):
                raise Unauthenticated(f"the key of node {parsed.id} is not this cluster's")
            return Principal(name=f"node-{parsed.id}", node_id=parsed.id)
        user = self.users.get(parsed.id)
        if user is None or not hmac.compare_digest(auth.secret_hash(parsed.secret), user.token_hash):
            raise Unauthenticated("the token is not valid here: its user was removed, its token rotated, "
                                  "or it belongs to another cluster")
        return principal_of(user)

