"""Group commit (common/lmdb_commit.py): no write returns before the synced commit covering it.

Power loss cannot be simulated by killing a process, so these tests check the
order instead: a recording wrapper around the real LMDB env logs when each
top-level (outer) commit starts and returns; writers log their body and their
return; every write's return must come after the return of a synced commit
that began after its body. The env is a real one opened with sync=True,
metasync=True (GroupCommitEnv refuses a durable env without them), so a
commit that returned has made LMDB's fdatasyncs. What no test here can show:
that the disk honours fdatasync (docs/durability.md).
"""

from __future__ import annotations

import random
import threading
import time

import lmdb
import pytest

from fireflyfs.common.errors import Internal
from fireflyfs.common.lmdb_commit import GroupCommitEnv
from .durability_recording import Recorder, RecordingEnv


@pytest.fixture
def env(tmp_path):
    environment = lmdb.open(str(tmp_path / "db"), map_size=64 << 20, sync=True, metasync=True)
    yield environment
    environment.close()


def _read(env: lmdb.Environment, key: bytes) -> bytes | None:
    with env.begin() as txn:
        return txn.get(key)


def _check_ordering(events: list[tuple], acked: list[int]) -> None:
    """Each acknowledged write returned after a commit that started after its body and returned."""
    for writer in acked:
        body = events.index(("body", writer))
        reply = events.index(("reply", writer))
        covering = [i for i, event in enumerate(events[body:reply], body)
                    if event[0] == "commit-done" and ("commit-start", event[1]) in events[body:i]]
        assert covering, f"write {writer} replied at event {reply} with no synced commit after its body"


def test_a_durable_writer_needs_a_synced_env(tmp_path):
    unsynced = lmdb.open(str(tmp_path / "db"), map_size=1 << 20, sync=False, metasync=False)
    try:
        with pytest.raises(ValueError, match="sync=True"):
            GroupCommitEnv(unsynced, durable=True, name="test")
        GroupCommitEnv(unsynced, durable=False, name="test")   # the opt-out is allowed
    finally:
        unsynced.close()


def test_each_reply_follows_the_synced_commit_of_its_write(env, seed):
    """Goal: ordering under concurrency. Method: 16 threads write; check the event log."""
    rng = random.Random(seed)
    recorder = Recorder()
    writer = GroupCommitEnv(RecordingEnv(env, recorder), durable=True, name="test")
    writes_per_thread = 20
    delays = [[rng.random() * 0.002 for _ in range(writes_per_thread)] for _ in range(16)]

    def run(thread: int) -> None:
        for n in range(writes_per_thread):
            number = thread * 1000 + n
            time.sleep(delays[thread][n])
            with writer.write() as txn:
                recorder.add("body", number)
                txn.put(b"k%d" % number, b"v%d" % number)
            recorder.add("reply", number)
            assert _read(env, b"k%d" % number) == b"v%d" % number, "a read after the reply sees the write"

    threads = [threading.Thread(target=run, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    acked = [t * 1000 + n for t in range(16) for n in range(writes_per_thread)]
    _check_ordering(recorder.events, acked)
    assert writer.counters.writes_durable == len(acked)
    assert writer.counters.commits_durable < len(acked), "concurrent writes shared commits"


def test_raising_bodies_change_nothing_and_the_rest_stay(env, seed, tmp_path):
    """Goal: a failing body leaves no trace, its batch-mates commit. Method: seeded threads, a
    third of the bodies raise after their puts; reopen the env and check every key."""
    rng = random.Random(seed)
    writer = GroupCommitEnv(env, durable=True, name="test")
    plan = {t * 100 + n: rng.random() < 0.33 for t in range(12) for n in range(25)}

    class Refused(Exception):
        pass

    def run(thread: int) -> None:
        for n in range(25):
            number = thread * 100 + n
            try:
                with writer.write() as txn:
                    txn.put(b"k%d" % number, b"v")
                    txn.put(b"shared", b"%d" % number)
                    if plan[number]:
                        raise Refused(number)
            except Refused:
                assert plan[number]

    threads = [threading.Thread(target=run, args=(t,)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = env.path()
    env.close()
    reopened = lmdb.open(path, map_size=64 << 20)
    try:
        for number, refused in plan.items():
            assert (_read(reopened, b"k%d" % number) is None) == refused, number
        last = int(_read(reopened, b"shared"))
        assert not plan[last], "the last value of a shared key comes from a write that committed"
    finally:
        reopened.close()
    assert writer.counters.writes_durable == sum(not refused for refused in plan.values())


def test_a_failed_outer_commit_fails_every_writer_of_its_batch(env):
    """Goal: no ack for a write whose commit failed. Method: the first outer commit fails (as a
    full disk would); its leader holds its body until 7 more writers wait, and those join its
    batch when the body ends, so all 8 share the failing commit."""
    recorder = Recorder()
    writer = GroupCommitEnv(RecordingEnv(env, recorder, fail_commits={1}), durable=True, name="test")
    in_first_body = threading.Event()
    release_first = threading.Event()
    outcomes: dict[int, object] = {}

    def run(number: int, hold: bool = False) -> None:
        try:
            with writer.write() as txn:
                txn.put(b"k%d" % number, b"v")
                if hold:
                    in_first_body.set()
                    release_first.wait(10)
            outcomes[number] = "acked"
        except lmdb.Error as exc:
            outcomes[number] = exc

    first = threading.Thread(target=run, args=(0, True))
    first.start()
    assert in_first_body.wait(10)
    others = [threading.Thread(target=run, args=(n,)) for n in range(1, 8)]
    for thread in others:
        thread.start()
    while writer._waiting < 7:   # the 7 wait while the leader's body runs
        time.sleep(0.001)
    release_first.set()
    for thread in [first, *others]:
        thread.join(10)
    assert all(isinstance(outcomes[n], lmdb.DiskError) for n in range(8)), outcomes
    assert len({id(outcomes[n]) for n in range(8)}) == 8, "each writer raises its own exception object"
    assert all(_read(env, b"k%d" % n) is None for n in range(8)), "a failed batch leaves nothing behind"
    assert recorder.events == [("commit-start", 1)], "one commit for the 8 writes, and it failed"
    assert (writer.counters.commits_failed, writer.counters.writes_durable) == (1, 0)
    with writer.write() as txn:            # the writer goes on after a failed batch
        txn.put(b"after", b"v")
    assert _read(env, b"after") == b"v"


def test_a_nested_write_joins_the_enclosing_one(env):
    """Goal: no deadlock, all-or-nothing per level. Method: writes inside a write body."""
    writer = GroupCommitEnv(env, durable=True, name="test")
    with writer.write() as txn:
        txn.put(b"outer", b"1")
        with writer.write() as inner:
            inner.put(b"inner", b"1")
        with pytest.raises(KeyError):
            with writer.write() as refused:
                refused.put(b"refused", b"1")
                raise KeyError("inner body fails")
        assert txn.get(b"inner") == b"1", "the enclosing body sees its nested write"
        assert _read(env, b"inner") is None, "nothing is visible before the enclosing write ends"
    assert (_read(env, b"outer"), _read(env, b"inner"), _read(env, b"refused")) == (b"1", b"1", None)
    assert writer.counters.commits_durable == 1


def test_unsynced_mode_commits_on_the_callers_thread(tmp_path):
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20, sync=False, metasync=False)
    try:
        writer = GroupCommitEnv(env, durable=False, name="test")
        with writer.write() as txn:
            txn.put(b"k", b"v")
        assert _read(env, b"k") == b"v"
        assert (writer.counters.writes_unsynced, writer.counters.commits_durable) == (1, 0)
    finally:
        env.close()


def test_no_write_after_close(env):
    writer = GroupCommitEnv(env, durable=True, name="test")
    writer.close()
    with pytest.raises(Internal, match="after close"):
        with writer.write():
            pass
