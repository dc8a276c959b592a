"""Calls to whichever of several servers is primary now (mgmtd on several meta servers, issue 11).

A storage node heartbeats to the mgmtd primary, and the primary moves when
its server dies. ``PrimaryStub`` looks like a gRPC stub (``stub.Heartbeat(
request, timeout=...)``) over a list of addresses: a call goes to the server
believed primary; an answer NotPrimary names the primary ("the primary is
HOST:PORT", meta_service/mgmtd/cluster.py) and the call moves there; an
unreachable server passes the call to the next address. A single address
behaves as a plain stub.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable

import grpc

from . import errors
from .rpc import error_from_rpc, make_channel

_PRIMARY_IS = re.compile(r"the primary is (\S+:\d+)")


def primary_named_in(error: errors.FfsError) -> str | None:
    """The primary's address a NotPrimary answer names (None: not elected yet, or not said)."""
    found = _PRIMARY_IS.search(str(error))
    return found.group(1) if found else None


def split_addresses(text: str) -> list[str]:
    """"h1:p1,h2:p2" -> ["h1:p1", "h2:p2"] (blanks dropped, order kept, duplicates removed)."""
    seen: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    if not seen:
        raise errors.InvalidArgument(f"no address in {text!r}")
    return seen


class PrimaryStub:
    def __init__(self, addresses: list[str], make_stub: Callable[[grpc.Channel], Any],
                 token: str | None = None) -> None:
        self.addresses = list(addresses)
        self._token = token            # every call carries it (a storage node's key)
        self._make_stub = make_stub
        self._lock = threading.Lock()
        self._current = self.addresses[0]
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, Any] = {}

    @property
    def current(self) -> str:
        return self._current

    def __getattr__(self, method: str) -> Callable:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda request, timeout=None: self._call(method, request, timeout)

    def _stub(self, address: str):
        with self._lock:
            if address not in self._stubs:
                self._channels[address] = make_channel(address, token=self._token)
                self._stubs[address] = self._make_stub(self._channels[address])
            return self._stubs[address]

    def _move(self, address: str) -> None:
        with self._lock:
            if address not in self.addresses:
                self.addresses.append(address)
            self._current = address

    def _next_after(self, address: str) -> str:
        index = self.addresses.index(address) if address in self.addresses else -1
        return self.addresses[(index + 1) % len(self.addresses)]

    def _call(self, method: str, request, timeout: float | None):
        last: errors.FfsError | None = None
        for _ in range(2 * len(self.addresses) + 1):
            address = self._current
            try:
                return getattr(self._stub(address), method)(request, timeout=timeout)
            except grpc.RpcError as rpc_error:
                error = error_from_rpc(rpc_error)
                if not isinstance(error, errors.Unavailable):
                    raise error from rpc_error
                last = error
            named = primary_named_in(last) if isinstance(last, errors.NotPrimary) else None
            if named and named != address:
                self._move(named)
            elif isinstance(last, errors.NotPrimary) and len(self.addresses) == 1:
                break          # the only server is a standby with no primary yet: the caller retries later
            else:
                self._move(self._next_after(address))
        raise last

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()
