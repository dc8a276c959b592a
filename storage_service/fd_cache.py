"""Read descriptors of chunk files, kept open across reads.

A random 4 KiB read costs a few microseconds; an open/close pair per read
would cost as much again. The chunk engine is the only one that unlinks or
recreates chunk files and calls ``forget`` before it does, which is what makes
sharing a cached descriptor safe (FdCache's docstring says how).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading


@dataclasses.dataclass(slots=True)
class CachedFd:
    path: str
    fd: int
    users: int = 0
    retired: bool = False


class FdCache:
    """Read-only descriptors of recently read chunk files, reused across reads (saves open/close).

    The engine is the only one that unlinks or recreates chunk files, and it
    calls ``forget`` first: a forgotten descriptor closes when its last reader
    releases it, and the next reader opens the path anew. So a cached
    descriptor never outlives its file name's meaning; readers that hold one
    read the file their meta named (unlinked files stay readable), exactly as
    with a private open().
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, CachedFd] = collections.OrderedDict()
        self._generation = 0      # bumped by every forget: an open racing it is not cached

    def acquire(self, path: str) -> CachedFd:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                entry.users += 1
                self._entries.move_to_end(path)
                return entry
            generation = self._generation
        fd = os.open(path, os.O_RDONLY)
        fresh = CachedFd(path, fd, 1)
        with self._lock:
            if self._generation != generation:
                # A file was unlinked or recreated while we opened: ours may name the old one.
                fresh.retired = True
                return fresh
            entry = self._entries.get(path)
            if entry is not None:        # another reader opened it meanwhile: use theirs
                entry.users += 1
                stale = fresh
            else:
                self._entries[path] = entry = fresh
                stale = None
            evicted = []
            while len(self._entries) > self._capacity:
                _, old = self._entries.popitem(last=False)
                old.retired = True
                if old.users == 0:
                    evicted.append(old.fd)
        if stale is not None:
            os.close(stale.fd)
        for old_fd in evicted:
            os.close(old_fd)
        return entry

    def release(self, entry: CachedFd) -> None:
        with self._lock:
            entry.users -= 1
            close = entry.retired and entry.users == 0
        if close:
            os.close(entry.fd)

    def forget(self, path: str) -> None:
        with self._lock:
            self._generation += 1
            entry = self._entries.pop(path, None)
            if entry is None:
                return
            entry.retired = True
            close = entry.users == 0
        if close:
            os.close(entry.fd)

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), collections.OrderedDict()
            for entry in entries:
                entry.retired = True
        for entry in entries:
            if entry.users == 0:
                os.close(entry.fd)


