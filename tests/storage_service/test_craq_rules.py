"""The rules of storage_service.craq one by one, plus the local-state tracker and the fence.

Each case names a rule of the 3FS design notes (or of ours) and drives one
ChainOp, LocalStateTracker or Fence directly with explicit inputs.
"""

from __future__ import annotations

import pytest

from fireflyfs.common.errors import (ChecksumMismatch, Internal, MissingUpdate, NotHead,
                                     StaleChainVersion, Unavailable)
from fireflyfs.proto import types_pb2
from fireflyfs.storage_service.craq import (ChainOp, ChainView, ChunkState, Do, UpdateKind, Mutation,
                                            SyncReason, classify_for_sync, plan_sync)
from fireflyfs.storage_service.fencing import Fence
from fireflyfs.storage_service.local_state import LocalStateTracker

S, Y, O, W, L = types_pb2.SERVING, types_pb2.SYNCING, types_pb2.OFFLINE, types_pb2.WAITING, types_pb2.LASTSRV
WRITE = Mutation(UpdateKind.WRITE, 1 << 16, offset=0, data=b"x")


def chain(*members, version=5) -> ChainView:
    return ChainView(1, version, tuple(t for t, _ in members), tuple(s for _, s in members))


THREE = chain((1, S), (2, S), (3, S))


def state(v, u=None, cv=5, length=1, checksum=7) -> ChunkState:
    return ChunkState(v, v if u is None else u, cv, length, checksum)


# ---------------------------------------------------------------------------- chain view


def test_chain_view_members_head_and_neighbours():
    view = chain((1, S), (2, S), (3, Y), (4, O))
    assert view.members == (1, 2, 3) and view.head == 1 and view.serving == (1, 2)
    assert (view.successor(1), view.successor(3), view.successor(4)) == (2, None, None)
    assert (view.predecessor(1), view.predecessor(3)) == (None, 2)
    assert chain((1, Y), (2, O)).head is None, "a syncing first member is not a head"


# ---------------------------------------------------------------------------- head


def test_head_stages_next_version_and_forwards_then_commits_on_ack():
    op = ChainOp(1, THREE, 5, WRITE)
    action = op.admit(state(4))
    assert (action.do, action.version, action.commit) == (Do.STAGE, 5, False)
    action = op.staged(state(4, 5, checksum=99))
    assert (action.do, action.to_target, action.full_replace, action.version) == (Do.FORWARD, 2, False, 5)
    action = op.replied(5, 99)
    assert (action.do, action.version, action.chain_version) == (Do.COMMIT, 5, 5)
    action = op.committed(state(5, checksum=99))
    assert action.do is Do.REPLY and action.state.commit_version == 5


def test_head_of_a_single_replica_chain_stages_and_commits_at_once():
    op = ChainOp(1, chain((1, S)), 5, WRITE)
    action = op.admit(None)
    assert (action.do, action.version, action.commit) == (Do.STAGE, 1, True)
    assert op.staged(state(1)).do is Do.REPLY
    with pytest.raises(Internal):
        op.admit(None)


@pytest.mark.parametrize("target,version,error", [
    (2, 5, NotHead),                 # a client write to a non-head
    (1, 4, StaleChainVersion),       # the client routed by an older chain
    (9, 5, StaleChainVersion),       # not a member at all
])
def test_head_rejections(target, version, error):
    action = ChainOp(target, THREE, version, WRITE).admit(None)
    assert action.do is Do.FAIL and isinstance(action.error, error)


def test_head_rolls_a_pending_leftover_forward_before_the_new_write():
    op = ChainOp(1, THREE, 5, WRITE)
    action = op.admit(state(4, 5, checksum=11))
    assert (action.do, action.version, action.full_replace, action.to_target) == (Do.FORWARD, 5, True, 2)
    assert op.replied(5, 11).do is Do.COMMIT
    action = op.committed(state(5, checksum=11))
    assert (action.do, action.version) == (Do.STAGE, 6), "then the client's write gets the next version"


def test_forward_to_a_syncing_successor_is_a_full_replace():
    op = ChainOp(1, chain((1, S), (2, Y)), 5, WRITE)
    op.admit(state(1))
    action = op.staged(state(1, 2))
    assert (action.do, action.full_replace) == (Do.FORWARD, True)


# ---------------------------------------------------------------------------- successor


def update(target=2, u=5, local=None, full=False, version=5, from_target=1, view=THREE):
    op = ChainOp(target, view, version, WRITE, update_version=u, full_replace=full, from_target=from_target)
    return op, op.admit(local)


def test_successor_duplicate_is_answered_with_the_local_state():
    for local in (state(5), state(6)):
        _, action = update(u=5, local=local)
        assert action.do is Do.REPLY and action.state == local


def test_successor_stages_the_next_version_and_reapplies_a_pending_one():
    assert update(u=5, local=state(4))[1].do is Do.STAGE
    assert update(u=5, local=state(4, 5))[1].do is Do.STAGE
    assert update(u=1, local=None)[1].do is Do.STAGE


@pytest.mark.parametrize("u,local", [(6, state(4)), (6, state(4, 5)), (2, None)])
def test_successor_missing_update(u, local):
    _, action = update(u=u, local=local)
    assert action.do is Do.FAIL and isinstance(action.error, MissingUpdate)


def test_tail_stages_and_commits_at_once():
    _, action = update(target=3, from_target=2, u=5, local=state(4))
    assert (action.do, action.commit) == (Do.STAGE, True)


def test_successor_checks_version_and_predecessor():
    assert isinstance(update(version=4)[1].error, StaleChainVersion)
    assert isinstance(update(from_target=3)[1].error, StaleChainVersion)


def test_full_replace_is_taken_whatever_the_versions_except_a_stale_duplicate():
    assert update(u=3, local=state(9, cv=2), full=True)[1].do is Do.STAGE      # older chain: overwrite
    assert update(u=12, local=state(4), full=True)[1].do is Do.STAGE           # skips versions: fine
    assert update(u=3, local=state(9, cv=5), full=True)[1].do is Do.REPLY      # late copy, same chain


# ---------------------------------------------------------------------------- acks and failures


def forwarded_op(full=False):
    op = ChainOp(1, THREE, 5, WRITE)
    op.admit(state(4))
    op.staged(state(4, 5, checksum=99))
    return op


def test_checksum_mismatch_resends_the_whole_chunk_once():
    op = forwarded_op()
    action = op.replied(5, 12345)
    assert (action.do, action.full_replace) == (Do.FORWARD, True)
    action = op.replied(5, 12345)
    assert action.do is Do.FAIL and isinstance(action.error, Internal)


def test_missing_update_from_the_successor_resends_the_whole_chunk():
    op = forwarded_op()
    action = op.failed(MissingUpdate("gap"))
    assert (action.do, action.full_replace, action.to_target) == (Do.FORWARD, True, 2)


def test_retryable_errors_wait_for_routing_and_go_on_with_the_new_chain():
    op = forwarded_op()
    assert op.failed(Unavailable("dead")).do is Do.WAIT
    action = op.retry(chain((1, S), (3, S), (2, O), version=6))
    assert (action.do, action.to_target, action.chain_version) == (Do.FORWARD, 3, 6)
    assert op.failed(Unavailable("dead too")).do is Do.WAIT
    action = op.retry(chain((1, S), (3, O), (2, O), version=7))
    assert (action.do, action.version, action.chain_version) == (Do.COMMIT, 5, 7), "now the tail"


def test_a_replica_that_left_the_chain_gives_up():
    op = forwarded_op()
    op.failed(Unavailable("dead"))
    action = op.retry(chain((2, S), (3, S), (1, O), version=6))
    assert action.do is Do.FAIL and isinstance(action.error, StaleChainVersion)


def test_non_retryable_successor_errors_fail_the_update():
    action = forwarded_op().failed(ChecksumMismatch("bad bytes"))
    assert action.do is Do.FAIL and isinstance(action.error, ChecksumMismatch)


def test_push_sends_the_chunk_as_it_is_and_commits_a_pending_one():
    op = ChainOp(1, chain((1, S), (2, Y)), 5, None, push=True)
    action = op.admit(state(7))
    assert (action.do, action.version, action.full_replace) == (Do.FORWARD, 7, True)
    assert op.replied(7, 7).do is Do.COMMIT
    pending = ChainOp(1, chain((1, S), (2, Y)), 5, None, push=True)
    assert pending.admit(state(7, 8)).version == 8


# ---------------------------------------------------------------------------- resync planning


@pytest.mark.parametrize("local,remote,reason", [
    (state(3), None, SyncReason.LOCAL_ONLY),
    (None, state(3), SyncReason.REMOTE_ONLY),
    (state(3, cv=6), state(3, cv=5), SyncReason.NEWER_CHAIN_VERSION),
    (state(3), state(2, 3), SyncReason.PENDING),
    (state(3), state(4), SyncReason.VERSION_MISMATCH),
    (state(3, 4), state(3), SyncReason.PENDING),
    (state(3, cv=4), state(4, cv=5), SyncReason.CONTENT_MISMATCH),   # 3FS would call this in flight
    (state(3), state(3, checksum=8), SyncReason.CONTENT_MISMATCH),
    (state(3), state(3), SyncReason.EQUAL),
])
def test_sync_classification(local, remote, reason):
    assert classify_for_sync(local, remote) is reason


def test_plan_sync_sorts_and_splits():
    send, remove = plan_sync({b"b": state(1), b"a": state(2)}, {b"a": state(2), b"c": state(1)})
    assert send == [(b"b", SyncReason.LOCAL_ONLY)] and remove == [b"c"]


# ---------------------------------------------------------------------------- local state, fence


def test_fresh_target_is_uptodate_once_its_chain_serves():
    tracker = LocalStateTracker(101)
    assert tracker.observe(False, 0) == types_pb2.ONLINE
    assert tracker.observe(True, S) == types_pb2.UPTODATE


def test_restarted_target_stays_online_until_synced():
    tracker = LocalStateTracker(101)
    assert tracker.observe(True, O) == types_pb2.ONLINE
    assert tracker.observe(True, W) == types_pb2.ONLINE
    assert tracker.observe(True, Y) == types_pb2.ONLINE
    tracker.sync_done()
    assert tracker.observe(True, Y) == types_pb2.UPTODATE
    assert tracker.observe(True, S) == types_pb2.UPTODATE
    assert tracker.observe(True, O) == types_pb2.ONLINE, "seen offline: must sync again"
    assert tracker.observe(True, S) == types_pb2.ONLINE


def test_target_first_seen_serving_in_a_chain_is_not_trusted_as_fresh():
    tracker = LocalStateTracker(101)
    assert tracker.observe(True, S) == types_pb2.ONLINE
    assert tracker.observe(True, L) == types_pb2.ONLINE


def test_fence_opens_on_contact_and_closes_after_half_the_timeout():
    fence = Fence(1, heartbeat_timeout_ms=2000)
    assert fence.fenced(0.0)
    with pytest.raises(Unavailable):
        fence.check(0.0)
    fence.contact_ok(10.0)
    fence.check(10.9)
    assert fence.fenced(11.01)
    fence.set_timeout(10_000)
    assert not fence.fenced(14.9)
    with pytest.raises(Unavailable, match="fenced"):
        fence.check(15.1)
