"""Thin gRPC shell over ClusterState (service ``Mgmtd``)."""

from __future__ import annotations

import time
from typing import Callable

from fireflyfs.common import auth, capability
from fireflyfs.common.errors import InvalidArgument
from fireflyfs.common.rpc import map_servicer_errors
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

from .cluster import ClusterState


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_incarnation(incarnation: int, node_id: int) -> None:
    if incarnation == 0:
        raise InvalidArgument(f"node {node_id}: incarnation must be set (the process's start time): mgmtd "
                              "tells a restarted node by it, and no call may step around that check")


@map_servicer_errors
class MgmtdServicer(mgmtd_pb2_grpc.MgmtdServicer):
    """Registrations and heartbeats only with the node's own key; cluster changes only for admins."""

    def __init__(self, cluster: ClusterState, node_key_hashes: Callable[[], dict[int, bytes]] = dict,
                 admin_token_hashes: Callable[[], dict[int, bytes]] = dict, cluster_secret: bytes = b"",
                 metrics_address: Callable[[], str] = str) -> None:
        self.cluster = cluster
        self._metrics_address = metrics_address   # this meta server's /metrics ("" when not served)
        self._node_key_hashes = node_key_hashes
        self._admin_token_hashes = admin_token_hashes
        self._cluster_secret = cluster_secret

    def _hashes_for_caller(self) -> dict:
        """What a storage node checks its callers with: to nodes only."""
        if not auth.caller().is_node:
            return {}
        keys = capability.keys_around(self._cluster_secret, now_ms()) if self._cluster_secret else {}
        return {"node_key_hashes": self._node_key_hashes(), "admin_token_hashes": self._admin_token_hashes(),
                "capability_keys": keys}

    def RegisterNode(self, request, context):
        auth.require_node(request.node_id, "registering")
        _check_incarnation(request.incarnation, request.node_id)
        routing = self.cluster.register_node(request.node_id, request.type, request.address,
                                             list(request.targets), now_ms(), request.hostname, request.pid,
                                             request.incarnation, request.bulk_address, request.metrics_address)
        return mgmtd_pb2.RegisterNodeReply(routing=routing,
                                           heartbeat_timeout_ms=self.cluster.heartbeat_timeout_ms,
                                           **self._hashes_for_caller())

    def Heartbeat(self, request, context):
        auth.require_node(request.node_id, "a heartbeat")
        _check_incarnation(request.incarnation, request.node_id)
        version = self.cluster.heartbeat(request.node_id, list(request.targets), now_ms(), request.incarnation)
        return mgmtd_pb2.HeartbeatReply(routing_version=version,
                                        heartbeat_timeout_ms=self.cluster.heartbeat_timeout_ms,
                                        **self._hashes_for_caller())

    def GetRoutingInfo(self, request, context):
        routing = self.cluster.routing(now_ms())
        if request.known_version and request.known_version == routing.version:
            return mgmtd_pb2.GetRoutingInfoReply(changed=False)
        return mgmtd_pb2.GetRoutingInfoReply(changed=True, routing=routing,
                                             admin_offline_targets=self.cluster.admin_offline_targets(),
                                             metrics_address=self._metrics_address())

    def CreateChainTable(self, request, context):
        auth.require_admin("creating a chain table")
        table, created = self.cluster.create_chain_table(request.table_id, request.replicas,
                                                         request.only_if_missing)
        return mgmtd_pb2.CreateChainTableReply(table=table, created=created)

    def SetTargetState(self, request, context):
        auth.require_admin("setting a target's state")
        chain, target, version = self.cluster.set_target_state(request.target_id, request.offline, now_ms())
        reply = mgmtd_pb2.SetTargetStateReply(target=target, routing_version=version)
        if chain is not None:
            reply.chain.CopyFrom(chain)
        return reply

    def _moves_reply(self, planned, pending, draining):
        return mgmtd_pb2.MovesReply(planned=planned, pending=pending, draining=draining)

    def Rebalance(self, request, context):
        auth.require_admin("rebalancing the cluster")
        return self._moves_reply(*self.cluster.rebalance(now_ms(), request.dry_run, request.moves_in_flight,
                                                         request.cancel))

    def DrainNode(self, request, context):
        auth.require_admin("draining a node")
        return self._moves_reply(*self.cluster.drain_node(request.node_id, now_ms(), request.dry_run,
                                                          request.moves_in_flight))

    def RemoveNode(self, request, context):
        auth.require_admin("removing a node")
        return mgmtd_pb2.RemoveNodeReply(targets=self.cluster.remove_node(request.node_id, now_ms()))
