"""A tiny in-process Mgmtd for storage tests (the real one lives in meta_service).

It gives every registered target its own one-replica chain (version 1), bumps
the routing version on every change, and can be told to refuse registrations
or to forget nodes, so tests see the storage node's retry paths.
"""

from __future__ import annotations

import threading

import grpc

from fireflyfs.common.errors import NotFound, Unavailable
from fireflyfs.common.rpc import PLAINTEXT, abort_with, make_server
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc, types_pb2


class FakeMgmtd(mgmtd_pb2_grpc.MgmtdServicer):
    def __init__(self, plaintext: bool = False) -> None:
        self.plaintext = plaintext    # for storage processes run --insecure (no TLS, no keys)
        self.lock = threading.Lock()
        self.routing = types_pb2.RoutingInfo(version=1)
        self.refuse_registrations = 0
        self.registrations: list[mgmtd_pb2.RegisterNodeRequest] = []
        self.heartbeats: list[mgmtd_pb2.HeartbeatRequest] = []
        self.server: grpc.Server | None = None
        self.address = ""

    # -------------------------------------------------------------- test controls

    def start(self) -> "FakeMgmtd":
        self.server, port = make_server("127.0.0.1:0", max_workers=4,
                                        credentials=PLAINTEXT if self.plaintext else None)
        mgmtd_pb2_grpc.add_MgmtdServicer_to_server(self, self.server)
        self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0).wait()

    def chain_for_target(self, target_id: int) -> types_pb2.ChainInfo:
        """A copy of the chain holding target_id (later bumps do not change it)."""
        with self.lock:
            chain = next(c for c in self.routing.chains if list(c.targets) == [target_id])
            copy = types_pb2.ChainInfo()
            copy.CopyFrom(chain)
            return copy

    def bump_chain(self, chain_id: int) -> int:
        with self.lock:
            chain = next(c for c in self.routing.chains if c.id == chain_id)
            chain.version += 1
            self.routing.version += 1
            return chain.version

    def forget_nodes(self) -> None:
        with self.lock:
            del self.routing.nodes[:]

    def node(self, node_id: int) -> types_pb2.NodeInfo | None:
        with self.lock:
            for node in self.routing.nodes:
                if node.id == node_id:
                    copy = types_pb2.NodeInfo()
                    copy.CopyFrom(node)
                    return copy
            return None

    # -------------------------------------------------------------- the service

    def RegisterNode(self, request, context):
        with self.lock:
            if self.refuse_registrations > 0:
                self.refuse_registrations -= 1
                abort_with(context, Unavailable("fake mgmtd refuses this registration"))
            self.registrations.append(request)
            nodes = [n for n in self.routing.nodes if n.id != request.node_id]
            del self.routing.nodes[:]
            self.routing.nodes.extend(nodes)
            self.routing.nodes.add(id=request.node_id, type=request.type, address=request.address,
                                   status=types_pb2.HEARTBEAT_CONNECTED, pid=request.pid)
            known = {t.id for t in self.routing.targets}
            for target in request.targets:
                if target.id in known:
                    continue
                chain_id = len(self.routing.chains) + 1
                self.routing.chains.add(id=chain_id, version=1, targets=[target.id])
                self.routing.targets.add(id=target.id, node_id=request.node_id, chain_id=chain_id,
                                         public_state=types_pb2.SERVING, path=target.path)
            self.routing.version += 1
            return mgmtd_pb2.RegisterNodeReply(routing=self.routing)

    def Heartbeat(self, request, context):
        with self.lock:
            if not any(n.id == request.node_id for n in self.routing.nodes):
                abort_with(context, NotFound(f"node {request.node_id} is not registered"))
            self.heartbeats.append(request)
            return mgmtd_pb2.HeartbeatReply(routing_version=self.routing.version)

    def GetRoutingInfo(self, request, context):
        with self.lock:
            if request.known_version == self.routing.version:
                return mgmtd_pb2.GetRoutingInfoReply(changed=False)
            return mgmtd_pb2.GetRoutingInfoReply(changed=True, routing=self.routing)
