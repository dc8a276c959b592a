"""A fork waits for gRPC calls in flight (common/fork_gate.py), so gRPC core's fork handlers run."""

from __future__ import annotations

import logging
import os
import threading
import time

from fireflyfs.common import fork_gate


def _fork_and_report_child_calls() -> int:
    """Fork; the child exits with its count of calls in flight (its gate is fresh)."""
    pid = os.fork()
    if pid == 0:
        os._exit(fork_gate.calls_in_flight())
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_fork_waits_for_the_call_in_flight_and_holds_new_calls_back():
    events: list[str] = []
    in_call, forking = threading.Event(), threading.Event()

    def call_in_flight():
        with fork_gate.calls_counted():
            in_call.set()
            forking.wait(5)
            time.sleep(0.2)          # the fork has started by now and must wait for this
            events.append("call ended")

    def call_during_fork():
        forking.wait(5)
        time.sleep(0.1)
        with fork_gate.calls_counted():
            events.append("late call ran")

    threads = [threading.Thread(target=call_in_flight), threading.Thread(target=call_during_fork)]
    threads[0].start()
    in_call.wait(5)
    threads[1].start()
    forking.set()
    child_calls = _fork_and_report_child_calls()
    events.append("forked")
    for thread in threads:
        thread.join(5)
    assert events.index("call ended") < events.index("forked")
    assert events.index("late call ran") > events.index("call ended"), "a call started mid-fork waited"
    assert child_calls == 0, "the child starts with no calls in flight"
    assert fork_gate.calls_in_flight() == 0


def test_a_call_that_outlasts_the_wait_lets_the_fork_go_ahead_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(fork_gate, "wait_s", 0.1)
    release = threading.Event()
    started = threading.Event()

    def stalled_call():
        with fork_gate.calls_counted():
            started.set()
            release.wait(10)

    thread = threading.Thread(target=stalled_call)
    thread.start()
    started.wait(5)
    try:
        with caplog.at_level(logging.WARNING, logger=fork_gate.__name__):
            assert _fork_and_report_child_calls() == 0
        assert "1 gRPC calls still in flight" in caplog.text
        with fork_gate.calls_counted():      # the parent's gate is open again
            assert fork_gate.calls_in_flight() == 2
    finally:
        release.set()
        thread.join(5)
    assert fork_gate.calls_in_flight() == 0
