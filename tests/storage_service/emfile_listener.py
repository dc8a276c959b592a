"""Child process for the descriptor-shortage test: a bulk listener with almost no descriptors to spare.

Usage: python emfile_listener.py DIR HEADROOM

Serves chain 1 (target 101 under DIR, holding b"emfile" in chunk 9:0) on a
BulkServer, then lowers its soft RLIMIT_NOFILE to the descriptors it has open
plus HEADROOM, prints the port, and answers each "report" line on stdin with
a JSON line of its accept failures and open connections.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from fireflyfs.proto import types_pb2
from fireflyfs.storage_service.bulk_connections import BulkLimits
from fireflyfs.storage_service.bulk_server import BulkHandler, BulkServer
from fireflyfs.storage_service.chain_driver import ChainDriver
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.peers import Peers
from fireflyfs.storage_service.routing_view import RoutingView
from fireflyfs.storage_service.target import Target


def main() -> None:
    data_dir, headroom = Path(sys.argv[1]), int(sys.argv[2])
    target = Target(101, data_dir / "target-101", block_size=4096)
    target.engine.write(chunk_key(9, 0), 0, b"emfile", 256 * 1024, 1)
    fence = Fence(1, heartbeat_timeout_ms=600_000)
    fence.contact_ok(0.0)
    routing = RoutingView(1, [101], fence, clock=lambda: 1.0)
    routing.update(types_pb2.RoutingInfo(version=1, chains=[types_pb2.ChainInfo(id=1, version=1, targets=[101])],
                                         targets=[types_pb2.TargetInfo(id=101, node_id=1, chain_id=1,
                                                                       public_state=types_pb2.SERVING)]))
    handler = BulkHandler(1, {101: target}, routing, ChainDriver(routing, Peers(routing)))
    server = BulkServer(handler, "127.0.0.1:0",
                        limits=BulkLimits(connections_max=1024, connections_per_peer_max=1024))
    server.start()
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + headroom, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(server.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps({"accept_failures": server.accept_failures,
                              "connections": server.connection_count}), flush=True)


if __name__ == "__main__":
    main()
