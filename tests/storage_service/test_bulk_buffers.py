"""The bulk listener's request buffer budget (storage_service/bulk_buffers.py), driven directly.

Goal: the buffers handed out, in use and kept for reuse together, never
exceed the budget or a peer's share; a request that cannot fit waits a
bounded time; waiters are served in arrival order, except that one held back
only by its own peer's share lets others pass; freed buffers are reused.
Method: a BufferBudget of a few KiB-sized classes, acquired and released from
threads; a seeded stress run checks the bound under contention.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from fireflyfs.common.errors import InvalidArgument
from fireflyfs.storage_service.bulk_buffers import BufferBudget, buffer_bytes_min, size_class

KiB = 1024


def test_size_classes_are_powers_of_two_from_the_minimum():
    assert size_class(0) == size_class(1) == size_class(buffer_bytes_min) == buffer_bytes_min
    assert size_class(buffer_bytes_min + 1) == 2 * buffer_bytes_min
    assert size_class(70_000) == 128 * KiB
    assert size_class(64 * KiB * KiB) == 64 * KiB * KiB


def test_freed_buffers_are_reused_and_kept_ones_make_room_for_new_classes():
    budget = BufferBudget(64 * KiB)
    first = budget.acquire(5000, 1.0)
    assert len(first) == 8 * KiB and budget.in_use_bytes == 8 * KiB
    budget.release(first)
    assert budget.acquire(8000, 1.0) is first and budget.allocated_count == 1
    budget.release(first)
    assert budget.kept_bytes == 8 * KiB
    whole = budget.acquire(64 * KiB, 1.0)      # only fits once the kept 8 KiB buffer is dropped
    assert len(whole) == 64 * KiB and budget.kept_bytes == 0 and budget.allocated_count == 2
    budget.release(whole)
    assert budget.in_use_bytes == 0 and budget.in_use_bytes_peak == 64 * KiB


def test_a_request_that_does_not_fit_waits_a_bounded_time_then_gets_none():
    budget = BufferBudget(64 * KiB)
    held = [budget.acquire(32 * KiB, 1.0), budget.acquire(32 * KiB, 1.0)]
    assert budget.acquire(1, 0.05) is None
    assert budget.in_use_bytes_peak == 64 * KiB
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(16 * KiB, 10.0)))
    waiter.start()
    time.sleep(0.05)
    budget.release(held.pop())
    waiter.join(10)
    assert got and len(got[0]) == 16 * KiB


def test_a_peer_never_holds_more_than_its_share_and_does_not_block_others():
    budget = BufferBudget(64 * KiB, peer_bytes_max=32 * KiB)
    hog = budget.acquire(32 * KiB, 1.0, peer="10.0.0.2")
    assert budget.acquire(4 * KiB, 0.05, peer="10.0.0.2") is None
    got: list = []
    blocked = threading.Thread(target=lambda: got.append(budget.acquire(4 * KiB, 10.0, peer="10.0.0.2")))
    blocked.start()
    time.sleep(0.05)
    # The hog's next request waits at the head of the queue, but only for its own share.
    other = budget.acquire(32 * KiB, 0.5, peer="10.0.0.3")
    assert other is not None and budget.peer_bytes("10.0.0.3") == 32 * KiB
    assert not got
    budget.release(hog, peer="10.0.0.2")
    blocked.join(10)
    assert got and got[0] is not None and budget.peer_bytes("10.0.0.2") == 4 * KiB


def test_waiters_are_served_in_arrival_order():
    budget = BufferBudget(64 * KiB)
    whole = budget.acquire(64 * KiB, 1.0)
    order: list[str] = []

    def take(name: str, nbytes: int) -> None:
        buffer = budget.acquire(nbytes, 10.0)
        order.append(name)
        time.sleep(0.05)
        budget.release(buffer)

    big = threading.Thread(target=take, args=("big", 64 * KiB))
    big.start()
    time.sleep(0.05)
    small = threading.Thread(target=take, args=("small", 4 * KiB))
    small.start()
    time.sleep(0.05)
    assert order == []            # the small one does not overtake the big one that came first
    budget.release(whole)
    big.join(10)
    small.join(10)
    assert order == ["big", "small"]


def test_bad_budgets_and_double_releases_are_refused():
    with pytest.raises(InvalidArgument):
        BufferBudget(1024)
    with pytest.raises(InvalidArgument):
        BufferBudget(64 * KiB, peer_bytes_max=128 * KiB)
    budget = BufferBudget(64 * KiB)
    buffer = budget.acquire(10, 1.0)
    budget.release(buffer)
    with pytest.raises(AssertionError):
        budget.release(buffer)


def test_under_contention_the_budget_is_never_exceeded(seed):
    """Eight threads from three peers acquire and release random sizes; the totals stay in bounds."""
    budget = BufferBudget(256 * KiB, peer_bytes_max=128 * KiB)
    violations: list[str] = []

    def worker(number: int) -> None:
        rng = random.Random(seed * 100 + number)
        peer = f"peer-{number % 3}"
        for _ in range(200):
            buffer = budget.acquire(rng.randint(1, 128 * KiB), 5.0, peer=peer)
            if buffer is None:
                continue
            if budget.held_bytes > budget.capacity_bytes:
                violations.append(f"{budget.held_bytes} bytes held")
            if budget.peer_bytes(peer) > budget.peer_bytes_max:
                violations.append(f"{peer} holds {budget.peer_bytes(peer)}")
            buffer[0] = number      # the buffer is this thread's alone while held
            budget.release(buffer, peer=peer)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not violations
    assert budget.in_use_bytes == 0 and budget.in_use_bytes_peak <= budget.capacity_bytes
