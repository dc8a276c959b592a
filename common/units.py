"""Human byte sizes on command lines: '4KiB', '256MiB', '1GiB', '4k', '4096' (and '5%' where a share will do)."""

from __future__ import annotations

import re

_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
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


def parse_size_or_percent(text: str) -> tuple[int | None, float | None]:
    """(bytes, None) for a size, (None, fraction) for a percentage such as '5%' or '2.5%'; else ValueError."""
    match = _PERCENT.fullmatch(str(text))
    if match is None:
        return parse_size(text), None
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"bad percentage {text!r} (0% to 100%)")
    return None, percent / 100
