"""Periodic: a step that raises is logged and run again next interval; stop() ends the thread."""

from __future__ import annotations

import logging
import threading

from fireflyfs.common.periodic import Periodic


def test_a_failing_step_is_retried_and_stop_ends_the_thread(caplog):
    calls = []
    third = threading.Event()

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("first pass fails")
        if len(calls) >= 3:
            third.set()

    periodic = Periodic("test-periodic", lambda: 0.01, step, logging.getLogger("test.periodic"))
    with caplog.at_level(logging.ERROR, logger="test.periodic"):
        periodic.start()
        assert third.wait(10), "the thread went on after the failing pass"
        periodic.stop()
    assert not periodic._thread.is_alive()
    assert any("test-periodic: pass failed" in record.getMessage() for record in caplog.records)
    stopped_at = len(calls)
    assert not third.wait(0.05) or len(calls) == stopped_at, "no step runs after stop()"
