"""Element types HFReduce reduces, and the numpy/torch views it works on.

Everything is reduced in numpy on a flat "storage" view of the caller's
buffer: float32/float64 as themselves, float16 as float16, and bfloat16
(which numpy lacks) as its raw uint16 bits. Partial sums are accumulated in
float32 for the 16-bit types (float64 stays float64) and rounded back once,
at the root, with round-to-nearest-even as torch does; so every rank receives
the same rounded bits, and half-precision sums of many ranks lose no more
than one rounding. torch is imported only when a tensor is passed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SUPPORTED = ("float32", "float64", "float16", "bfloat16")
DTYPE_CODES = {name: index + 1 for index, name in enumerate(SUPPORTED)}


@dataclasses.dataclass(frozen=True, slots=True)
class ElementType:
    """A logical element type: its name, its storage dtype, and its accumulation dtype."""

    name: str
    storage: np.dtype
    accumulate: np.dtype

    @property
    def code(self) -> int:
        return DTYPE_CODES[self.name]


ELEMENT_TYPES = {
    "float32": ElementType("float32", np.dtype(np.float32), np.dtype(np.float32)),
    "float64": ElementType("float64", np.dtype(np.float64), np.dtype(np.float64)),
    "float16": ElementType("float16", np.dtype(np.float16), np.dtype(np.float32)),
    "bfloat16": ElementType("bfloat16", np.dtype(np.uint16), np.dtype(np.float32)),
}


def element_type_named(name: str) -> ElementType:
    try:
        return ELEMENT_TYPES[name]
    except KeyError:
        raise TypeError(f"HFReduce reduces {', '.join(SUPPORTED)}; not {name}") from None


def to_accumulate(values: np.ndarray, element_type: ElementType) -> np.ndarray:
    """Storage values widened to the accumulation dtype (a copy unless already that dtype)."""
    if element_type.name == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(element_type.accumulate, copy=False)


def add_into(total: np.ndarray, values: np.ndarray, element_type: ElementType) -> None:
    """total += values (storage dtype), in the accumulation dtype."""
    if element_type.name == "bfloat16":
        np.add(total, to_accumulate(values, element_type), out=total)
    else:
        np.add(total, values, out=total, casting="same_kind")


def round_into(out: np.ndarray, total: np.ndarray, element_type: ElementType) -> None:
    """out (storage dtype) = total rounded to nearest even as torch does; NaN stays a quiet NaN."""
    if element_type.name == "bfloat16":
        bits = total.view(np.uint32)
        rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        np.copyto(out, rounded, casting="unsafe")
        nan = np.isnan(total)
        if nan.any():
            out[nan] = 0x7FC0
    else:
        np.copyto(out, total, casting="same_kind")


def storage_view(array) -> tuple[np.ndarray, ElementType, object]:
    """(flat writable storage view, element_type, original) of a numpy array or CPU torch tensor.

    The view aliases the caller's memory, so the allreduce works in place;
    a non-contiguous or read-only input is refused rather than silently copied.
    """
    if isinstance(array, np.ndarray):
        element_type = element_type_named(array.dtype.name)
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError("allreduce needs a C-contiguous, writable array")
        return array.reshape(-1), element_type, array
    torch = _torch_if_tensor(array)
    if torch is None:
        raise TypeError(f"allreduce takes a numpy array or a torch tensor, not {type(array).__name__}")
    if array.device.type != "cpu":
        raise ValueError(f"HFReduce reduces CPU tensors; this one is on {array.device}")
    if not array.is_contiguous():
        raise ValueError("allreduce needs a contiguous tensor")
    name = str(array.dtype).removeprefix("torch.")
    element_type = element_type_named(name)
    flat = array.detach().view(-1)
    if element_type.name == "bfloat16":
        flat = flat.view(torch.int16)
    return flat.numpy().view(element_type.storage), element_type, array


def _torch_if_tensor(value):
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return torch
    return None
