"""Human byte sizes on command lines: '4KiB', '256MiB', '1GiB', '4k', '4096'."""

from __future__ import annotations

import re

_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)(i?B?)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in text (binary units; 'k' and 'KiB' both mean 1024); ValueError when it is not a size."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ValueError(f"bad size {text!r} (e.g. 1GiB, 256MiB, 4KiB, 4096)")
    return int(match.group(1)) * _FACTORS[match.group(2).upper()]


def parse_positive_size(text: str) -> int:
    """parse_size for arguments that must be above zero (argparse turns the ValueError into a usage error)."""
    value = parse_size(text)
    if value <= 0:
        raise ValueError(f"size must be positive, not {text!r}")
    return value
