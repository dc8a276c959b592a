"""LMDB environments whose map grows when full, and a full map or disk reported as NoSpace.

An LMDB map size is the most the database may ever hold: a write past it fails
with ``MapFullError``. The map is address space, not disk (data.mdb grows only
as pages are used), so starting big costs little, but no fixed size suits
every store. ``GrowingEnv`` doubles the map when a write finds it full, up to
a configured max, and only there answers NoSpace.

What LMDB requires of ``set_mapsize`` (mdb_env_set_mapsize, lmdb.h): after the
environment is open it "may be called at later times if no transactions are
active in this process. Note that the library does not check for this
condition, the caller must ensure it explicitly." It unmaps the file and maps
it again, possibly at another address, so a transaction of any thread of this
process, a reader as much as the writer, would go on reading unmapped memory.
Hence the gate: every transaction begun here holds a shared slot for its
lifetime; a grow takes the gate exclusively (new transactions wait, running
ones finish), and a thread that holds a slot itself never grows (it would wait
for itself), it reports the map full instead. Growing only increases the size,
which LMDB persists at the next write commit; no other process opens our
environments (storage and meta own theirs), so none needs to adopt the size.

Writes go through ``writer``, a GroupCommitEnv (common/lmdb_commit.py): with
``sync`` on, each write is durable before it returns and concurrent writes
share one fdatasync. Its top-level transaction holds a gate slot from begin to
commit; the child transactions of the writers who join it need none (the
slot of their parent already keeps a grow away).

``no_space_error`` is the one test of "the disk or the map is full":
``lmdb.MapFullError``, ``lmdb.DiskError`` (ENOSPC inside LMDB), any LMDB or OS
error with errno ENOSPC or EDQUOT. FfsError subclasses OSError, so a NoSpace
raised below passes through unchanged and other FfsErrors never match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import threading
from typing import Callable, Iterator, TypeVar

import lmdb

from .errors import FfsError, NoSpace, Unavailable
from .lmdb_commit import GroupCommitEnv

log = logging.getLogger(__name__)

grow_wait_s_default = 5.0     # longest a grow waits for running transactions before giving up
_GROWS_PER_WRITE_MAX = 16     # doublings one write may ask for (2**16 times its first map)
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

T = TypeVar("T")


def no_space_error(exc: BaseException, where: str) -> NoSpace | None:
    """NoSpace naming where and what to do when exc means a full map or disk; None otherwise."""
    if isinstance(exc, NoSpace):
        return exc
    if isinstance(exc, FfsError):
        return None
    if isinstance(exc, lmdb.MapFullError):
        return NoSpace(f"{where}: LMDB map full ({exc}); raise its map size max and restart")
    code = exc.errno if isinstance(exc, OSError) else getattr(exc, "code", None)
    if isinstance(exc, lmdb.DiskError) or code in _NO_SPACE_ERRNOS:
        return NoSpace(f"{where}: no space left on the file system ({exc}); free space there "
                       f"(delete files) or give it more room")
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class MapUsage:
    used_bytes: int          # pages up to the highest one ever used (free pages inside are reused)
    map_bytes: int           # the current map size
    map_bytes_max: int       # what it may grow to


class _Gate:
    """Shared slots for transactions, an exclusive turn for set_mapsize; re-entrant per thread.

    The shared path is one plain lock round trip each way (it runs for every
    chunk-meta lookup); waiting happens on events, only while a grow is on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._growing = False
        self._drained = threading.Event()      # set by the last slot to leave during a grow
        self._open = threading.Event()         # cleared while a grow holds new slots off
        self._open.set()
        self._turn = threading.Lock()          # one grow at a time
        self._held = threading.local()

    def enter(self) -> None:
        held = self._held
        depth = getattr(held, "depth", 0)
        if depth == 0:
            while True:
                with self._lock:
                    if not self._growing:
                        self._active += 1
                        break
                self._open.wait()
        held.depth = depth + 1

    def leave(self) -> None:
        held = self._held
        held.depth -= 1
        if held.depth == 0:
            with self._lock:
                self._active -= 1
                if self._growing and self._active == 0:
                    self._drained.set()

    def holding(self) -> bool:
        return getattr(self._held, "depth", 0) > 0

    def exclusive(self, action: Callable[[], None], timeout_s: float) -> bool:
        """Run action with no transaction active; False when that did not happen within timeout_s."""
        if self.holding():
            return False
        with self._turn:                       # another thread growing: wait for its turn to end
            with self._lock:
                self._growing = True
                self._open.clear()
                self._drained.clear()
                drained = self._active == 0
            try:
                if not drained and not self._drained.wait(timeout_s):
                    return False
                action()
                return True
            finally:
                with self._lock:
                    self._growing = False
                    self._open.set()


class _GatedTxn:
    """``with env.begin(...) as txn``: the transaction, holding a gate slot from begin to end."""

    __slots__ = ("_gate", "_env", "_kwargs", "_txn")

    def __init__(self, gate: _Gate, env: lmdb.Environment, kwargs: dict) -> None:
        self._gate, self._env, self._kwargs, self._txn = gate, env, kwargs, None

    def __enter__(self) -> lmdb.Transaction:
        self._gate.enter()
        try:
            self._txn = self._env.begin(**self._kwargs)
            return self._txn.__enter__()
        except BaseException:
            self._gate.leave()
            raise

    def __exit__(self, *exc_info):
        try:
            return self._txn.__exit__(*exc_info)
        finally:
            self._txn = None
            self._gate.leave()


class GrowingEnv:
    """An LMDB environment whose map doubles when full, up to map_bytes_max (see the module docstring).

    ``begin`` is lmdb's, gated. ``write(fn)`` runs fn(txn) in a write
    transaction and, when the map is full, grows it and runs fn again.
    Callers that cannot re-run their transaction (a ``with`` block) call
    ``grow_after_full`` once it is aborted and tell their caller to retry.
    """

    def __init__(self, path: str, *, map_bytes: int, map_bytes_max: int, what: str,
                 grow_wait_s: float = grow_wait_s_default, **lmdb_options) -> None:
        if not 0 < map_bytes <= map_bytes_max:
            raise ValueError(f"{what}: map size {map_bytes} must be positive and at most its max "
                             f"{map_bytes_max}")
        self.path = path
        self.what = what
        self.map_bytes_max = map_bytes_max
        self.grow_wait_s = grow_wait_s
        self.grows = 0
        self._env = lmdb.open(path, map_size=map_bytes, **lmdb_options)
        self._gate = _Gate()
        self.writer = GroupCommitEnv(self._env, durable=lmdb_options.get("sync", True), name=f"{what} {path}",
                                     hold=self._slot)
        # An existing store may already be larger than asked (grown in an earlier run).
        self.map_bytes = self._env.info()["map_size"]

    # ---- what lmdb.Environment offers, through the gate where it touches the map ----------

    def begin(self, **kwargs) -> _GatedTxn:
        return _GatedTxn(self._gate, self._env, kwargs)

    def open_db(self, name: bytes, **kwargs):
        """lmdb's open_db; creating a named DB writes a page, so a full map grows here too."""
        for _ in range(_GROWS_PER_WRITE_MAX):
            seen = self.map_bytes
            try:
                return self._env.open_db(name, **kwargs)
            except lmdb.MapFullError as exc:
                if not self.grow_after_full(seen):
                    raise self.full_error(exc) from exc
        raise NoSpace(f"{self.what} {self.path}: DB {name!r} still did not fit after "
                      f"{_GROWS_PER_WRITE_MAX} map growths")

    def flags(self) -> dict:
        return self._env.flags()

    def info(self) -> dict:
        return self._env.info()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        self._gate.enter()
        try:
            yield
        finally:
            self._gate.leave()

    def close(self) -> None:
        self.writer.close()
        self._env.close()

    def usage(self) -> MapUsage:
        self._gate.enter()
        try:
            info = self._env.info()
            page_bytes = self._env.stat()["psize"]
        finally:
            self._gate.leave()
        return MapUsage((info["last_pgno"] + 1) * page_bytes, info["map_size"], self.map_bytes_max)

    # ---- growth ------------------------------------------------------------------------------

    def grow_after_full(self, map_bytes_seen: int) -> bool:
        """Double the map a write found full at map_bytes_seen; True when a retry may fit.

        True also when another thread grew it meanwhile; False at the max.
        Unavailable (retryable) when running transactions did not finish
        within grow_wait_s, or this thread holds one itself.
        """
        if self.map_bytes != map_bytes_seen:
            return True
        if map_bytes_seen >= self.map_bytes_max:
            return False
        new_bytes = min(map_bytes_seen * 2, self.map_bytes_max)

        def resize() -> None:
            if self.map_bytes == map_bytes_seen:
                self._env.set_mapsize(new_bytes)
                self.map_bytes = self._env.info()["map_size"]
                self.grows += 1

        if not self._gate.exclusive(resize, self.grow_wait_s):
            log.warning("%s %s: map full at %d bytes and could not grow now (transactions still "
                        "running after %.1fs)", self.what, self.path, map_bytes_seen, self.grow_wait_s)
            raise Unavailable(f"{self.what} {self.path}: map full at {map_bytes_seen} bytes; it grows "
                              f"once running transactions end, retry")
        log.info("%s %s: map grew from %d to %d bytes (max %d)", self.what, self.path,
                 map_bytes_seen, self.map_bytes, self.map_bytes_max)
        return True

    def full_error(self, exc: BaseException) -> NoSpace:
        return NoSpace(f"{self.what} {self.path} is full: its LMDB map is at its max of "
                       f"{self.map_bytes_max} bytes; raise the map size max and restart "
                       f"({type(exc).__name__}: {exc})")

    def write(self, fn: Callable[[lmdb.Transaction], T], where: str = "") -> T:
        """fn(txn) in one write transaction, committed (durably when synced: ``writer``); re-run
        after growing when the map was full.

        fn must be safe to run again (it is, when it only reads and writes the
        transaction: a failed one is aborted whole). A full disk, or the map
        full at its max, raises NoSpace naming the store and what to do.
        """
        for _ in range(_GROWS_PER_WRITE_MAX):
            seen = self.map_bytes
            try:
                with self.writer.write() as txn:
                    return fn(txn)
            except lmdb.MapFullError as exc:
                if not self.grow_after_full(seen):
                    raise self.full_error(exc) from exc
            except lmdb.Error as exc:
                error = no_space_error(exc, f"{where or self.what} {self.path}")
                if error is None:
                    raise
                raise error from exc
        raise NoSpace(f"{self.what} {self.path}: a write still did not fit after "
                      f"{_GROWS_PER_WRITE_MAX} map growths")
