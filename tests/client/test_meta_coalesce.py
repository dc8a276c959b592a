"""The metadata client's Coalescer: concurrent independent calls share RPCs.

Method: a fake ``send`` that records every batch and can be held open, so the
test decides when RPCs are "in flight"; threads then call at once and the
batches, results and errors each caller sees are checked. No server needed.
"""

from __future__ import annotations

import os
import threading

import pytest

from fireflyfs.client.meta_client import Coalescer
from fireflyfs.common.errors import NotFound, Unavailable


class HeldSend:
    """send(items) that records batches; blocks while `gate` is clear."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.release()
        self.gate.wait(10)
        return [NotFound(f"no {item}") if item < 0 else item * 10 for item in items]


def test_a_lone_caller_sends_alone_and_at_once():
    send = HeldSend()
    coalescer = Coalescer(send, inflight_max=1)
    assert [coalescer.call(i) for i in range(3)] == [0, 10, 20]
    assert send.batches == [[0], [1], [2]]
    with pytest.raises(NotFound):
        coalescer.call(-1)


def test_callers_arriving_while_rpcs_are_out_leave_together():
    send = HeldSend()
    coalescer = Coalescer(send, inflight_max=1)
    send.gate.clear()
    results: dict[int, object] = {}

    def call(item: int) -> None:
        try:
            results[item] = coalescer.call(item)
        except Exception as exc:  # noqa: BLE001 - checked below
            results[item] = exc

    first = threading.Thread(target=call, args=(1,))
    first.start()
    assert send.entered.acquire(timeout=10)          # item 1 is in flight, alone
    waiting = [threading.Thread(target=call, args=(item,)) for item in (2, 3, -4, 5)]
    for thread in waiting:
        thread.start()
    while len(coalescer._queue) < 4:                 # all four queued behind it
        threading.Event().wait(0.001)
    send.gate.set()
    for thread in [first, *waiting]:
        thread.join(10)
    assert send.batches[0] == [1]
    assert sorted(send.batches[1]) == [-4, 2, 3, 5] and len(send.batches) == 2
    assert (results[1], results[2], results[3], results[5]) == (10, 20, 30, 50)
    assert isinstance(results[-4], NotFound)         # one item's error stays its own


def test_inflight_and_batch_limits_hold_under_many_threads():
    in_flight = 0
    seen_max = 0
    lock = threading.Lock()
    sizes: list[int] = []

    def send(items):
        nonlocal in_flight, seen_max
        with lock:
            in_flight += 1
            seen_max = max(seen_max, in_flight)
            sizes.append(len(items))
        threading.Event().wait(0.002)
        with lock:
            in_flight -= 1
        return [item + 1 for item in items]

    coalescer = Coalescer(send, inflight_max=2, batch_max=5)
    out: list[int] = []

    def worker(base: int) -> None:
        for i in range(50):
            value = base * 1000 + i
            assert coalescer.call(value) == value + 1
            out.append(value)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(out) == 800 and sum(sizes) == 800
    assert seen_max <= 2 and max(sizes) <= 5
    assert len(sizes) < 800   # some calls did share an RPC


def test_a_failing_send_fails_every_caller_of_its_batch():
    def send(items):
        raise Unavailable("meta down")

    coalescer = Coalescer(send)
    with pytest.raises(Unavailable):
        coalescer.call(1)


def test_a_forked_child_starts_clean():
    send = HeldSend()
    coalescer = Coalescer(send, inflight_max=1)
    coalescer.call(1)
    coalescer._inflight = 1     # as if a parent thread were mid-call at fork time
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if coalescer.call(7) == 70 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
