"""Scrub: every committed chunk re-verified in passes, at the configured rate, bad ones handed to repair.

Method: real targets (chunk engines on disk) with chunks of seeded sizes; the
Scrubber runs passes on a fake clock whose sleep advances time, so the rate
limit is checked as arithmetic (time slept against bytes verified), never by
wall-clock speed. Rot is a byte flipped in a chunk file on disk.
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common.limits import KiB
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.craq import UpdateKind
from fireflyfs.storage_service.repair import RepairSource
from fireflyfs.storage_service.scrub import Scrubber
from fireflyfs.storage_service.target import Target

from tests.client.in_process import FakeClock

BLOCK = 4 * KiB
CHUNK_SIZE = 64 * KiB


@pytest.fixture
def targets(tmp_path):
    made = {target_id: Target(target_id, tmp_path / f"target-{target_id}", block_size=BLOCK)
            for target_id in (101, 102)}
    yield made
    for target in made.values():
        target.close()


def fill(targets: dict[int, Target], rng: random.Random, chunks: int) -> int:
    """Chunks of random sizes on random targets; the bytes stored."""
    stored = 0
    for index in range(chunks):
        target = targets[rng.choice(sorted(targets))]
        data = rng.randbytes(rng.randrange(1, CHUNK_SIZE + 1))
        target.engine.write(chunk_key(7, index), 0, data, CHUNK_SIZE, chain_version=1)
        stored += len(data)
    return stored


def test_a_pass_verifies_every_chunk_at_the_configured_rate(targets, seed):
    rng = random.Random(seed)
    stored = fill(targets, rng, 40)
    clock = FakeClock()
    rate, burst = 100 * KiB, 16 * KiB
    offered = []
    scrubber = Scrubber(targets, lambda *args: offered.append(args) or True, rate, clock=clock,
                        wall_clock=lambda: 1_000_000.0 + clock(), sleep=clock.sleep, page_chunks=7,
                        burst_bytes=burst)

    assert scrubber.run_pass()

    progress = scrubber.snapshot()
    assert sum(p.pass_bytes_checked for p in progress.values()) == stored
    assert sum(p.pass_chunks_checked for p in progress.values()) == 40
    assert all(p.passes_completed == 1 and p.pass_started_s == 0.0 for p in progress.values())
    assert all(p.pass_bytes_checked == targets[t].space().used_bytes == p.pass_bytes_total
               for t, p in progress.items())
    assert offered == [], "nothing rotten, nothing offered"
    # The bucket lets `burst` through at once and then `rate` per second: the time slept is what the
    # bytes cost, less at most the burst (and the last chunk is read right after its wait).
    slept = sum(clock.sleeps)
    assert (stored - burst) / rate - 1e-6 <= slept <= stored / rate + 1e-6
    ends = [p.last_pass_ended_s for p in progress.values()]
    assert all(1_000_000.0 < end <= 1_000_000.0 + slept for end in ends)


def test_a_debt_longer_than_one_wait_is_paid_in_full(targets):
    """A chunk far larger than a second's worth: the next chunk waits the whole debt, not a capped part."""
    targets[101].engine.write(chunk_key(1, 0), 0, bytes(CHUNK_SIZE), CHUNK_SIZE, chain_version=1)
    targets[101].engine.write(chunk_key(1, 1), 0, bytes(CHUNK_SIZE), CHUNK_SIZE, chain_version=1)
    clock = FakeClock()
    scrubber = Scrubber({101: targets[101]}, lambda *args: True, bytes_per_s=1024, clock=clock,
                        sleep=clock.sleep, burst_bytes=1)
    assert scrubber.run_pass()
    assert sum(clock.sleeps) >= (2 * CHUNK_SIZE - 1) / 1024 - 1e-6 and sum(clock.sleeps) > 64


def test_rotten_chunks_go_to_repair_and_pending_ones_are_skipped(targets, seed):
    rng = random.Random(seed)
    fill(targets, rng, 12)
    target = targets[101]
    keys = [key for key, _ in target.engine.metas_after(None, 100)]
    assert keys, "the seed put chunks on target 101"
    rotten = rng.choice(keys)
    meta = target.engine.get_meta(rotten)
    position = rng.randrange(meta.length)
    with open(target.engine._path(rotten, meta.file_version), "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x5A]))
    target.engine.stage(chunk_key(8, 0), UpdateKind.WRITE, 1, 1, CHUNK_SIZE, commit=False, data=b"pending")
    offered = []
    clock = FakeClock()
    scrubber = Scrubber(targets, lambda *args: offered.append(args) or True, 10 * 1024 * KiB, clock=clock,
                        sleep=clock.sleep)
    assert scrubber.run_pass()
    assert offered == [(101, rotten, RepairSource.SCRUB)]
    assert scrubber.snapshot()[101].pass_chunks_checked == len(keys), "the pending chunk is not verified"


def test_a_stopped_scrub_leaves_its_pass_unfinished(targets, seed):
    fill(targets, random.Random(seed), 10)
    clock = FakeClock()
    scrubber = Scrubber(targets, lambda *args: True, 1024, clock=clock, sleep=lambda s: scrubber.stop(),
                        burst_bytes=1)
    assert not scrubber.run_pass()
    unfinished = [p for p in scrubber.snapshot().values() if p.passes_completed == 0]
    assert unfinished and unfinished[0].pass_started_s > 0, "the target it stopped on shows its pass running"


def test_a_rate_of_zero_is_refused(targets):
    with pytest.raises(ValueError):
        Scrubber(targets, lambda *args: True, 0)
