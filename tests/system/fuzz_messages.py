"""Hypothesis strategies for any gRPC request of FireflyFS, built from the proto descriptors.

Why descriptors: other changes keep adding RPCs and fields; a fuzzer that walks
``DESCRIPTOR.services_by_name`` and each input message's fields covers them
without edits. Two kinds of request body:

- ``message_strategy(descriptor, hints)``: a well-formed message whose fields
  take extreme values per wire type (0, -1, 2**31-1, 2**63-1, 2**64-1 for
  uint64; empty, long and odd strings such as "..", NUL, 4097-byte paths;
  bytes up to a bound and a few over the limits; NaN and infinities; enum
  numbers no .proto names), repeated fields of bounded length, nested messages
  to a bounded depth. ``hints`` maps a field name (``chain_id``, ``path``,
  ...) to real values of the cluster under test, mixed in so requests also get
  past the first check and reach deeper code.
- ``garbage_strategy(descriptor)``: raw bytes for a call made without a
  serializer: random bytes, a valid message cut short, a string field holding
  invalid UTF-8 (proto3 forbids it, so only a hand-made frame can carry it), a
  field sent with the wrong wire type, a length prefix past the end, deep
  nesting of unknown groups.

``Protection`` keeps generated requests away from a protected data set: field
values naming its inodes or its directory are replaced (see its docstring).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Iterator

from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from fireflyfs.common import limits

FD = pb_descriptor.FieldDescriptor

depth_max_default = 3            # nested messages below the request
repeated_items_max = 6           # elements of a repeated field (beyond a few, more finds nothing new)
bytes_small_max = 256
text_small_max = 40

# Values at and around each integer type's edges (what servers forget to check).
_UINT32_EDGES = (0, 1, 2, 255, 4096, 65536, 2**31 - 1, 2**31, 2**32 - 1)
_INT32_EDGES = (0, 1, -1, 2**31 - 1, -(2**31))
_UINT64_EDGES = (0, 1, 2, 2**31 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1)
_INT64_EDGES = (0, 1, -1, 2**31 - 1, 2**32, 2**63 - 1, -(2**63))

_INTEGER_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1, _INT32_EDGES),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1, _INT32_EDGES),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1, _INT32_EDGES),
    FD.TYPE_UINT32: (0, 2**32 - 1, _UINT32_EDGES),
    FD.TYPE_FIXED32: (0, 2**32 - 1, _UINT32_EDGES),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1, _INT64_EDGES),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1, _INT64_EDGES),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1, _INT64_EDGES),
    FD.TYPE_UINT64: (0, 2**64 - 1, _UINT64_EDGES),
    FD.TYPE_FIXED64: (0, 2**64 - 1, _UINT64_EDGES),
}

# Path-like pieces: what path parsing must reject or canonicalize.
_PATH_PIECES = ("", ".", "..", "a", "b", "/", "//", "\x00", "é", "\u202e", " ", "\n", "a" * 256, "*", "~")
_ODD_STRINGS = ("", "/", "//", ".", "..", "/..", "/../..", "/./.", "\x00", "/\x00", "/a\x00b", " ",
                "/" + "x" * (limits.name_bytes_max + 1), "/" + "a/" * (limits.path_depth_max + 1),
                "/" + "y" * limits.path_bytes_max, "\ufffd", "/\U0001f525")
# Sizes just past the limits a server must enforce before it allocates or stores.
_BIG_BYTES_SIZES = (limits.inline_data_bytes_max, limits.inline_data_bytes_max + 1,
                    limits.chunk_size_min + 1, limits.MiB + 1)


def service_methods(modules: Iterable) -> list[tuple[str, str, pb_descriptor.MethodDescriptor]]:
    """(service name, method name, method descriptor) of every service of the *_pb2 modules."""
    found = []
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append((service.name, method.name, method))
    return found


def method_path(method: pb_descriptor.MethodDescriptor) -> str:
    """The HTTP/2 path gRPC calls it by: /package.Service/Method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(descriptor: pb_descriptor.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# ---------------------------------------------------------------------- well-formed messages

def _integers(field: FD) -> st.SearchStrategy[int]:
    low, high, edges = _INTEGER_RANGES[field.type]
    return st.one_of(st.sampled_from(edges), st.integers(0, 16), st.integers(low, high))


def _strings() -> st.SearchStrategy[str]:
    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=text_small_max)
    paths = st.lists(st.sampled_from(_PATH_PIECES), max_size=8).map("/".join)
    return st.one_of(st.sampled_from(_ODD_STRINGS), text, paths, paths.map(lambda p: "/" + p))


def _bytes() -> st.SearchStrategy[bytes]:
    big = st.tuples(st.sampled_from(_BIG_BYTES_SIZES), st.binary(min_size=1, max_size=1)).map(
        lambda size_fill: size_fill[1] * size_fill[0])
    return st.one_of(st.binary(max_size=bytes_small_max), big)


def _scalar(field: FD, hints: dict[str, list]) -> st.SearchStrategy:
    if field.type in _INTEGER_RANGES:
        base = _integers(field)
    elif field.type == FD.TYPE_BOOL:
        base = st.booleans()
    elif field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        base = st.one_of(st.sampled_from((0.0, -0.0, math.nan, math.inf, -math.inf)),
                         st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64))
    elif field.type == FD.TYPE_STRING:
        base = _strings()
    elif field.type == FD.TYPE_BYTES:
        base = _bytes()
    elif field.type == FD.TYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        base = st.one_of(st.sampled_from(numbers), st.sampled_from((-1, max(numbers) + 1, 2**31 - 1)))
    else:
        raise TypeError(f"no strategy for field {field.full_name} of type {field.type}")
    hinted = [value for value in hints.get(field.name, ()) if _fits(field, value)]
    if not hinted:
        return base
    # Real values three times in four: a request must get several fields right to pass the first checks.
    real = st.sampled_from(hinted)
    return st.sampled_from((real, real, real, base)).flatmap(lambda chosen: chosen)


def _fits(field: FD, value) -> bool:
    if field.type in _INTEGER_RANGES:
        low, high, _ = _INTEGER_RANGES[field.type]
        return isinstance(value, int) and low <= value <= high
    if field.type == FD.TYPE_STRING:
        return isinstance(value, str)
    return False


def _is_map(field: FD) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _value(field: FD, hints: dict[str, list], depth_left: int) -> st.SearchStrategy | None:
    """A strategy for one element of field, or None when nesting must stop here."""
    if field.type == FD.TYPE_MESSAGE:
        if depth_left <= 0:
            return None
        return message_strategy(field.message_type, hints, depth_left - 1)
    return _scalar(field, hints)


def message_strategy(descriptor: pb_descriptor.Descriptor, hints: dict[str, list] | None = None,
                     depth_max: int = depth_max_default) -> st.SearchStrategy[Message]:
    """Messages of this type, each field present or not, with extreme or hinted values."""
    hints = hints or {}
    cls = message_class(descriptor)
    optional: dict[str, st.SearchStrategy] = {}
    required: dict[str, st.SearchStrategy] = {}   # hinted scalars: always drawn (their strategy has 0 too)
    for field in descriptor.fields:
        if _is_map(field):
            key = _value(field.message_type.fields_by_name["key"], hints, depth_max)
            value = _value(field.message_type.fields_by_name["value"], hints, depth_max)
            if key is not None and value is not None:
                optional[field.name] = st.dictionaries(key, value, max_size=repeated_items_max)
            continue
        element = _value(field, hints, depth_max)
        if element is None:
            continue
        if field.is_repeated:
            optional[field.name] = st.lists(element, max_size=repeated_items_max)
        elif field.name in hints and field.type != FD.TYPE_MESSAGE:
            required[field.name] = element
        else:
            optional[field.name] = element
    return st.fixed_dictionaries(required, optional=optional).map(lambda values: _build(cls, values))


def _build(cls: type[Message], values: dict) -> Message:
    message = cls()
    fields = cls.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        field = fields[name]
        if _is_map(field):
            target = getattr(message, name)
            for key, item in value.items():
                if field.message_type.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target = getattr(message, name)
            if field.type == FD.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FD.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# ---------------------------------------------------------------------- raw garbage

def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_GROUP_START, _WIRE_GROUP_END, _WIRE_FIXED32 = 0, 1, 2, 3, 4, 5


def _wire_type_of(field: FD) -> int:
    if field.is_repeated or field.type in (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_MESSAGE):
        return _WIRE_LENGTH
    if field.type in (FD.TYPE_FIXED64, FD.TYPE_SFIXED64, FD.TYPE_DOUBLE):
        return _WIRE_FIXED64
    if field.type in (FD.TYPE_FIXED32, FD.TYPE_SFIXED32, FD.TYPE_FLOAT):
        return _WIRE_FIXED32
    return _WIRE_VARINT


def _string_fields(descriptor: pb_descriptor.Descriptor) -> list[FD]:
    return [field for field in descriptor.fields if field.type == FD.TYPE_STRING]


def garbage_strategy(descriptor: pb_descriptor.Descriptor, hints: dict[str, list] | None = None
                     ) -> st.SearchStrategy[bytes]:
    """Request bodies a parser must refuse (or parse into something harmless)."""
    valid = message_strategy(descriptor, hints, depth_max=1).map(lambda m: m.SerializeToString())
    field_numbers = [field.number for field in descriptor.fields] or [1]
    kinds = [
        st.binary(min_size=1, max_size=bytes_small_max),
        # A valid message cut short: a length prefix or varint now runs past the end.
        valid.filter(lambda data: len(data) > 1).flatmap(
            lambda data: st.integers(1, len(data) - 1).map(lambda cut: data[:cut])),
        # A length prefix far past the end of the message.
        st.sampled_from(field_numbers).map(lambda n: _tag(n, _WIRE_LENGTH) + _varint(2**31) + b"x"),
        # Each declared field with a wire type it does not have.
        st.tuples(st.sampled_from(list(descriptor.fields) or [None]), st.sampled_from((0, 1, 2, 5))).map(
            lambda pair: _wrong_wire_type(*pair)),
        # Unbalanced or deeply nested groups, and a 10-byte varint that never ends.
        st.sampled_from((_tag(1, _WIRE_GROUP_START) * 200, _tag(1, _WIRE_GROUP_END),
                         _tag(1, _WIRE_VARINT) + b"\xff" * 11, b"\x00", b"\xff" * 16)),
    ]
    strings = _string_fields(descriptor)
    if strings:
        bad_utf8 = st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80"))
        kinds.append(st.tuples(valid, st.sampled_from(strings), bad_utf8).map(
            lambda triple: triple[0] + _tag(triple[1].number, _WIRE_LENGTH) + _varint(len(triple[2]))
            + triple[2]))
    return st.one_of(kinds)


def _wrong_wire_type(field: FD | None, wire_type: int) -> bytes:
    number = field.number if field is not None else 1
    if field is not None and wire_type == _wire_type_of(field):
        wire_type = _WIRE_FIXED32 if wire_type != _WIRE_FIXED32 else _WIRE_LENGTH
    body = {_WIRE_VARINT: _varint(7), _WIRE_FIXED64: b"\x01" * 8, _WIRE_LENGTH: _varint(3) + b"\xff\xfe\x00",
            _WIRE_FIXED32: b"\x01" * 4}[wire_type]
    return _tag(number, wire_type) + body


# ---------------------------------------------------------------------- keeping off protected data

@dataclasses.dataclass
class Protection:
    """Replace generated values that would name the protected data set.

    Rules, by field name so RPCs added later follow them: an integer field whose
    name contains "inode" (``inode_id``, ``inode_ids``, ``ChunkId.inode``), or
    the ``id`` of an ``Inode`` message, never holds a protected inode id; a
    string field never contains the protected directory's name (so no path,
    link target or relative path can reach into it). Replaced values become
    the value plus ``shift`` (integers, wrapped into range) or the string with
    that name replaced. ``inodes_sent`` collects every inode-naming value sent,
    so findings about them can be told apart from damage to protected data.
    """

    inode_ids: frozenset[int]
    directory_name: str
    shift: int = 1 << 40
    inodes_sent: set[int] = dataclasses.field(default_factory=set)

    def apply(self, message: Message) -> Message:
        for owner, field, value, setter in list(_walk(message)):
            if field.type in _INTEGER_RANGES and _names_inode(owner, field):
                if value in self.inode_ids:
                    low, high, _ = _INTEGER_RANGES[field.type]
                    value = low + (value + self.shift - low) % (high - low + 1)
                    setter(value)
                self.inodes_sent.add(value)
            elif field.type == FD.TYPE_STRING and self.directory_name in value:
                setter(value.replace(self.directory_name, "elsewhere"))
        return message


    def guard(self, body: bytes, request_type: type[Message]) -> bytes:
        """A garbage body as sent: when it parses (a cut message often does), its protected values
        replaced as in apply; else the protected directory's name replaced in the raw bytes."""
        try:
            message = request_type.FromString(body)
        except DecodeError:
            return body.replace(self.directory_name.encode(), b"elsewhere")
        parsed = message.SerializeToString()
        guarded = self.apply(message).SerializeToString()
        return body if guarded == parsed else guarded


def _names_inode(owner: pb_descriptor.Descriptor, field: FD) -> bool:
    return "inode" in field.name or (owner.name == "Inode" and field.name == "id")


def _walk(message: Message) -> Iterator[tuple[pb_descriptor.Descriptor, FD, object, Callable[[object], None]]]:
    """(owner type, field, scalar value, setter) for every scalar value set in message, nested ones too."""
    for field, value in message.ListFields():
        if field.type == FD.TYPE_MESSAGE:
            if _is_map(field):
                continue       # none in our protos; keys and values would need their own setters
            for item in (value if field.is_repeated else [value]):
                yield from _walk(item)
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield message.DESCRIPTOR, field, item, _item_setter(value, index)
        else:
            yield message.DESCRIPTOR, field, value, _field_setter(message, field.name)


def _item_setter(container, index: int) -> Callable[[object], None]:
    def set_item(value) -> None:
        container[index] = value
    return set_item


def _field_setter(message: Message, name: str) -> Callable[[object], None]:
    def set_field(value) -> None:
        setattr(message, name, value)
    return set_field
