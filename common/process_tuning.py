"""Process-wide settings shared by the services, the launcher and the benchmarks.

Large byte buffers (4 MiB gRPC messages, bulk receive buffers) that glibc
serves from fresh mmaps page-fault on every 4 KiB when first touched (~1,000
faults per 4 MiB, first-touched in the hypervisor on these VMs:
machine-limits.md), which cut a 4 MiB reply from ~2.2 to ~0.75 GB/s. Raising
glibc's mmap and trim thresholds keeps such buffers on the heap, whose pages
stay warm. ``MALLOC_ENV`` sets it for child processes through the
environment; ``keep_large_buffers_on_heap`` sets it in a running process.

Descriptors: every bulk connection, cached chunk-file descriptor and LMDB
environment holds one, and many systems start a process with a soft
RLIMIT_NOFILE of 1024 under a far higher hard limit (systemd: 524288), so a
busy node would fail ``accept`` with EMFILE at a fraction of what it may
open. ``raise_open_files_limit`` lifts the soft limit to the hard one; each
service calls it once at start.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource

from . import limits

log = logging.getLogger(__name__)

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


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (logged); the soft limit now in force.

    An unlimited hard limit is capped at the kernel's fs.nr_open, the most
    setrlimit accepts; if raising fails the old limit stays and is logged.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else _kernel_open_files_max(soft)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays at %d (raising it to %d failed: %s)", soft, wanted, exc)
            return soft
        log.info("open files limit raised from %d to %d", soft, wanted)
        return wanted
    log.info("open files limit is %d (the hard limit)", soft)
    return soft


def _kernel_open_files_max(default: int) -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return default
