"""Keeping write sessions alive: one renewer thread per process renews every client's lease.

The metadata service ends the write sessions of a client that stops renewing
(meta_service/leases.py): a crashed writer then no longer pins its files'
lengths and blocks GC forever. A live client renews with one
``Meta.RenewSessions`` per client id, every third of the lease the service
announced when the session opened (``OpenReply.session_lease_ms``), or every
``ClientConfig.session_renew_interval_s`` when that is set and shorter.

``SessionLeases`` records which sessions one client id holds; the
process-wide ``Renewer`` thread starts with the first write session and
renews each registered client whose turn came. Sessions the service reports
gone (their lease lapsed, e.g. after a long pause) are remembered, so the
Close of such a handle can say why it failed.

Fork safety: a forked child (a DataLoader worker) has no renewer thread and
must not renew its parent's sessions, which stay the parent's to keep: the
child's FfsClient builds fresh connections with a client id of its own
(client.py), and after a fork the registry starts empty, so the child's
renewer, started by its own first write session, renews only those.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Callable

from fireflyfs.common import limits
from fireflyfs.common.errors import FfsError

log = logging.getLogger(__name__)

RENEWS_PER_LEASE = 3                 # renew every third of the lease: two renewals may fail in a row
RENEW_RETRY_S = 1.0                  # after a failed renewal, try again this soon (if the lease allows)
RENEW_INTERVAL_S_MIN = 0.02


class SessionLeases:
    """The write sessions one client id holds, and when their lease is next renewed."""

    def __init__(self, meta, client_id: str, renew_interval_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 register: Callable[["SessionLeases"], None] | None = None) -> None:
        """renew_interval_s: 0 renews every third of the service's lease; else at most this long apart.
        register: how a first session joins a renewer (default: this process's renewer thread)."""
        self.meta = meta
        self.client_id = client_id
        self.renew_interval_s_max = renew_interval_s
        self.clock = clock
        self._register = register or (lambda leases: renewer().register(leases))
        self._sessions: set[tuple[int, int]] = set()
        self._lost: set[tuple[int, int]] = set()
        self._interval_s = renew_interval_s or 20.0
        self._due_at = 0.0
        self._lock = threading.Lock()

    def opened(self, inode_id: int, session_id: int, lease_ms: int) -> None:
        """A write session was opened; the renewer keeps it (and starts, if it is the first)."""
        with self._lock:
            if lease_ms:
                interval_s = max(RENEW_INTERVAL_S_MIN, lease_ms / 1000 / RENEWS_PER_LEASE)
                if self.renew_interval_s_max:
                    interval_s = min(interval_s, self.renew_interval_s_max)
                self._interval_s = min(self._interval_s, interval_s) if self._sessions else interval_s
            if not self._sessions:
                self._due_at = self.clock() + self._interval_s
            self._sessions.add((inode_id, session_id))
        self._register(self)

    def closed(self, inode_id: int, session_id: int) -> None:
        with self._lock:
            self._sessions.discard((inode_id, session_id))
            self._lost.discard((inode_id, session_id))

    def lost(self, inode_id: int, session_id: int) -> bool:
        """True when the service said this session no longer exists (its lease lapsed)."""
        with self._lock:
            return (inode_id, session_id) in self._lost

    def held(self) -> list[tuple[int, int]]:
        with self._lock:
            return sorted(self._sessions)

    def due_at(self) -> float | None:
        """When the next renewal is due (clock time); None with no session to keep."""
        with self._lock:
            return self._due_at if self._sessions else None

    def renew(self) -> None:
        """One renewal of every held session (in pieces of at most renew_sessions_refs_max)."""
        sessions = self.held()
        if not sessions:
            return
        try:
            for start in range(0, len(sessions), limits.renew_sessions_refs_max):
                reply = self.meta.renew_sessions(self.client_id,
                                                 sessions[start:start + limits.renew_sessions_refs_max],
                                                 timeout_s=self._interval_s)
                gone = {(ref.inode_id, ref.session_id) for ref in reply.gone}
                if gone:
                    log.warning("client %s: %d write sessions ended by the metadata service (lease lapsed): "
                                "%s", self.client_id, len(gone), sorted(gone))
                with self._lock:
                    self._sessions -= gone
                    self._lost |= gone
        except FfsError as exc:
            log.warning("client %s: renewing %d write sessions failed, retrying: %s", self.client_id,
                        len(sessions), exc)
            with self._lock:
                self._due_at = self.clock() + min(RENEW_RETRY_S, self._interval_s)
            return
        with self._lock:
            self._due_at = self.clock() + self._interval_s


class Renewer:
    """The process's one renewer thread: renews each registered SessionLeases when it is due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pid = os.getpid()
        self._clients: weakref.WeakSet[SessionLeases] = weakref.WeakSet()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def register(self, leases: SessionLeases) -> None:
        with self._wake:
            self._clients.add(leases)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ffs-session-renewer", daemon=True)
                self._thread.start()
            self._wake.notify()

    def run_due(self) -> float | None:
        """Renew every client whose turn came; when the next one is due (None: nothing held)."""
        with self._wake:
            clients = list(self._clients)
        for leases in clients:
            due_at = leases.due_at()
            if due_at is not None and due_at <= self.clock():
                leases.renew()
        due = [at for at in (leases.due_at() for leases in clients) if at is not None]
        return min(due) if due else None

    def _loop(self) -> None:
        while True:
            try:
                next_at = self.run_due()
            except Exception:  # never let the renewer die: a dead renewer loses every session
                log.exception("session renewer pass failed")
                next_at = self.clock() + RENEW_RETRY_S
            with self._wake:
                self._wake.wait(None if next_at is None else max(0.0, next_at - self.clock()))


_renewer: Renewer | None = None
_renewer_lock = threading.Lock()


def renewer() -> Renewer:
    """This process's renewer (a forked child gets a fresh one: the parent's thread is not in it)."""
    global _renewer
    with _renewer_lock:
        if _renewer is None or _renewer.pid != os.getpid():
            _renewer = Renewer()
        return _renewer


def _after_fork_in_child() -> None:
    global _renewer, _renewer_lock
    _renewer = None
    _renewer_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
