"""Chunk files on disk: whole-buffer writes, kernel-side range copies, and the pool of free files.

The pool is 3FS's chunk allocator in file form: a chunk file nothing references
any more is renamed into ``pool/`` instead of unlinked, and a new chunk file
whose writer covers every byte is renamed out of it instead of created. On
this VM writing into fresh page-cache pages runs at ~0.4 GB/s and overwriting
cached pages at ~5-9 GB/s, so reuse is what makes first writes fast
(docs/chunk-engine.md, "File pool"). The pool knows nothing of chunk metadata:
the engine decides when a file is free, and a kill at any step leaves at worst
an unreferenced file that the engine's startup returns here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from fireflyfs.common.errors import Internal
from fireflyfs.common.limits import MiB

log = logging.getLogger(__name__)

copy_bytes_max = 8 * MiB          # one copy_file_range / pread+pwrite step
prefill_write_bytes = 4 * MiB     # zeros written per pwrite while prefilling


def pwrite_all(fd: int, data, offset: int) -> None:
    """pwrite every byte of data at offset (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy [offset, offset+count) of src into dst at the same offset, in the kernel when it can."""
    while count > 0:
        try:
            copied = os.copy_file_range(src, dst, min(count, copy_bytes_max), offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            copied = 0
        if copied == 0:  # unsupported or source shorter than its meta: fall back, detect below
            data = os.pread(src, min(count, copy_bytes_max), offset)
            if not data:
                raise Internal(f"chunk file shorter than its committed length at offset {offset}")
            pwrite_all(dst, data, offset)
            copied = len(data)
        offset += copied
        count -= copied


class ChunkFilePool:
    """Free chunk files in ``pool_dir``, named by a counter, at most ``files_max`` of them."""

    def __init__(self, pool_dir: Path, files_max: int) -> None:
        self.dir = pool_dir
        self.dir.mkdir(exist_ok=True)
        self.files_max = files_max
        self._prefix = f"{self.dir}{os.sep}"
        self._lock = threading.Lock()
        self._names: list[str] = []       # most recently freed last
        self._next = 0
        for entry in os.scandir(self.dir):
            if entry.name.isdigit():
                self._names.append(entry.name)
                self._next = max(self._next, int(entry.name) + 1)
            else:
                os.unlink(entry.path)
        del self._names[self.files_max:]

    def __len__(self) -> int:
        return len(self._names)

    def _new_name(self) -> str:
        with self._lock:
            name = str(self._next)
            self._next += 1
        return name

    def take(self, path: str) -> bool:
        """Move a free file to path; False when the pool is empty or its file is unusable."""
        with self._lock:
            name = self._names.pop() if self._names else None
        if name is None:
            return False
        try:
            os.rename(self._prefix + name, path)
        except OSError as exc:
            log.warning("pooled chunk file %s%s unusable: %s", self._prefix, name, exc)
            return False
        return True

    def give(self, path: str) -> None:
        """Keep the file at path for reuse (its pages stay cached), or unlink it when the pool is full."""
        with self._lock:
            keep = len(self._names) < self.files_max
        if keep:
            name = self._new_name()
            try:
                os.rename(path, self._prefix + name)
            except FileNotFoundError:
                return
            with self._lock:
                self._names.append(name)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def prefill(self, files: int, file_bytes: int, stopped: Callable[[], bool]) -> int:
        """Create zero-filled files until the pool holds ``files`` (at most files_max); returns how many."""
        files = min(files, self.files_max)
        made = 0
        zeros = memoryview(bytes(min(file_bytes, prefill_write_bytes)))
        while len(self._names) < files and not stopped():
            name = self._new_name()
            path = self._prefix + name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for offset in range(0, file_bytes, len(zeros)):
                    pwrite_all(fd, zeros[:min(len(zeros), file_bytes - offset)], offset)
            finally:
                os.close(fd)
            with self._lock:
                self._names.append(name)
            made += 1
        return made
