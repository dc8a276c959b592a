"""Chunk capabilities: what meta lets a client do to one file's chunks, signed for storage to check.

As HDFS block access tokens: meta, which checks permissions, signs
(inode, access, expiry, key epoch) with a key it shares with storage nodes;
a storage node checks the signature, the expiry and that every chunk of the
request belongs to the capability's inode, and never consults the namespace.
Chunk ids are (inode, index), so guessing an id gives nothing without a
capability for that inode, and a capability is no use for another file.

Keys rotate by epoch: key(epoch) = HMAC(cluster secret, "cap:<epoch>"),
epoch = now // rotation. Only meta holds the secret; mgmtd hands storage
nodes the keys of the previous, current and next epoch with each heartbeat
reply. A capability lives at most one rotation period, so one signed in
epoch e expires before e + 1 ends: storage always holds its key.

Wire form (38 bytes): version u8, epoch u32, inode u64, access u8,
expires_ms u64, then the first 16 bytes of the HMAC-SHA256 of those 22 bytes.
This module is pure: callers pass the time in.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
from typing import Iterable, Mapping

from . import limits
from .errors import PermissionDenied, Unavailable

READ, WRITE = 1, 2            # WRITE includes READ
VERSION = 1
_BODY = struct.Struct(">BIQBQ")
MAC_BYTES = 16
SIZE = _BODY.size + MAC_BYTES


def epoch_of(now_ms: int, rotation_ms: int = limits.capability_rotation_ms) -> int:
    return now_ms // rotation_ms


def signing_key(cluster_secret: bytes, epoch: int) -> bytes:
    return hmac.new(cluster_secret, f"cap:{epoch}".encode(), hashlib.sha256).digest()


def keys_around(cluster_secret: bytes, now_ms: int, rotation_ms: int = limits.capability_rotation_ms
                ) -> dict[int, bytes]:
    """The keys storage needs now: previous, current and next epoch."""
    epoch = epoch_of(now_ms, rotation_ms)
    return {e: signing_key(cluster_secret, e) for e in (epoch - 1, epoch, epoch + 1) if e >= 0}


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]


def sign(cluster_secret: bytes, inode_id: int, access: int, now_ms: int,
         ttl_ms: int = limits.capability_ttl_ms, rotation_ms: int = limits.capability_rotation_ms) -> bytes:
    """A capability for inode_id granting access (READ or WRITE) until now + ttl."""
    if access not in (READ, WRITE):
        raise ValueError(f"access must be READ or WRITE, not {access}")
    epoch = epoch_of(now_ms, rotation_ms)
    body = _BODY.pack(VERSION, epoch, inode_id, access, now_ms + min(ttl_ms, rotation_ms))
    return body + _mac(signing_key(cluster_secret, epoch), body)


def expires_ms_of(blob: bytes) -> int:
    """When blob expires (unverified: for a client deciding when to renew)."""
    return _BODY.unpack_from(blob)[4] if len(blob) == SIZE else 0


def access_of(blob: bytes) -> int:
    return _BODY.unpack_from(blob)[3] if len(blob) == SIZE else 0


def issued(cluster_secret: bytes, blob: bytes) -> "Grant":
    """What blob grants, when meta signed it at any time (expired or not); PermissionDenied if not.
    Meta's check of a capability presented for renewal: it holds the secret of every epoch."""
    if len(blob) != SIZE:
        raise PermissionDenied("no capability held for this file: open it by its path first")
    body = blob[:_BODY.size]
    version, epoch, inode_id, access, expires_ms = _BODY.unpack(body)
    if version != VERSION or not hmac.compare_digest(blob[_BODY.size:], _mac(signing_key(cluster_secret, epoch), body)):
        raise PermissionDenied("the capability presented for renewal was not signed by this cluster")
    return Grant(inode_id, access, expires_ms)


class Grant:
    """A verified capability: inode, access, expiry."""

    __slots__ = ("inode_id", "access", "expires_ms")

    def __init__(self, inode_id: int, access: int, expires_ms: int) -> None:
        self.inode_id, self.access, self.expires_ms = inode_id, access, expires_ms


class Verifier:
    """A storage node's check of capabilities, with the keys mgmtd last sent.

    Verified capabilities are remembered (bounded), so a batch of many reads
    of one file, or a stream of writes, checks its signature once.
    """

    def __init__(self) -> None:
        self._keys: dict[int, bytes] = {}
        self._verified: dict[bytes, Grant] = {}
        self._lock = threading.Lock()

    def set_keys(self, keys: Mapping[int, bytes]) -> None:
        if keys:
            self._keys = dict(keys)

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    def grant(self, blob: bytes, now_ms: int) -> Grant:
        """The grant blob carries; PermissionDenied naming why when it is forged, expired or unknown."""
        blob = bytes(blob)
        grant = self._verified.get(blob)
        if grant is None:
            grant = self._verify(blob)
            with self._lock:
                if len(self._verified) >= limits.capability_cache_entries_max:
                    self._verified.clear()
                self._verified[blob] = grant
        if now_ms > grant.expires_ms:
            raise PermissionDenied(f"the capability for inode {grant.inode_id} expired at {grant.expires_ms} ms "
                                   f"(now {now_ms} ms): ask meta for a fresh one")
        return grant

    def _verify(self, blob: bytes) -> Grant:
        if len(blob) != SIZE:
            raise PermissionDenied(f"a capability is {SIZE} bytes, not {len(blob)}")
        body, mac = blob[:_BODY.size], blob[_BODY.size:]
        version, epoch, inode_id, access, expires_ms = _BODY.unpack(body)
        if version != VERSION or access not in (READ, WRITE):
            raise PermissionDenied(f"the capability has an unknown version {version} or access {access}")
        if not self._keys:
            raise Unavailable("this storage node has no capability keys yet (they come with mgmtd's "
                              "heartbeat replies); retry")
        key = self._keys.get(epoch)
        if key is None:
            raise PermissionDenied(f"the capability's key epoch {epoch} is not one this node holds "
                                   f"({sorted(self._keys)}): ask meta for a fresh one")
        if not hmac.compare_digest(mac, _mac(key, body)):
            raise PermissionDenied("the capability's signature does not match: it was forged or altered")
        return Grant(inode_id, access, expires_ms)

    def require(self, blobs: Iterable[bytes], inode_ids: Iterable[int], access: int, now_ms: int) -> None:
        """Every inode of inode_ids needs a capability among blobs granting access; PermissionDenied
        naming the first that has none, or why the one it has is refused."""
        granted: dict[int, int] = {}
        failure: PermissionDenied | None = None
        for blob in blobs:
            try:
                grant = self.grant(blob, now_ms)
            except PermissionDenied as exc:
                failure = failure or exc
                continue
            granted[grant.inode_id] = max(granted.get(grant.inode_id, 0), grant.access)
        for inode_id in set(inode_ids):
            have = granted.get(inode_id, 0)
            if have >= access:
                continue
            if have:
                raise PermissionDenied(f"the capability for inode {inode_id} grants read, not write")
            if failure is not None:
                raise failure
            raise PermissionDenied(f"no capability for inode {inode_id}: open the file through meta to get one")
