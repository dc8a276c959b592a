"""ResyncWorker pushes chunks with bounded parallelism (issue 13): never more than
pushes_in_flight at once, every key once, the first failure raised after the rest settle."""

from __future__ import annotations

import threading
import types

import pytest

from fireflyfs.common.errors import Unavailable
from fireflyfs.storage_service.resync import ResyncWorker


class CountingDriver:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.pushed: list[bytes] = []
        self.fail_on = fail_on
        self.release = threading.Event()

    def push(self, target, key, chain_id, successor) -> bool:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(0.02)        # long enough for the window to fill
            if key == self.fail_on:
                raise Unavailable(f"push of {key!r} failed")
            with self.lock:
                self.pushed.append(key)
            return True
        finally:
            with self.lock:
                self.running -= 1


def worker(driver, in_flight: int) -> ResyncWorker:
    return ResyncWorker(types.SimpleNamespace(id=101), 201, 1, routing=None, peers=None, driver=driver,
                        on_exit=lambda _: None, pushes_in_flight=in_flight)


@pytest.mark.parametrize("in_flight", [1, 3, 8])
def test_pushes_overlap_up_to_the_bound_and_each_key_goes_once(in_flight):
    driver = CountingDriver()
    keys = [bytes([n]) * 12 for n in range(20)]
    local = dict.fromkeys(keys[:15])            # the last five: removals (no local copy)
    resync = worker(driver, in_flight)
    assert resync._push_all(keys, local)
    assert sorted(driver.pushed) == sorted(keys) and driver.most == in_flight
    assert (resync.chunks_sent, resync.chunks_removed) == (15, 5)


def test_a_failed_push_fails_the_pass_after_the_others_settle():
    keys = [bytes([n]) * 12 for n in range(30)]
    driver = CountingDriver(fail_on=keys[4])
    resync = worker(driver, 4)
    with pytest.raises(Unavailable, match="failed"):
        resync._push_all(keys, dict.fromkeys(keys))
    assert driver.running == 0 and keys[4] not in driver.pushed
    assert len(driver.pushed) < len(keys) - 1          # no new pushes once one failed
    assert resync.chunks_sent == len(driver.pushed)
