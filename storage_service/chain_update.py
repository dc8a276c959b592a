"""One CRAQ chain update as it travels from a replica to its successor, in either transport.

The chain driver builds a ``ChainUpdate`` and hands it to ``Peers.update``,
which sends it as a bulk UPDATE frame (proto/bulk_wire.py: the data goes from
the sender's buffer to the socket and from the socket into the receiver's
buffer, no message object around it) or as ``Storage.Update`` (gRPC, the
fallback). The receiving side turns either back into a ``ChainUpdate`` for
``ChainDriver.update``, so both transports run the same chain logic.
"""

from __future__ import annotations

import dataclasses

from fireflyfs.proto import bulk_wire as wire
from fireflyfs.proto import storage_pb2, types_pb2


@dataclasses.dataclass(frozen=True)
class ChainUpdate:
    chain_id: int
    chain_version: int
    inode: int
    index: int
    chunk_size: int
    update_version: int
    from_target: int
    to_target: int
    offset: int = 0
    data: bytes | memoryview = b""
    checksum: int = 0                # CRC32C of data, checked by the receiver before it stores anything
    full_replace: bool = False       # data is the whole chunk (resync, a syncing successor)
    truncate: bool = False
    truncate_length: int = 0
    chunk_chain_version: int = 0     # full_replace: the chain version the source chunk was committed at

    # ---- gRPC ---------------------------------------------------------------

    def to_proto(self) -> storage_pb2.UpdateRequest:
        data = self.data if isinstance(self.data, bytes) else bytes(self.data)
        return storage_pb2.UpdateRequest(
            write=storage_pb2.WriteRequest(
                chain_id=self.chain_id, chain_version=self.chain_version,
                chunk=types_pb2.ChunkId(inode=self.inode, index=self.index), offset=self.offset,
                data=data, checksum=self.checksum, chunk_size=self.chunk_size),
            update_version=self.update_version, full_replace=self.full_replace,
            from_target=self.from_target, to_target=self.to_target,
            kind=storage_pb2.UPDATE_TRUNCATE if self.truncate else storage_pb2.UPDATE_WRITE,
            truncate_length=self.truncate_length, chunk_chain_version=self.chunk_chain_version)

    @classmethod
    def from_proto(cls, request: storage_pb2.UpdateRequest) -> "ChainUpdate":
        write = request.write
        return cls(chain_id=write.chain_id, chain_version=write.chain_version, inode=write.chunk.inode,
                   index=write.chunk.index, chunk_size=write.chunk_size, update_version=request.update_version,
                   from_target=request.from_target, to_target=request.to_target, offset=write.offset,
                   data=write.data, checksum=write.checksum, full_replace=request.full_replace,
                   truncate=request.kind == storage_pb2.UPDATE_TRUNCATE,
                   truncate_length=request.truncate_length, chunk_chain_version=request.chunk_chain_version)

    # ---- bulk ---------------------------------------------------------------

    def wire_meta(self, token: str) -> bytes:
        """The meta of this update's bulk frame (its data goes in the frame's data section)."""
        raw_token = token.encode("ascii")
        return wire.UPDATE_REQUEST.pack(
            self.update_version, self.from_target, self.to_target, self.chain_id, self.chain_version,
            self.inode, self.index, self.offset, self.chunk_size, self.checksum, self.full_replace,
            1 if self.truncate else 0, self.truncate_length, self.chunk_chain_version,
            len(raw_token)) + raw_token

    @classmethod
    def from_wire(cls, fields: tuple[int, ...], data: memoryview) -> "ChainUpdate":
        """From wire.unpack_update_request's fields and the frame's data."""
        (update_version, from_target, to_target, chain_id, chain_version, inode, index, offset, chunk_size,
         checksum, full_replace, kind, truncate_length, chunk_chain_version) = fields
        if kind not in (0, 1) or full_replace not in (0, 1):
            raise wire.ProtocolError(f"update frame with kind {kind} and full_replace {full_replace}")
        return cls(chain_id=chain_id, chain_version=chain_version, inode=inode, index=index,
                   chunk_size=chunk_size, update_version=update_version, from_target=from_target,
                   to_target=to_target, offset=offset, data=data, checksum=checksum,
                   full_replace=bool(full_replace), truncate=kind == 1, truncate_length=truncate_length,
                   chunk_chain_version=chunk_chain_version)
