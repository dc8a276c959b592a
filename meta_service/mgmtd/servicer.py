"""Thin gRPC shell over ClusterState (service ``Mgmtd``)."""

from __future__ import annotations

import time

from fireflyfs.common.rpc import map_servicer_errors
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

from .cluster import ClusterState


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@map_servicer_errors
class MgmtdServicer(mgmtd_pb2_grpc.MgmtdServicer):
    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster

    def RegisterNode(self, request, context):
        routing = self.cluster.register_node(request.node_id, request.type, request.address,
                                             list(request.targets), now_ms(), request.hostname, request.pid,
                                             request.incarnation, request.bulk_address)
        return mgmtd_pb2.RegisterNodeReply(routing=routing,
                                           heartbeat_timeout_ms=self.cluster.heartbeat_timeout_ms)

    def Heartbeat(self, request, context):
        version = self.cluster.heartbeat(request.node_id, list(request.targets), now_ms(), request.incarnation)
        return mgmtd_pb2.HeartbeatReply(routing_version=version,
                                        heartbeat_timeout_ms=self.cluster.heartbeat_timeout_ms)

    def GetRoutingInfo(self, request, context):
        routing = self.cluster.routing(now_ms())
        if request.known_version and request.known_version == routing.version:
            return mgmtd_pb2.GetRoutingInfoReply(changed=False)
        return mgmtd_pb2.GetRoutingInfoReply(changed=True, routing=routing,
                                             admin_offline_targets=self.cluster.admin_offline_targets())

    def CreateChainTable(self, request, context):
        table, created = self.cluster.create_chain_table(request.table_id, request.replicas,
                                                         request.only_if_missing)
        return mgmtd_pb2.CreateChainTableReply(table=table, created=created)

    def SetTargetState(self, request, context):
        chain, target, version = self.cluster.set_target_state(request.target_id, request.offline, now_ms())
        reply = mgmtd_pb2.SetTargetStateReply(target=target, routing_version=version)
        if chain is not None:
            reply.chain.CopyFrom(chain)
        return reply
