"""Frame checks of the bulk wire format (proto/bulk_wire.py) that the listener relies on before allocating.

Goal: every request header whose lengths or counts are out of bounds is a
ProtocolError, whatever the values (the extremes of each unsigned field
included), and every header that passes asks for no more than the largest
buffer the listener may hand out; a write's meta parses only when its client
id length agrees with the meta's. Method: the extremes listed, then
hypothesis over the whole header space.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fireflyfs.common import limits
from fireflyfs.proto import bulk_wire as wire


@pytest.mark.parametrize("op, count, meta_len, data_len", [
    (wire.OP_WRITE, 1, wire.WRITE_REQUEST.size, limits.chunk_size_max + 1),
    (wire.OP_WRITE, 1, wire.WRITE_REQUEST.size, (1 << 64) - 1),
    (wire.OP_WRITE, 1, (1 << 32) - 1, 0),
    (wire.OP_WRITE, 1, wire.WRITE_REQUEST.size - 1, 0),
    (wire.OP_WRITE, 0, wire.WRITE_REQUEST.size, 0),
    (wire.OP_READ, wire.read_ios_max + 1, (wire.read_ios_max + 1) * wire.READ_IO.size, 0),
    (wire.OP_READ, 65535, 65535 * wire.READ_IO.size, 0),
    (wire.OP_READ, 1, (1 << 32) - 1, 0),
    (wire.OP_READ, 1, wire.READ_IO.size, 1),
    (wire.OP_READ_RTS, 2, wire.READ_IO.size, 0),
    (wire.OP_GRANT, 0, 0, 1),
    (wire.OP_RTS, 0, 0, 0),
])
def test_out_of_bounds_request_headers_are_protocol_errors(op, count, meta_len, data_len):
    with pytest.raises(wire.ProtocolError):
        wire.check_request(op, count, meta_len, data_len)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.integers(0, 65535), st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 64) - 1))
def test_a_header_that_passes_asks_for_a_bounded_buffer(op, count, meta_len, data_len):
    try:
        wire.parse_header(wire.HEADER.pack(wire.MAGIC, op, 0, count, meta_len, data_len))
        wire.check_request(op, count, meta_len, data_len)
    except wire.ProtocolError:
        return
    assert meta_len <= max(wire.write_meta_bytes_max, wire.read_ios_max * wire.READ_IO.size)
    assert data_len <= wire.write_data_bytes_max
    assert op in (wire.OP_READ, wire.OP_READ_RTS, wire.OP_WRITE, wire.OP_GRANT)


def test_a_write_meta_parses_only_with_a_matching_client_id_length():
    meta = wire.WRITE_REQUEST.pack(1, 2, 3, 4, 5, 6, 7, 8, 9, 3) + b"abc"
    fields, client_id, capability = wire.unpack_write_request(meta)
    assert fields == (1, 2, 3, 4, 5, 6, 7, 8, 9) and client_id == "abc" and capability == b""
    cap = bytes(range(38))                          # a capability (38 bytes) after the client id
    assert wire.unpack_write_request(meta + cap)[1:] == ("abc", cap)
    for wrong in (wire.WRITE_REQUEST.pack(1, 2, 3, 4, 5, 6, 7, 8, 9, 4) + b"abc",
                  wire.WRITE_REQUEST.pack(1, 2, 3, 4, 5, 6, 7, 8, 9, (1 << 32) - 1) + b"abc",
                  wire.WRITE_REQUEST.pack(1, 2, 3, 4, 5, 6, 7, 8, 9, 0) + b"abc"):
        with pytest.raises(wire.ProtocolError, match="client id"):
            wire.unpack_write_request(wrong)
