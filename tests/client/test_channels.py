"""ChannelPool: one set of channels per process, rebuilt (never reused) after fork.

Method: a counting channel factory; the pid change is simulated by patching
os.getpid, and checked for real with os.fork() (the child reports through its
exit status).
"""

import os

import pytest

from fireflyfs.client import channels
from fireflyfs.client.client import FfsClient


class FakeChannel:
    made = 0

    def __init__(self, address):
        FakeChannel.made += 1
        self.address = address
        self.closed = False

    def close(self):
        self.closed = True


class FakeStub:
    def __init__(self, channel):
        self.channel = channel


def test_channels_and_stubs_are_reused_within_a_process():
    pool = channels.ChannelPool(make_channel=FakeChannel)
    first = pool.stub("a:1", FakeStub)
    assert pool.stub("a:1", FakeStub) is first
    assert pool.channel("a:1") is first.channel
    assert pool.channel("b:2") is not first.channel


def test_pid_change_drops_references_without_closing_them(monkeypatch):
    pool = channels.ChannelPool(make_channel=FakeChannel)
    parent_channel = pool.channel("a:1")
    parent_executor = pool.executor()
    child_pid = pool.pid + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    child_channel = pool.channel("a:1")
    assert child_channel is not parent_channel
    assert not parent_channel.closed, "the parent's channel must not be closed by the child"
    assert pool.executor() is not parent_executor
    pool.close()
    assert child_channel.closed and not parent_channel.closed
    parent_executor.shutdown()


def test_forget_rebuilds_and_closes_the_old_channel_later(monkeypatch):
    """Other threads may have calls in flight on a forgotten channel: it is closed later, not at once."""
    now = [1000.0]
    monkeypatch.setattr(channels.time, "monotonic", lambda: now[0])
    pool = channels.ChannelPool(make_channel=FakeChannel)
    channel = pool.channel("a:1")
    stub = pool.stub("a:1", FakeStub)
    pool.forget("a:1")
    assert not channel.closed
    assert pool.stub("a:1", FakeStub) is not stub
    now[0] += channels.retired_channel_close_s + 1
    pool.forget("b:2")
    assert channel.closed
    newer = pool.channel("a:1")
    pool.forget("a:1")
    pool.close()
    assert newer.closed, "close() closes retired channels too"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_real_fork_child_builds_its_own_channels_and_executor():
    pool = channels.ChannelPool(make_channel=FakeChannel)
    parent_channel = pool.channel("a:1")
    pool.executor().submit(lambda: None).result()
    pid = os.fork()
    if pid == 0:   # child: report through the exit status only
        code = 0
        try:
            if pool.channel("a:1") is parent_channel:
                code = 3
            elif pool.executor().submit(lambda: 41 + 1).result(timeout=10) != 42:
                code = 4
            elif parent_channel.closed:
                code = 5
        except BaseException:
            code = 6
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.channel("a:1") is parent_channel


def test_client_rebuilds_connections_with_a_new_client_id_after_fork(monkeypatch):
    client = FfsClient("127.0.0.1:1")
    before_id, before_meta = client.client_id, client.meta
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert client.meta is not before_meta
    assert client.client_id != before_id
