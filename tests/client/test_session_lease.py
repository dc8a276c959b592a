"""The client's lease renewer: what it sends, when, and that a forked child renews only its own.

Method: SessionLeases and Renewer over a fake Meta client and a fake clock
(no threads started except where the fork test needs the real module state).
"""

from __future__ import annotations

import os

from fireflyfs.client import session_lease
from fireflyfs.client.session_lease import Renewer, SessionLeases
from fireflyfs.common.errors import Unavailable
from fireflyfs.proto import meta_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeMeta:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[tuple[int, int]]]] = []
        self.gone: set[tuple[int, int]] = set()
        self.down = False

    def renew_sessions(self, client_id, sessions, timeout_s=None):
        assert timeout_s and timeout_s < 60, "a renewal never waits longer than its interval"
        if self.down:
            raise Unavailable("meta restarting")
        self.sent.append((client_id, list(sessions)))
        return meta_pb2.RenewSessionsReply(
            gone=[meta_pb2.SessionRef(inode_id=i, session_id=s) for i, s in sessions if (i, s) in self.gone],
            lease_ms=3000)


def leases_on(meta, clock, renew_interval_s=0.0):
    """Leases the test renews itself (registered with no renewer thread)."""
    return SessionLeases(meta, "client-a", renew_interval_s, clock=clock, register=lambda _: None)


def test_renews_every_third_of_the_lease_and_drops_what_meta_says_is_gone():
    meta, clock = FakeMeta(), Clock()
    leases = leases_on(meta, clock)
    assert leases.due_at() is None
    leases.opened(7, 70, lease_ms=3000)
    leases.opened(8, 80, lease_ms=3000)
    assert leases.due_at() == clock.now + 1.0
    clock.now += 1.0
    leases.renew()
    assert meta.sent == [("client-a", [(7, 70), (8, 80)])]
    meta.gone = {(8, 80)}
    leases.renew()
    assert leases.held() == [(7, 70)] and leases.lost(8, 80) and not leases.lost(7, 70)
    leases.closed(7, 70)
    assert leases.due_at() is None, "nothing held: nothing to renew"
    leases.renew()
    assert len(meta.sent) == 2


def test_a_failed_renewal_is_retried_soon_and_a_configured_interval_caps_the_wait():
    meta, clock = FakeMeta(), Clock()
    leases = leases_on(meta, clock, renew_interval_s=0.5)
    leases.opened(1, 10, lease_ms=60_000)
    assert leases.due_at() == clock.now + 0.5, "the client config asks for more frequent renewals"
    meta.down = True
    leases.renew()
    assert leases.due_at() <= clock.now + session_lease.RENEW_RETRY_S
    meta.down = False
    leases.renew()
    assert meta.sent == [("client-a", [(1, 10)])] and leases.due_at() == clock.now + 0.5


def test_the_renewer_renews_only_the_clients_that_are_due():
    meta, clock = FakeMeta(), Clock()
    renewer = Renewer(clock=clock)
    early, late = leases_on(meta, clock), leases_on(meta, clock)
    early.opened(1, 1, lease_ms=300)
    late.opened(2, 2, lease_ms=3000)
    renewer._clients.update([early, late])
    clock.now += 0.1
    assert renewer.run_due() == clock.now + 0.1
    assert [sessions for _, sessions in meta.sent] == [[(1, 1)]]


def test_a_forked_child_starts_with_an_empty_renewer():
    parent = session_lease.renewer()
    parent_leases = leases_on(FakeMeta(), Clock())
    parent._clients.add(parent_leases)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: report and leave without running any test machinery
        child = session_lease.renewer()
        ok = child is not parent and len(child._clients) == 0 and child._thread is None
        os.write(write_fd, b"1" if ok else b"0")
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 1)
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent._clients.discard(parent_leases)
    assert answer == b"1", "the child must not inherit the parent's renewer or its clients"
    assert session_lease.renewer() is parent, "the parent keeps its renewer"
