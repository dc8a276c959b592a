"""The host's shared buffer: one region per local rank, region 0 also holding the result.

A plain file in /dev/shm mapped by every local rank, rather than
multiprocessing.shared_memory: the leader unlinks the file as soon as every
member has mapped it, so nothing is left behind in /dev/shm whatever happens
to the processes afterwards, and Python's resource tracker (which would
unlink a segment when the first attaching process exits) stays out of it.
"""

from __future__ import annotations

import mmap
import os
import pathlib
import tempfile
import uuid

import numpy as np


def _directory() -> pathlib.Path:
    shm = pathlib.Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else pathlib.Path(tempfile.gettempdir())


class SharedBuffer:
    """A mapped file of size bytes; create() makes a new one, attach() maps an existing one."""

    def __init__(self, path: pathlib.Path, size: int, mapping: mmap.mmap) -> None:
        self.path = path
        self.size = size
        self._map = mapping
        self.linked = True

    @classmethod
    def create(cls, size: int) -> "SharedBuffer":
        path = _directory() / f"ffs-hfreduce-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(path, size, mapping)

    @classmethod
    def attach(cls, path: str, size: int) -> "SharedBuffer":
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        buffer = cls(pathlib.Path(path), size, mapping)
        buffer.linked = False      # the leader owns the name
        return buffer

    def region(self, index: int, dtype: np.dtype, count: int) -> np.ndarray:
        nbytes = count * dtype.itemsize
        if (index + 1) * nbytes > self.size:
            raise ValueError(f"region {index} of {nbytes} bytes beyond a {self.size}-byte buffer")
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=index * nbytes)

    def unlink(self) -> None:
        if self.linked:
            self.linked = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self.unlink()
        try:
            self._map.close()
        except BufferError:
            pass   # a view is still alive somewhere; the mapping goes with it
