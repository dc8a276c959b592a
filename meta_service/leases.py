"""Write-session leases: a client keeps its write sessions only while it renews.

A client that dies holding write sessions would otherwise block its files
forever: the stored length stays a hint and GC skips an unlinked file with
sessions (gc.py). As 3FS prunes the file sessions of clients whose mgmtd
session lapsed (and CephFS evicts clients that stop renewing), a lease here
belongs to a client id, not to one session: the client renews every session it
holds with one ``Meta.RenewSessions`` call at least every third of the lease,
and when its lease runs out ``SessionReaper`` ends each of its sessions exactly
as that client's ``Close`` would (files.py: the last writer settles the length
from storage), so GC can go on.

Why leases live in memory, not in LMDB: a renewal then costs no commit (with
durable commits, one fsync per client every few seconds for nothing worth
keeping). Sessions themselves are stored; after a meta restart every client
holding one gets a full lease from the start (``grant_all``), the grace a
live client needs to renew against the new process.

Time is the table's injected monotonic clock: a wall-clock step cannot expire
every client at once, and tests drive expiry with a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from fireflyfs.common.periodic import Periodic
from fireflyfs.common.errors import FfsError
from fireflyfs.proto import meta_pb2

from .store import Store, session_key

log = logging.getLogger(__name__)

SESSION_LEASE_MS_DEFAULT = 60_000        # as 3FS's mgmtd lease; clients renew every third of it
SESSION_LEASE_MS_MIN = 100
REAP_SESSIONS_PER_PASS_MAX = 1024        # sessions ended per reaper pass (each may ask storage)
REAP_RETRY_BACKOFF_MS_MAX = 30_000


class LeaseTable:
    """client id -> when its lease ends, on an injected monotonic clock (ns)."""

    def __init__(self, lease_ms: int = SESSION_LEASE_MS_DEFAULT,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if lease_ms < SESSION_LEASE_MS_MIN:
            raise ValueError(f"a session lease of {lease_ms} ms is below {SESSION_LEASE_MS_MIN} ms")
        self.lease_ms = lease_ms
        self.clock_ns = clock_ns
        self._ends_ns: dict[str, int] = {}
        self._lock = threading.Lock()

    def holders(self) -> int:
        """Clients with a lease (live or not yet reaped). Not __len__: an empty table must stay truthy."""
        return len(self._ends_ns)

    def renew(self, client_id: str) -> None:
        """client_id holds (or is about to hold) sessions: its lease runs a full term from now."""
        ends_ns = self.clock_ns() + self.lease_ms * 1_000_000
        with self._lock:
            self._ends_ns[client_id] = ends_ns

    def grant_all(self, client_ids: Iterable[str]) -> None:
        """At start: every client holding a stored session gets a full term to renew in."""
        for client_id in client_ids:
            self.renew(client_id)

    def expired(self) -> list[str]:
        """Clients whose lease ran out, in expiry order."""
        now_ns = self.clock_ns()
        with self._lock:
            return [client for client, ends_ns in sorted(self._ends_ns.items(), key=lambda item: item[1])
                    if ends_ns <= now_ns]

    def is_expired(self, client_id: str) -> bool:
        """True when client_id's lease ran out (a client never granted one holds nothing to keep)."""
        with self._lock:
            ends_ns = self._ends_ns.get(client_id)
        return ends_ns is None or ends_ns <= self.clock_ns()

    def forget_if_expired(self, client_id: str) -> bool:
        """Drop an expired client whose sessions all ended; False if it renewed meanwhile."""
        with self._lock:
            ends_ns = self._ends_ns.get(client_id)
            if ends_ns is not None and ends_ns > self.clock_ns():
                return False
            self._ends_ns.pop(client_id, None)
            return True

    def clients(self) -> list[str]:
        with self._lock:
            return list(self._ends_ns)


def session_holders(store: Store, excluded: Iterable[str] = ()) -> set[str]:
    """Client ids holding a stored write session (the meta process's own ids excluded)."""
    skip = set(excluded)
    holders = set()
    with store.read() as txn:
        for _key, value in txn.scan("sessions"):
            session = meta_pb2.FileSession()
            session.ParseFromString(value)
            if session.client_id not in skip:
                holders.add(session.client_id)
    return holders


class SessionReaper:
    """Ends the write sessions of clients whose lease expired, each as its holder's Close would.

    end_session(inode_id, session_id, client_id) is Namespace.close on behalf of
    the holder. A session whose end fails (storage unreachable, so its length
    cannot settle) stays and is retried with backoff; the others go on. A
    client leaves the table once none of its sessions remain.
    """

    def __init__(self, store: Store, leases: LeaseTable, end_session: Callable[[int, int, str], object],
                 interval_ms: int | None = None, excluded: Iterable[str] = (),
                 active: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.active = active
        self.leases = leases
        self.end_session = end_session
        self.interval_ms = interval_ms if interval_ms is not None else max(50, leases.lease_ms // 4)
        self.excluded = frozenset(excluded)
        self._retry_at_ns: dict[tuple[int, int], tuple[int, int]] = {}   # (inode, session) -> (when, backoff ms)
        self._periodic = Periodic("meta-session-reaper", lambda: self.interval_ms / 1000, self.run_once, log)

    def _due_sessions(self, clients: set[str], now_ns: int) -> tuple[list[meta_pb2.FileSession], set[str]]:
        """Up to REAP_SESSIONS_PER_PASS_MAX sessions of clients not waiting out a backoff (so
        sessions that keep failing never crowd out the rest); and the clients holding any."""
        due, holding, seen = [], set(), set()
        with self.store.read() as txn:
            for _key, value in txn.scan("sessions"):
                session = meta_pb2.FileSession()
                session.ParseFromString(value)
                if session.client_id not in clients:
                    continue
                holding.add(session.client_id)
                where = (session.inode_id, session.session_id)
                seen.add(where)
                if len(due) < REAP_SESSIONS_PER_PASS_MAX and now_ns >= self._retry_at_ns.get(where, (0, 0))[0]:
                    due.append(session)
        self._retry_at_ns = {where: retry for where, retry in self._retry_at_ns.items() if where in seen}
        return due, holding

    def run_once(self) -> int:
        """One pass; returns how many sessions it ended."""
        if not self.active():
            return 0
        expired = {client for client in self.leases.expired() if client not in self.excluded}
        if not expired:
            return 0
        sessions, holding = self._due_sessions(expired, self.leases.clock_ns())
        for client in expired - holding:
            self.leases.forget_if_expired(client)
        ended = 0
        for session in sessions:
            if not self.leases.is_expired(session.client_id):
                continue   # it renewed since the pass began
            where = (session.inode_id, session.session_id)
            try:
                self.end_session(session.inode_id, session.session_id, session.client_id)
            except FfsError as exc:
                if self._gone(session):
                    self._retry_at_ns.pop(where, None)
                    continue   # closed by its holder meanwhile
                backoff_ms = min(max(2 * self._retry_at_ns.get(where, (0, 0))[1], self.interval_ms),
                                 REAP_RETRY_BACKOFF_MS_MAX)
                self._retry_at_ns[where] = (self.leases.clock_ns() + backoff_ms * 1_000_000, backoff_ms)
                log.warning("session %d on inode %d of client %s: lease expired, but ending it failed "
                            "(retry in %d ms): %s", session.session_id, session.inode_id, session.client_id,
                            backoff_ms, exc)
                continue
            self._retry_at_ns.pop(where, None)
            ended += 1
            log.info("session %d on inode %d ended: client %s did not renew its lease within %d ms",
                     session.session_id, session.inode_id, session.client_id, self.leases.lease_ms)
        return ended

    def _gone(self, session: meta_pb2.FileSession) -> bool:
        with self.store.read() as txn:
            return txn.get_msg("sessions", session_key(session.inode_id, session.session_id),
                               meta_pb2.FileSession) is None

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
