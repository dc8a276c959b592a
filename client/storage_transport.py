"""The storage transport: what StorageClient needs from one storage node, and nothing more.

StorageClient (storage_client.py) owns everything that spans nodes and
attempts: routing, replica choice, cutting reads into batches, how many
requests are in flight, retries and failover. A transport carries one request
to the node a ``Route`` names and reports what the node answered (httpx's
split between ``Client`` and a transport's ``handle_request``), so the
routing and retry logic is one piece of code whatever carries the bytes:

- ``GrpcStorageTransport`` (grpc_transport.py): Storage.* RPCs through the
  process's ChannelPool;
- ``BulkStorageTransport`` (bulk_transport.py): reads and writes over the
  nodes' bulk listeners (bulk_client.py), gRPC for the control calls and for
  nodes that advertise no bulk listener;
- in tests, a transport over real storage cores in this process
  (tests/client/in_process.py), with no sockets.

Reads come in two steps so that one thread can keep several requests in
flight: ``send_read`` sends and returns a handle, ``receive_read`` lands the
reply in the caller's views. ``ReadLimits.pipelined`` says whether the send
returns before the node answers (bulk: the client sends ahead, bounded per
node and in total, and receives in order) or not (gRPC: the client runs each
batch on an IO thread). Every handle ``send_read`` returns is given to
``receive_read`` exactly once: that is when the transport takes its connection
back.

Errors: ``NodeUnreachable`` when the node could not be reached or the
connection broke mid-request (the client then avoids the node for a while and
retries elsewhere or later); any other FfsError is what the node answered.
Messages name the operation and the route (``describe``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from fireflyfs.common import errors
from fireflyfs.common.errors import Unavailable

if TYPE_CHECKING:     # annotations only: this module (and bulk_client.py, which imports it) loads no gRPC
    from .routing import Route

# One chunk range to read: (chain_id, chain_version, inode, chunk_index, offset, length), the bulk
# wire's tuple as it is, so the hot read path builds nothing else per piece.
ReadIO = tuple[int, int, int, int, int, int]


class NodeUnreachable(Unavailable):
    """The node did not answer, or the connection to it broke: avoid it for a while, retry."""


def describe(route: Route) -> str:
    """Where a request went, for error messages: chain, version, target, node and address."""
    return (f"chain {route.chain_id} v{route.chain_version}, target {route.target_id} "
            f"on node {route.node_id} ({route.address})")


@dataclasses.dataclass(frozen=True, slots=True)
class ReadLimits:
    """How the client must cut and schedule reads for one node (see the module docstring)."""

    bytes_max: int           # bytes asked by one read request
    ios_max: int             # chunk ranges in one read request
    pipelined: bool          # send_read returns before the reply: send ahead from one thread


@dataclasses.dataclass(slots=True)
class ReadOutcome:
    """One IO of a read reply: bytes received (into its view), chunk facts, or an error."""

    data_len: int = 0
    chunk_length: int = 0
    commit_version: int = 0
    error: errors.FfsError | None = None
    # The bytes arrived but failed the stored block CRCs the node sent along: the node did not check
    # them itself (bulk sends whole blocks with sendfile), so the client reports the replica.
    checksum_failed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class WriteAck:
    """The chain head's answer to a chunk write: the chain committed it at commit_version."""

    commit_version: int
    chunk_length: int
    chunk_checksum: int


@dataclasses.dataclass(frozen=True, slots=True)
class LastChunk:
    """The last chunk of a file on one chain's target (QueryLastChunk)."""

    last_index: int
    last_length: int


class StorageTransport(Protocol):
    """Requests to the storage node a Route names; see the module docstring for the contract."""

    def read_limits(self, route: Route) -> ReadLimits:
        """How reads to route's node are cut and scheduled."""

    def send_read(self, route: Route, ios: list[ReadIO]) -> Any:
        """Send one read request of ios to route's node; the handle goes to receive_read once."""

    def receive_read(self, route: Route, sent: Any, ios: list[ReadIO],
                     views: list[memoryview]) -> list[ReadOutcome]:
        """The reply to send_read: outcome i's data_len bytes are in views[i] (len(views[i]) == ios[i]
        length; the caller zero-fills the rest). A whole-request failure raises."""

    def write(self, route: Route, inode_id: int, chunk_index: int, offset: int, data: memoryview,
              checksum: int, chunk_size: int, client_id: str, channel: int, seqnum: int) -> WriteAck:
        """One chunk write to the chain head; answers after every replica committed.

        (client_id, channel, seqnum) make a retry of the same write apply at most once.
        """

    def truncate_chunk(self, route: Route, inode_id: int, chunk_index: int, length: int,
                       chunk_size: int) -> None:
        """Cut one chunk to length through the chain (NotFound: no such chunk)."""

    def remove_chunks(self, route: Route, inode_id: int, begin_index: int, end_index: int = 0) -> int:
        """Remove the chain's chunks of inode_id in [begin_index, end_index) (0: no end); the count."""

    def query_last_chunks(self, routes: list[Route], inode_id: int) -> list[LastChunk | None]:
        """Per route (all on one node): the last chunk of inode_id on that chain, None if it has none."""

    def report_bad_chunk(self, route: Route, inode_id: int, chunk_index: int) -> None:
        """Tell route's node that its copy of the chunk failed its CRCs here (it re-verifies and repairs)."""
