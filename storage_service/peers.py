"""Calls to the other storage nodes of this node's chains (successors, syncing targets).

Chain updates go over the successor's bulk listener when it has one
(bulk_peers.py), else as Storage.Update; every other call is gRPC.

One channel per peer address, reopened when routing moves a target to a new
address (a restarted node binds a new port). Calls map gRPC failures to
FfsError (Unavailable for a dead or unreachable peer), so the chain logic sees
the same errors it sees in the simulation.
"""

from __future__ import annotations

import logging
import threading

import grpc

from fireflyfs.common.errors import Unavailable
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc

from .bulk_peers import BulkPeers, PeerTransportError
from .chain_update import ChainUpdate
from .routing_view import RoutingView

log = logging.getLogger(__name__)

peer_rpc_timeout_s_default = 10.0


class Peers:
    def __init__(self, routing: RoutingView, rpc_timeout_s: float = peer_rpc_timeout_s_default,
                 token: str | None = None, bulk: bool = True) -> None:
        """bulk: forward chain updates over successors' bulk listeners (False: Storage.Update only)."""
        self._routing = routing
        self._bulk = BulkPeers(token, rpc_timeout_s) if bulk else None
        self._token = token            # this node's key: peers check it (storage_service/access.py)
        self.rpc_timeout_s = rpc_timeout_s
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, storage_pb2_grpc.StorageStub]] = {}

    def _stub(self, target_id: int) -> tuple[str, storage_pb2_grpc.StorageStub]:
        address = self._routing.address_of_target(target_id)
        if not address:
            raise Unavailable(f"target {target_id} has no node address in routing")
        with self._lock:
            entry = self._channels.get(address)
            if entry is None:
                channel = make_channel(address, token=self._token)
                entry = (channel, storage_pb2_grpc.StorageStub(channel))
                self._channels[address] = entry
        return address, entry[1]

    def call(self, target_id: int, method: str, request, timeout_s: float | None = None):
        """Storage.<method>(request) on the node holding target_id; FfsError on failure."""
        address, stub = self._stub(target_id)
        with rpc_errors_mapped():
            try:
                return getattr(stub, method)(request, timeout=timeout_s or self.rpc_timeout_s)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    self._forget(address)
                raise

    def update(self, target_id: int, update: ChainUpdate, timeout_s: float | None = None
               ) -> storage_pb2.UpdateReply:
        """Forward a chain update to the node holding target_id; FfsError on failure."""
        timeout_s = timeout_s or self.rpc_timeout_s
        address = self._routing.bulk_address_of_target(target_id) if self._bulk is not None else None
        if not address:
            return self.call(target_id, "Update", update.to_proto(), timeout_s)
        try:
            commit_version, chunk_length, chunk_checksum = self._bulk.update(address, update, timeout_s)
        except PeerTransportError:
            self._bulk.forget(address)       # the node may have failed: its idle connections too
            raise
        return storage_pb2.UpdateReply(commit_version=commit_version, chunk_length=chunk_length,
                                       chunk_checksum=chunk_checksum)

    def _forget(self, address: str) -> None:
        """Reconnect next time. Not closed here: other threads may have calls in flight on it."""
        with self._lock:
            self._channels.pop(address, None)

    def close(self) -> None:
        if self._bulk is not None:
            self._bulk.close()
        with self._lock:
            entries, self._channels = list(self._channels.values()), {}
        for channel, _ in entries:
            channel.close()
