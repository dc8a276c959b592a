"""The batch read API's values: requests in, one caller-owned buffer, per-request results.

``FfsClient.read_batch(requests, into)`` (USRBIO in spirit: many (file,
offset, length) reads land in one registered buffer) packs request i's bytes
at byte offset ``sum(lengths[:i])`` of the buffer. This module turns whatever
the caller passes as ``into`` (bytearray, memoryview, numpy array, torch CPU
tensor) into one writable flat byte view without copying, and holds what a
batch answers: bytes read and an error per request.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Sequence

from fireflyfs.common.errors import FfsError, InvalidArgument


def byte_view(into: Any, size: int) -> memoryview:
    """A writable, flat, unsigned-byte view of into (no copy); None allocates size zero bytes.

    Raises InvalidArgument for a read-only, non-contiguous, non-CPU or too small buffer.
    """
    if into is None:
        return memoryview(bytearray(size))
    module = type(into).__module__
    if module.startswith("torch"):
        view = _torch_view(into)
    else:
        try:
            view = memoryview(into)
        except TypeError as exc:
            raise InvalidArgument(f"read_batch buffer of type {type(into).__name__} does not "
                                  "support the buffer protocol") from exc
        if view.readonly:
            raise InvalidArgument(f"read_batch buffer ({type(into).__name__}) is read-only")
        if not view.c_contiguous:
            raise InvalidArgument(f"read_batch buffer ({type(into).__name__}) is not C-contiguous")
        if view.format != "B" or view.ndim != 1:
            try:
                view = view.cast("B")
            except TypeError:
                view = _numpy_bytes(into)
    if view.nbytes < size:
        raise InvalidArgument(f"read_batch buffer holds {view.nbytes} bytes; the requests need {size}")
    return view


def _torch_view(tensor: Any) -> memoryview:
    if tensor.device.type != "cpu":
        raise InvalidArgument(f"read_batch buffer is a tensor on {tensor.device}, not on the CPU")
    if not tensor.is_contiguous():
        raise InvalidArgument("read_batch buffer tensor is not contiguous")
    import torch

    flat = tensor.detach().reshape(-1)
    if flat.dtype != torch.uint8:
        flat = flat.view(torch.uint8)
    return memoryview(flat.numpy())


def _numpy_bytes(array: Any) -> memoryview:
    try:
        import numpy
    except ImportError as exc:   # pragma: no cover - numpy is a dependency of the extras only
        raise InvalidArgument(f"read_batch cannot use a buffer of format "
                              f"{memoryview(array).format!r}") from exc
    if not isinstance(array, numpy.ndarray):
        raise InvalidArgument(f"read_batch cannot use a buffer of format {memoryview(array).format!r}")
    return memoryview(array.reshape(-1).view(numpy.uint8))


@dataclasses.dataclass(slots=True)
class BatchReadResult:
    """What ``read_batch`` answers.

    buffer: the whole buffer as bytes; offsets[i]: where request i's bytes
    start; nbytes[i]: bytes read (short at EOF, zeros for holes inside the
    file, 0 on error); errors[i]: None or the FfsError of request i. Bytes of
    request i's slot past nbytes[i] are left as they were.
    """

    buffer: memoryview
    offsets: list[int]
    nbytes: list[int]
    errors: list[FfsError | None]

    def view(self, index: int) -> memoryview:
        """Request index's bytes (length nbytes[index]) inside the buffer."""
        start = self.offsets[index]
        return self.buffer[start:start + self.nbytes[index]]

    def __len__(self) -> int:
        return len(self.nbytes)

    @property
    def ok(self) -> bool:
        return all(error is None for error in self.errors)

    def raise_first(self) -> None:
        """Raise the first request's error, if any."""
        for error in self.errors:
            if error is not None:
                raise error


def check_requests(requests: Sequence[tuple[Any, int, int]]
                   ) -> tuple[list[Any], list[int], list[int], list[int], int]:
    """(files, offsets, lengths, buffer offsets, total bytes); InvalidArgument for a bad request."""
    files, offsets, lengths, slots, total = [], [], [], [], 0
    for number, request in enumerate(requests):
        try:
            file, offset, length = request
            offset, length = operator.index(offset), operator.index(length)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"read_batch request {number} is not (path or handle, offset, "
                                  f"length) with integer offset and length: {request!r}") from exc
        if offset < 0 or length < 0:
            raise InvalidArgument(f"read_batch request {number}: negative offset or length "
                                  f"({offset}, {length})")
        files.append(file)
        offsets.append(offset)
        lengths.append(length)
        slots.append(total)
        total += length
    return files, offsets, lengths, slots, total
