"""save_checkpoint / load_checkpoint: tensors as raw byte ranges of one file.

``torch.save`` serialises a state dict into one stream that must be written
and read front to back. Here the tensors' bytes are laid out at known offsets,
so saving is a few large chunk-aligned writes issued in parallel (one
Storage.Write per whole chunk) and loading is batched ranged reads straight
into preallocated tensors. The rest of the state dict (nesting, numbers,
strings, optimizer hyper-parameters) is pickled with each tensor replaced by
a reference into a small table of (dtype, shape, offset, size, CRC32C).

File layout (all little-endian)::

    header  16 B   magic "FFLYCKPT", u32 version, u32 0
    tensors        each at a 64-byte aligned offset, raw bytes in dtype order
    skeleton       pickle of the state dict, tensors as persistent ids
    table          JSON: {"tensors": [{dtype, shape, offset, nbytes, crc32c, ...}]}
    footer  48 B   u64 skeleton offset, u64 length, u32 CRC32C,
                   u64 table offset, u64 length, u32 CRC32C, magic

Saving is atomic: the file is written under a temporary name in the same
directory and renamed over the old one (one Meta.Rename), so a crash part-way
leaves the previous checkpoint intact. Tensors are saved by value (views are
copied, the same tensor object twice is stored once). Loading a file written by
plain ``torch.save`` falls back to ``torch.load``. As with ``torch.load``,
``weights_only=True`` (the default) refuses to unpickle anything but plain
containers, numbers, strings and torch dtypes/sizes/devices.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import struct
from typing import Any, Iterator

import crc32c
import fsspec
import torch

from fireflyfs.common.errors import ChecksumMismatch, InvalidArgument
from . import _io

MAGIC = b"FFLYCKPT"
VERSION = 1
HEADER = struct.Struct("<8sII")
FOOTER = struct.Struct("<QQIQQI8s")
TORCH_ZIP_MAGIC = b"PK\x03\x04"
tensor_alignment_bytes = 64
pickle_protocol = 4

if HEADER.size != 16 or FOOTER.size != 48:   # the on-disk format; checked even under -O
    raise AssertionError("checkpoint header/footer sizes changed")


class CorruptCheckpoint(ChecksumMismatch):
    """A checkpoint whose bytes do not match its checksums, or not a checkpoint."""


@dataclasses.dataclass(slots=True)
class _Entry:
    dtype: str
    shape: list[int]
    offset: int
    nbytes: int
    crc32c: int = 0
    parameter: bool = False
    requires_grad: bool = False


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise CorruptCheckpoint(f"unknown tensor dtype {name!r}")
    return value


def _check_saveable(tensor: torch.Tensor) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        raise InvalidArgument(f"cannot save a {tensor.layout} / quantized / meta tensor with "
                              "save_checkpoint; use torch.save for it")
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        raise InvalidArgument(f"cannot save tensor subclass {type(tensor).__name__}; "
                              "convert it to a plain tensor or use torch.save")


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes as one flat view (a CPU contiguous copy when needed)."""
    flat = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy())


class _SkeletonPickler(pickle.Pickler):
    """Pickles the state dict with each tensor replaced by ("tensor", number)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle_protocol)
        self.tensors: list[torch.Tensor] = []
        self._numbers: dict[int, int] = {}

    def persistent_id(self, obj: Any):
        if not isinstance(obj, torch.Tensor):
            return None
        number = self._numbers.get(id(obj))
        if number is None:
            _check_saveable(obj)
            number = len(self.tensors)
            self._numbers[id(obj)] = number
            self.tensors.append(obj)
        return ("tensor", number)


def _plan(tensors: list[torch.Tensor]) -> list[_Entry]:
    entries, position = [], HEADER.size
    for tensor in tensors:
        offset = -(-position // tensor_alignment_bytes) * tensor_alignment_bytes
        nbytes = tensor.numel() * tensor.element_size()
        entries.append(_Entry(str(tensor.dtype).removeprefix("torch."), list(tensor.shape), offset,
                              nbytes, parameter=isinstance(tensor, torch.nn.Parameter),
                              requires_grad=bool(tensor.requires_grad)))
        position = offset + nbytes
    return entries


def _blocks(tensors: list[torch.Tensor], entries: list[_Entry], skeleton: bytes) -> Iterator:
    """The file's bytes in order; tensor CRCs are filled in as they stream past."""
    yield HEADER.pack(MAGIC, VERSION, 0)
    position = HEADER.size
    for tensor, entry in zip(tensors, entries):
        if entry.offset > position:
            yield bytes(entry.offset - position)
        data = _tensor_bytes(tensor)
        if data.nbytes != entry.nbytes:
            raise InvalidArgument(f"a tensor changed size while being saved "
                                  f"({entry.nbytes} -> {data.nbytes} bytes)")
        entry.crc32c = crc32c.crc32c(data)
        yield data
        position = entry.offset + entry.nbytes
    fields = [field.name for field in dataclasses.fields(_Entry)]
    table = json.dumps({"tensors": [{name: getattr(entry, name) for name in fields}
                                    for entry in entries]}).encode()
    yield skeleton
    yield table
    yield FOOTER.pack(position, len(skeleton), crc32c.crc32c(skeleton),
                      position + len(skeleton), len(table), crc32c.crc32c(table), MAGIC)


def save_checkpoint(state_dict: Any, url: str, *, storage_options: dict | None = None) -> int:
    """Write state_dict (any picklable structure holding tensors) to url atomically;
    returns the file size in bytes."""
    buffer = io.BytesIO()
    pickler = _SkeletonPickler(buffer)
    pickler.dump(state_dict)
    entries = _plan(pickler.tensors)
    return _io.write_atomically(url, _blocks(pickler.tensors, entries, buffer.getvalue()),
                                storage_options)


# ---- loading ---------------------------------------------------------------

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "complex"), ("builtins", "slice"), ("builtins", "range"),
    ("builtins", "bytearray"), ("torch", "Size"), ("torch", "device"),
}


class _SkeletonUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, tensors: list[torch.Tensor], weights_only: bool) -> None:
        super().__init__(file)
        self._tensors = tensors
        self._weights_only = weights_only

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "tensor"
                and 0 <= pid[1] < len(self._tensors)):
            raise CorruptCheckpoint(f"bad tensor reference {pid!r} in checkpoint")
        return self._tensors[pid[1]]

    def find_class(self, module: str, name: str):
        if not self._weights_only or (module, name) in _SAFE_GLOBALS or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed with weights_only=True; "
                                     "pass weights_only=False for a checkpoint you trust")


def _read_tensors(opened: _io.OpenFile, entries: list[_Entry],
                  map_location: str | torch.device | None) -> list[torch.Tensor]:
    """Allocate every tensor and fill it with batched reads, then check its CRC32C."""
    flats, views = [], []
    for entry in entries:
        flat = torch.empty(int(torch.Size(entry.shape).numel()), dtype=_dtype(entry.dtype))
        flats.append(flat)
        views.append(memoryview(flat.view(torch.uint8).numpy()) if entry.nbytes else
                     memoryview(b""))
        if views[-1].nbytes != entry.nbytes:
            raise CorruptCheckpoint(f"{opened.url}: tensor of {entry.dtype} {entry.shape} "
                                    f"should be {views[-1].nbytes} bytes, table says {entry.nbytes}")
    _io.read_ranges_into([(opened, entry.offset, entry.nbytes) for entry in entries if entry.nbytes],
                         [view for entry, view in zip(entries, views) if entry.nbytes])
    tensors = []
    for number, (entry, flat, view) in enumerate(zip(entries, flats, views)):
        if crc32c.crc32c(view) != entry.crc32c:
            raise CorruptCheckpoint(f"{opened.url}: tensor {number} ({entry.dtype} {entry.shape} "
                                    f"at offset {entry.offset}) CRC32C mismatch")
        tensor = flat.reshape(entry.shape)
        if map_location is not None:
            tensor = tensor.to(map_location)      # before wrapping: a Parameter stays one
        if entry.parameter:
            tensor = torch.nn.Parameter(tensor, requires_grad=entry.requires_grad)
        elif entry.requires_grad:
            tensor.requires_grad_(True)
        tensors.append(tensor)
    return tensors


def _checked(data: bytes, crc: int, what: str, url: str) -> bytes:
    if crc32c.crc32c(data) != crc:
        raise CorruptCheckpoint(f"{url}: checkpoint {what} CRC32C mismatch")
    return data


def load_checkpoint(url: str, *, storage_options: dict | None = None,
                    map_location: str | torch.device | None = None,
                    weights_only: bool = True) -> Any:
    """Read a checkpoint written by save_checkpoint (or by torch.save) from url."""
    opened = _io.open_file(url, storage_options, cached=False)
    size = opened.length
    head, foot = _io.read_ranges([(opened, 0, HEADER.size),
                                  (opened, max(0, size - FOOTER.size), FOOTER.size)])
    if head.startswith(TORCH_ZIP_MAGIC):
        with fsspec.open(url, "rb", **(storage_options or {})) as file:
            return torch.load(file, map_location=map_location, weights_only=weights_only)
    if len(head) < HEADER.size or HEADER.unpack(head)[0] != MAGIC or len(foot) < FOOTER.size:
        raise CorruptCheckpoint(f"{url}: not a FireflyFS checkpoint (nor a torch.save file)")
    magic, version, _ = HEADER.unpack(head)
    if version != VERSION:
        raise CorruptCheckpoint(f"{url}: checkpoint version {version} is not supported")
    (skeleton_offset, skeleton_length, skeleton_crc, table_offset, table_length, table_crc,
     foot_magic) = FOOTER.unpack(foot)
    if foot_magic != MAGIC or table_offset + table_length + FOOTER.size != size:
        raise CorruptCheckpoint(f"{url}: checkpoint footer damaged or file truncated")
    skeleton, table = _io.read_ranges([(opened, skeleton_offset, skeleton_length),
                                       (opened, table_offset, table_length)])
    _checked(table, table_crc, "tensor table", url)
    _checked(skeleton, skeleton_crc, "object skeleton", url)
    entries = [_Entry(**item) for item in json.loads(table)["tensors"]]
    for entry in entries:
        if entry.offset + entry.nbytes > skeleton_offset:
            raise CorruptCheckpoint(f"{url}: tensor table points past the tensor data")
    tensors = _read_tensors(opened, entries, map_location)
    return _SkeletonUnpickler(io.BytesIO(skeleton), tensors, weights_only).load()
