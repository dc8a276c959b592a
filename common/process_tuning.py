"""Process-wide settings shared by the services, the launcher and the benchmarks.

Large byte buffers (4 MiB gRPC messages, bulk receive buffers) that glibc
serves from fresh mmaps page-fault on every 4 KiB when first touched (~1,000
faults per 4 MiB, first-touched in the hypervisor on these VMs:
machine-limits.md), which cut a 4 MiB reply from ~2.2 to ~0.75 GB/s. Raising
glibc's mmap and trim thresholds keeps such buffers on the heap, whose pages
stay warm. ``MALLOC_ENV`` sets it for child processes through the
environment; ``keep_large_buffers_on_heap`` sets it in a running process.
"""

from __future__ import annotations

import ctypes
import os

from . import limits

MMAP_THRESHOLD_BYTES = 64 * limits.MiB
TRIM_THRESHOLD_BYTES = 256 * limits.MiB

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
}

_M_TRIM_THRESHOLD = -1   # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3


def keep_large_buffers_on_heap() -> bool:
    """Apply the thresholds to this process (glibc only); an explicit environment setting wins.

    Returns whether they are in force.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
