"""Who may call what on a storage node.

A storage node holds no users table and never the cluster secret. It knows
callers two ways:

- a *node* by its key (common/auth.py): the SHA-256 of every node's key comes
  with mgmtd's replies to this node's registration and heartbeats
  (``MgmtdKeys``), so a peer or meta server proves itself without this node
  being able to make anyone's key;
- anyone else is *anonymous* here: data calls then need a capability signed by
  meta (common/capability.py), which says what the holder may do to which file.

Peer-only calls (chain forwarding, resync, single-replica removes, chunk
metadata listings) need a node that holds a target of the same chain
(``require_chain_peer``), or a meta server.
"""

from __future__ import annotations

import hmac
import time
from typing import Iterable

from fireflyfs.common import auth, capability
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import PermissionDenied, Unauthenticated, Unavailable

from .routing_view import RoutingView

ANONYMOUS = Principal(name="anonymous", uid=65534, gids=(65534,))


class MgmtdKeys:
    """What mgmtd last sent this node to check callers with: node key hashes, admin token
    hashes, capability keys. Replaced whole with each reply that carries them."""

    def __init__(self) -> None:
        self._hashes: dict[int, bytes] = {}
        self._admins: dict[int, bytes] = {}
        self.capabilities = capability.Verifier()

    def update(self, reply) -> None:
        """From a RegisterNodeReply or HeartbeatReply (empty maps: security is off at mgmtd)."""
        if reply.node_key_hashes:
            self._hashes = dict(reply.node_key_hashes)
            self._admins = dict(reply.admin_token_hashes)
        self.capabilities.set_keys(reply.capability_keys)

    def get(self, node_id: int) -> bytes | None:
        return self._hashes.get(node_id)

    def admin(self, user_id: int) -> bytes | None:
        return self._admins.get(user_id)


class StorageAuthenticator:
    """A storage node's check of a call's token: a node by its key, anyone else anonymous."""

    def __init__(self, hashes: MgmtdKeys) -> None:
        self.hashes = hashes

    def __call__(self, token: str | None) -> Principal:
        if token is None:
            return ANONYMOUS
        parsed = auth.parse_token(token)
        if parsed.kind != auth.NODE_TOKEN_PREFIX:
            # Storage never sees the users table: data calls carry capabilities instead, and
            # clients send no token here. Only admin tools do (fsck), known by their hashes.
            known = self.hashes.admin(parsed.id)
            if known is not None and hmac.compare_digest(auth.secret_hash(parsed.secret), known):
                return Principal(name=f"admin-{parsed.id}", uid=0, gids=(0,), admin=True)
            return ANONYMOUS
        known = self.hashes.get(parsed.id)
        if known is None:
            raise Unavailable(f"node {parsed.id} is not known to this storage node yet (it learns node "
                              "keys from mgmtd's heartbeat replies); retry")
        if not hmac.compare_digest(auth.secret_hash(parsed.secret), known):
            raise Unauthenticated(f"the key presented for node {parsed.id} is not that node's")
        return Principal(name=f"node-{parsed.id}", node_id=parsed.id)


class CapabilityGate:
    """Data calls of clients need capabilities (common/capability.py); nodes and admin tools,
    known by their keys and tokens, do not, and none is checked when security is off."""

    def __init__(self, keys: MgmtdKeys | None, clock=time.time) -> None:
        self._verifier = keys.capabilities if keys is not None else None
        self._clock = clock

    def require(self, blobs: Iterable[bytes], inode_ids: Iterable[int], access: int, what: str,
                principal: Principal | None = None) -> None:
        """PermissionDenied unless the caller (principal, default the RPC's) may do what to inode_ids."""
        principal = principal or auth.caller()
        if self._verifier is None or principal.is_node or principal.admin:   # SUPERUSER is admin
            return
        try:
            self._verifier.require(blobs, inode_ids, access, int(self._clock() * 1000))
        except PermissionDenied as exc:
            raise PermissionDenied(f"{what}: {exc}") from None


def require_node(what: str, admin_too: bool = False) -> Principal:
    """The caller, when it is a node of this cluster (or, with admin_too, an admin tool; or
    security is off)."""
    principal = auth.caller()
    if not (principal is auth.SUPERUSER or principal.is_node or (admin_too and principal.admin)):
        others = " and admins" if admin_too else ""
        raise PermissionDenied(f"{what} is for the cluster's own nodes{others}; {principal.describe()} "
                               "is not one")
    return principal


def require_chain_peer(routing: RoutingView, target_id: int, what: str, meta_too: bool = False,
                       admin_too: bool = False) -> Principal:
    """The caller, when it is a storage node holding a target of target_id's chain (or, with
    meta_too, a meta server; with admin_too, an admin tool such as fsck; or security is off);
    PermissionDenied naming who and why otherwise."""
    principal = require_node(what, admin_too)
    if principal.admin:              # an admin tool, or SUPERUSER when security is off
        return principal
    if meta_too and principal.node_id >= auth.META_NODE_ID_FIRST:
        return principal
    chain = routing.chain_of_target(target_id)
    peers = {routing.node_of_target(target) for target in chain.targets} if chain is not None else set()
    if principal.node_id not in peers:
        raise PermissionDenied(f"{what} on target {target_id} is for nodes of its chain; "
                               f"{principal.describe()} holds none of its targets")
    return principal
