"""The bulk data protocol: framing shared by the storage node's bulk listener and the client.

gRPC stays the control contract (storage.proto); this is the lean path for
chunk bytes (see storage_service/bulk_server.py for why it exists, with numbers). Every frame,
request or reply, is one fixed header, a *meta* section whose length the
header gives, and a raw *data* section whose length the header gives::

    header   "<4sBBHIQ"  magic b"FFB1", op, status (replies; 0 in requests), count,
                         meta_len, data_len                                (20 bytes)
    meta     meta_len bytes (op specific, below)
    data     data_len bytes (chunk bytes, never copied into a message object)

All integers little-endian. A connection carries one request at a time or
several pipelined; replies come in request order.

READ (op 1): ``count`` x ReadIO ``"<IIQIII"`` (chain_id, chain_version,
inode, chunk index, offset in chunk, length) in meta, then the read
capabilities of the request's inodes (common/capability.py, 38 bytes each, at
most ``count``); no data. Reply meta:
``count`` x ReadHead ``"<IIIIQ"`` (error text length, data length, checksum
block size, chunk length, commit version), then for each IO its error text
("Name\\nmessage", utf-8) and, when it returned data, one CRC32C per *segment*
("<I" each); reply data: each IO's bytes in order. Segments cut the returned
range [offset, offset + data_len) at multiples of the block size (chunk
offsets): a segment that is a whole stored block carries the block's stored
CRC (the server does not read the bytes into memory: it ``sendfile``s them,
and the client's check is the end-to-end one), an edge segment the CRC of the
bytes sent (the server read and verified the whole block first). So every
byte is checked once on its way from disk to the caller's buffer.

WRITE (op 2): meta ``"<IIQIIIIIQI"`` (chain_id, chain_version, inode, index,
offset, chunk_size, checksum of data, channel, seqnum, client_id length) then
the client id, then the inode's write capability (38 bytes; absent: none);
data: the bytes. The bulk path carries no token: its callers are clients,
and storage lets a client read or write only what a capability grants. Reply meta ``"<QII"`` (commit version, chunk
length, chunk checksum).

Errors: a reply with status 1 has meta = error text and no data (the whole
request failed: TooLarge, a fence, ...). A malformed frame (bad magic, unknown
op, lengths out of bounds) gets such a reply naming InvalidArgument, then the
server closes the connection. A well-formed request the server cannot take
now (its buffer budget stayed full: storage_service/bulk_buffers.py) or
whose write is out of bounds gets an error reply (Unavailable, InvalidArgument)
after the rest of its frame was read and dropped; the connection stays usable.

UPDATE (op 6, storage node -> its chain successor): a CRAQ chain update,
the bytes of ``Storage.Update`` without a protobuf message around them. Meta
``"<QQQIIQIIIIBBIIH"`` (update version, from target, to target, chain_id,
chain_version, inode, index, offset, chunk_size, checksum of data,
full_replace, kind (0 write, 1 truncate), truncate length, chunk chain
version, token length) then the sender's node token (common/auth.py: the
receiver checks it against mgmtd's key hashes; empty when security is off);
data: the bytes (a write's, or the whole chunk of a full replace). Reply meta
is a WRITE reply's ``"<QII"`` (commit version, chunk length, chunk checksum).

Request-to-send (storage_service/rts.py, client/rts.py): READ_RTS (op 3) is a
READ whose data waits for the client's permission. Once the server has the
data ready (and only if there is data), it sends RTS (op 4, server -> client:
count = the request's IOs, meta ``"<Q"`` = data bytes it will send, no data)
and waits for GRANT (op 5, client -> server: count 0, no meta, no data); then
the READ reply follows as usual. No grant within the server's timeout: a
whole-request error reply (Unavailable) instead; a GRANT arriving later is
ignored. A GRANT outside a wait is always ignored.
"""

from __future__ import annotations

import struct

from fireflyfs.common import capability, errors, limits

MAGIC = b"FFB1"
HEADER = struct.Struct("<4sBBHIQ")
READ_IO = struct.Struct("<IIQIII")
READ_HEAD = struct.Struct("<IIIIQ")
WRITE_REQUEST = struct.Struct("<IIQIIIIIQI")
WRITE_REPLY = struct.Struct("<QII")
UPDATE_REQUEST = struct.Struct("<QQQIIQIIIIBBIIH")
CRC = struct.Struct("<I")

OP_READ = 1
OP_WRITE = 2
OP_READ_RTS = 3      # a read whose data waits for a GRANT
OP_RTS = 4           # server -> client: data ready, may I send?
OP_GRANT = 5         # client -> server: send
OP_UPDATE = 6        # storage node -> chain successor: a chain update
OPS = {OP_READ: "read", OP_WRITE: "write", OP_READ_RTS: "read", OP_RTS: "request-to-send",
       OP_GRANT: "grant", OP_UPDATE: "update"}
RTS_META = struct.Struct("<Q")

STATUS_OK = 0
STATUS_ERROR = 1

read_ios_max = limits.batch_read_ios_max
read_bytes_max = limits.batch_read_reply_bytes_max
client_id_bytes_max = 256
error_text_bytes_max = 4096
write_meta_bytes_max = WRITE_REQUEST.size + client_id_bytes_max + capability.SIZE
write_data_bytes_max = limits.chunk_size_max
token_bytes_max = 512
update_meta_bytes_max = UPDATE_REQUEST.size + token_bytes_max
# A read reply's meta: heads, error texts, and at most one CRC per 4 KiB block of data (plus edges).
read_reply_meta_bytes_max = (read_ios_max * (READ_HEAD.size + error_text_bytes_max + 2 * CRC.size)
                             + read_bytes_max // limits.checksum_block_bytes_min * CRC.size)


class ProtocolError(errors.InvalidArgument):
    """A malformed bulk frame: the connection is not usable afterwards."""


def header(op: int, count: int, meta_len: int, data_len: int, status: int = STATUS_OK) -> bytes:
    return HEADER.pack(MAGIC, op, status, count, meta_len, data_len)


def parse_header(raw) -> tuple[int, int, int, int, int]:
    """(op, status, count, meta_len, data_len) of a frame header; ProtocolError if it is not one."""
    magic, op, status, count, meta_len, data_len = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(f"bad bulk frame magic {bytes(magic)!r} (expected {MAGIC!r})")
    if op not in OPS:
        raise ProtocolError(f"unknown bulk op {op}")
    if status not in (STATUS_OK, STATUS_ERROR):
        raise ProtocolError(f"bad bulk frame status {status}")
    return op, status, count, meta_len, data_len


def check_request(op: int, count: int, meta_len: int, data_len: int) -> None:
    """Bounds of a request frame, checked before anything is read past the header."""
    if op == OP_GRANT:
        if count or meta_len or data_len:
            raise ProtocolError(f"grant frame with count {count}, meta {meta_len}, data {data_len}")
    elif op == OP_RTS:
        raise ProtocolError("request-to-send frame sent to the server")
    elif op in (OP_READ, OP_READ_RTS):
        if count > read_ios_max:
            raise ProtocolError(f"read of {count} IOs exceeds {read_ios_max}")
        caps_len = meta_len - count * READ_IO.size
        if caps_len < 0 or caps_len % capability.SIZE or caps_len // capability.SIZE > count or data_len:
            raise ProtocolError(f"read frame of {count} IOs with meta {meta_len} / data {data_len} bytes")
    elif op == OP_UPDATE:
        if count != 1 or not UPDATE_REQUEST.size <= meta_len <= update_meta_bytes_max:
            raise ProtocolError(f"update frame with count {count} and meta of {meta_len} bytes")
        if data_len > write_data_bytes_max:
            raise ProtocolError(f"update of {data_len} bytes exceeds {write_data_bytes_max}")
    elif op == OP_WRITE:
        if count != 1 or not WRITE_REQUEST.size <= meta_len <= write_meta_bytes_max:
            raise ProtocolError(f"write frame with count {count} and meta of {meta_len} bytes")
        if data_len > write_data_bytes_max:
            raise ProtocolError(f"write of {data_len} bytes exceeds {write_data_bytes_max}")


def unpack_write_request(meta) -> tuple[tuple[int, ...], str, bytes]:
    """A write frame's meta: (chain_id, chain_version, inode, index, offset, chunk_size, checksum,
    channel, seqnum), the client id and the capability (b"": none); ProtocolError if the client
    id's length disagrees with meta's."""
    fields = WRITE_REQUEST.unpack_from(meta)
    client_id_end = WRITE_REQUEST.size + fields[-1]
    if len(meta) - client_id_end not in (0, capability.SIZE):
        raise ProtocolError(f"write frame: client id of {fields[-1]} bytes in "
                            f"{len(meta) - WRITE_REQUEST.size}")
    return (fields[:-1], bytes(meta[WRITE_REQUEST.size:client_id_end]).decode("utf-8", "replace"),
            bytes(meta[client_id_end:]))


def unpack_update_request(meta) -> tuple[tuple[int, ...], str]:
    """An update frame's meta: its fields (UPDATE_REQUEST without the token length) and the
    sender's token ("" when none); ProtocolError if the token's length disagrees with meta's."""
    fields = UPDATE_REQUEST.unpack_from(meta)
    if len(meta) != UPDATE_REQUEST.size + fields[-1]:
        raise ProtocolError(f"update frame: token of {fields[-1]} bytes in {len(meta) - UPDATE_REQUEST.size}")
    return fields[:-1], bytes(meta[UPDATE_REQUEST.size:]).decode("ascii", "replace")


def unpack_read_request_meta(meta, count: int) -> tuple[list[tuple[int, ...]], list[bytes]]:
    """(IOs, capabilities) of a read frame's meta (its bounds were checked with the header)."""
    ios_end = count * READ_IO.size
    caps = bytes(meta[ios_end:])
    return (list(READ_IO.iter_unpack(meta[:ios_end])),
            [caps[i:i + capability.SIZE] for i in range(0, len(caps), capability.SIZE)])


def check_reply(op: int, expected_op: int, count: int, expected_count: int, meta_len: int,
                data_len: int, data_max: int) -> None:
    if op != expected_op:
        raise ProtocolError(f"bulk reply op {op} to a {OPS[expected_op]} request")
    if count != expected_count:
        raise ProtocolError(f"bulk reply for {count} IOs to a request of {expected_count}")
    if meta_len > read_reply_meta_bytes_max or data_len > data_max:
        raise ProtocolError(f"bulk reply meta {meta_len} / data {data_len} bytes out of bounds")


def _wire_name(exc: errors.FfsError) -> str:
    """The nearest error name the other side knows (ProtocolError travels as InvalidArgument)."""
    for cls in type(exc).__mro__:
        if errors.ERRORS_BY_NAME.get(cls.__name__) is cls:
            return cls.__name__
    return "Internal"


def error_text(exc: errors.FfsError) -> bytes:
    text = f"{_wire_name(exc)}\n{exc}".encode("utf-8", "replace")
    return text[:error_text_bytes_max]


def error_from_text(raw, context: str = "") -> errors.FfsError:
    name, _, message = bytes(raw).decode("utf-8", "replace").partition("\n")
    return errors.error_from_name(name, f"{context}: {message}" if context else message)


def segment_count(offset: int, data_len: int, block_size: int) -> int:
    """How many CRC segments cover [offset, offset + data_len) cut at multiples of block_size."""
    if data_len <= 0:
        return 0
    return (offset + data_len - 1) // block_size - offset // block_size + 1


def segments(offset: int, data_len: int, block_size: int):
    """(start, end) of each segment, relative to the returned data."""
    position, end = offset, offset + data_len
    while position < end:
        stop = min((position // block_size + 1) * block_size, end)
        yield position - offset, stop - offset
        position = stop
