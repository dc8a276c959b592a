"""Routing for tests that play mgmtd: a RoutingInfo of nodes, chains of replicas and one chain table.

Storage nodes to go with it run in-process over the real cores
(tests/client/in_process.py); mgmtd is the test itself.
"""

from __future__ import annotations

from fireflyfs.proto import types_pb2


def make_routing(version: int = 1, nodes: int = 3, chains: int = 6,
                 chain_version: int = 1, replicas: int = 1) -> types_pb2.RoutingInfo:
    """Chains of `replicas` targets on consecutive nodes (head on node (chain-1) % nodes + 1)."""
    routing = types_pb2.RoutingInfo(version=version)
    for node_id in range(1, nodes + 1):
        routing.nodes.add(id=node_id, type=types_pb2.NODE_STORAGE, address=f"node-{node_id}")
    for chain_id in range(1, chains + 1):
        targets = []
        for replica in range(replicas):
            node_id = (chain_id - 1 + replica) % nodes + 1
            target_id = node_id * 100 + chain_id
            routing.targets.add(id=target_id, node_id=node_id, chain_id=chain_id,
                                public_state=types_pb2.SERVING)
            targets.append(target_id)
        routing.chains.add(id=chain_id, version=chain_version, targets=targets)
    routing.chain_tables.add(id=1, version=1, chains=list(range(1, chains + 1)), replicas=replicas)
    return routing
