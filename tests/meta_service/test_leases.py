"""Write sessions: holder checks, Sync rules, random ids, and lease expiry on a fake clock.

Method: a Namespace over a real LMDB store with the in-memory FakeChunkStore;
the LeaseTable and SessionReaper run on a fake monotonic clock the test
advances, so expiry is deterministic (no sleeps). A "write" records the chunk
extent a client write would leave on storage.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import errors, limits
from fireflyfs.common.layout import Layout
from fireflyfs.meta_service.copy import COPY_CLIENT_ID
from fireflyfs.meta_service.files import CHUNK_INDEX_MAX
from fireflyfs.meta_service.gc import GarbageCollector
from fireflyfs.meta_service.leases import LeaseTable, SessionReaper
from fireflyfs.meta_service.namespace import Namespace

from .conftest import dump, install_chain_table

NOW = 1_000
LEASE_MS = 1_000
MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 5_000 * MS

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: int) -> None:
        self.now_ns += ms * MS


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture
def leased(store, chunks, fake_clock):
    """(namespace, lease table, reaper) sharing the fake clock."""
    install_chain_table(store)
    leases = LeaseTable(LEASE_MS, clock_ns=fake_clock)
    ns = Namespace(store, chunks, rng=random.Random(7), leases=leases)
    reaper = SessionReaper(store, leases, excluded=Namespace.OWN_CLIENT_IDS,
                           end_session=lambda inode_id, session_id, client_id: ns.close(
                               inode_id, session_id, NOW, client_id=client_id))
    return ns, leases, reaper


def write(chunks, inode, offset, length):
    chunks.write(inode.id, Layout.from_proto(inode.layout), offset, length)


# ---- holders, ids, Sync ------------------------------------------------------------------------

def test_only_the_holder_closes_or_syncs_and_a_refusal_changes_nothing(ns, store, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True, client_id="alice")
    write(chunks, inode, 0, 500)
    before = dump(store)
    with pytest.raises(errors.PermissionDenied, match="held by another client"):
        ns.close(inode.id, sid, NOW, length_hint=10**6, client_id="mallory")
    with pytest.raises(errors.PermissionDenied, match="only its holder"):
        ns.sync(inode.id, sid, NOW, length_hint=10**6, client_id="mallory")
    with pytest.raises(errors.PermissionDenied):
        ns.close(inode.id, sid, NOW, client_id="")   # an empty id is no wildcard
    assert dump(store) == before
    assert ns.sync(inode.id, sid, NOW, client_id="alice").length == 500
    assert ns.close(inode.id, sid, NOW, client_id="alice").open_write_sessions == 0


def test_sync_needs_a_live_session_and_a_sane_length(ns, store, chunks):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True, client_id="w")
    with pytest.raises(errors.InvalidArgument, match="session"):
        ns.sync(inode.id, 0, NOW, length_hint=10, client_id="w")
    with pytest.raises(errors.NotFound, match="no write session"):
        ns.sync(inode.id, sid ^ 1, NOW, length_hint=10, client_id="w")
    largest = (CHUNK_INDEX_MAX + 1) * inode.layout.chunk_size
    before = dump(store)
    with pytest.raises(errors.TooLarge, match="largest file"):
        ns.sync(inode.id, sid, NOW, length_hint=largest, client_id="w")
    with pytest.raises(errors.TooLarge):
        ns.close(inode.id, sid, NOW, length_hint=largest, client_id="w")
    with pytest.raises(errors.InvalidArgument, match="negative"):
        ns.sync(inode.id, sid, NOW, length_hint=-1, client_id="w")
    assert dump(store) == before
    assert ns.sync(inode.id, sid, NOW, length_hint=largest - 1, client_id="w").length == largest - 1
    ns.close(inode.id, sid, NOW, client_id="w")
    with pytest.raises(errors.NotFound):
        ns.sync(inode.id, sid, NOW, client_id="w")


def test_session_ids_are_random_64_bit_not_a_counter(ns):
    inode, first, _ = ns.create("/f", NOW, open_for_write=True, client_id="w")
    ids = [first] + [ns.open("/f", NOW, write=True, client_id="w")[1] for _ in range(63)]
    assert len(set(ids)) == 64 and 0 not in ids
    steps = {b - a for a, b in zip(ids, ids[1:])}
    assert 1 not in steps, "consecutive ids would be guessable"
    assert sum(i >= 1 << 48 for i in ids) >= 60, "drawn from the whole 64-bit range"
    assert max(ids) < 1 << 64


def test_the_services_own_client_ids_are_refused(ns):
    with pytest.raises(errors.InvalidArgument, match="reserved"):
        ns.create("/f", NOW, open_for_write=True, client_id=COPY_CLIENT_ID)
    with pytest.raises(errors.InvalidArgument, match="reserved"):
        ns.renew_sessions(COPY_CLIENT_ID, [])


def test_renew_reports_the_sessions_that_are_gone(ns):
    inode, sid, _ = ns.create("/f", NOW, open_for_write=True, client_id="w")
    _, other, _ = ns.open("/f", NOW, write=True, client_id="someone-else")
    ns.create("/g", NOW, open_for_write=True, client_id="w")
    assert ns.renew_sessions("w", [(inode.id, sid)]) == []
    assert ns.renew_sessions("w", [(inode.id, other), (inode.id, sid ^ 1)]) == [(inode.id, other),
                                                                                 (inode.id, sid ^ 1)]
    with pytest.raises(errors.TooLarge):
        ns.renew_sessions("w", [(1, 1)] * (limits.renew_sessions_refs_max + 1))


# ---- expiry ------------------------------------------------------------------------------------

def test_a_client_that_stops_renewing_loses_its_sessions_and_lengths_settle(leased, store, chunks, fake_clock):
    ns, leases, reaper = leased
    dead, dead_sid, _ = ns.create("/dead", NOW, open_for_write=True, client_id="dead")
    live, live_sid, _ = ns.create("/live", NOW, open_for_write=True, client_id="live")
    shared, shared_dead, _ = ns.create("/shared", NOW, open_for_write=True, client_id="dead")
    _, shared_live, _ = ns.open("/shared", NOW, write=True, client_id="live")
    write(chunks, dead, 0, 7_000)
    write(chunks, shared, 0, 3_000)
    assert reaper.run_once() == 0
    for _ in range(4):                      # "live" renews every third of the lease; "dead" never
        fake_clock.advance_ms(LEASE_MS // 3)
        assert ns.renew_sessions("live", [(live.id, live_sid), (shared.id, shared_live)]) == []
        reaper.run_once()
    assert leases.is_expired("dead") and not leases.is_expired("live")
    assert ns.stat("/dead")[0].open_write_sessions == 0
    assert ns.stat("/dead")[0].length == 7_000, "settled from storage, as the last Close does"
    assert ns.stat("/live")[0].open_write_sessions == 1
    assert ns.stat("/shared")[0].open_write_sessions == 1, "only the dead client's session ended"
    assert ns.renew_sessions("dead", [(dead.id, dead_sid), (shared.id, shared_dead)]) == [
        (dead.id, dead_sid), (shared.id, shared_dead)]
    with pytest.raises(errors.NotFound, match="renewing its lease"):
        ns.close(dead.id, dead_sid, NOW, client_id="dead")
    assert ns.close(shared.id, shared_live, NOW, client_id="live").length == 3_000


def test_expiry_lets_gc_reclaim_an_unlinked_file(leased, store, chunks, fake_clock):
    ns, _leases, reaper = leased
    inode, _sid, _ = ns.create("/f", NOW, open_for_write=True, client_id="dead")
    write(chunks, inode, 0, 5 * inode.layout.chunk_size)
    ns.remove("/f", NOW)
    gc = GarbageCollector(store, chunks)
    assert gc.run_once(NOW) == 0, "open sessions defer GC"
    fake_clock.advance_ms(LEASE_MS - 1)
    assert reaper.run_once() == 0, "not before the lease is over"
    fake_clock.advance_ms(1)
    assert reaper.run_once() == 1
    with store.read() as txn:
        assert txn.get_gc(inode.id).length == 5 * inode.layout.chunk_size
    assert gc.run_once(NOW) == 1 and inode.id not in chunks.chunks
    assert reaper.run_once() == 0 and "dead" not in _leases.clients(), "a client with nothing left is forgotten"


def test_a_session_whose_storage_is_down_waits_and_the_others_go_on(leased, store, chunks, fake_clock):
    ns, _leases, reaper = leased
    stuck, stuck_sid, _ = ns.create("/stuck", NOW, open_for_write=True, client_id="dead")
    other, _, _ = ns.create("/other", NOW, open_for_write=True, client_id="dead")
    write(chunks, other, 0, 10)
    real_length = chunks.file_length_from_chunks

    def length(inode_id, layout):
        if inode_id == stuck.id:
            raise errors.Unavailable("chain of /stuck unreachable")
        return real_length(inode_id, layout)

    chunks.file_length_from_chunks = length
    fake_clock.advance_ms(LEASE_MS)
    assert reaper.run_once() == 1
    assert ns.stat("/other")[0].open_write_sessions == 0 and ns.stat("/other")[0].length == 10
    assert ns.stat("/stuck")[0].open_write_sessions == 1, "no length from storage: the session stays"
    assert reaper.run_once() == 0, "backing off"
    chunks.file_length_from_chunks = real_length
    fake_clock.advance_ms(reaper.interval_ms)
    assert reaper.run_once() == 1 and ns.stat("/stuck")[0].open_write_sessions == 0
    with pytest.raises(errors.NotFound):
        ns.close(stuck.id, stuck_sid, NOW, client_id="dead")


def test_a_restarted_service_gives_every_holder_a_full_lease(store, chunks, fake_clock):
    install_chain_table(store)
    first = Namespace(store, chunks, leases=LeaseTable(LEASE_MS, clock_ns=fake_clock))
    inode, sid, _ = first.create("/f", NOW, open_for_write=True, client_id="w")
    fake_clock.advance_ms(10 * LEASE_MS)   # the service was down far longer than a lease
    leases = LeaseTable(LEASE_MS, clock_ns=fake_clock)
    again = Namespace(store, chunks, leases=leases)
    reaper = SessionReaper(store, leases, lambda *args: again.close(*args[:2], NOW, client_id=args[2]))
    assert leases.clients() == ["w"]
    fake_clock.advance_ms(LEASE_MS - 1)
    assert reaper.run_once() == 0, "the client still has time to renew against the new process"
    assert again.renew_sessions("w", [(inode.id, sid)]) == []
