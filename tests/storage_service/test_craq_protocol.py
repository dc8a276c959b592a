"""CRAQ protocol tests without sockets: storage_service.craq driven by the step simulation.

Goal: every acknowledged write survives a fail-stop of the head, a middle or
the tail at any point, with one or two concurrent writers; versions only
increase and are never skipped; all serving replicas end byte-identical; a
restarted replica resyncs and serves again.

Method: tests/storage_service/craq_sim.py runs one chain step by step over the
real cores (ChainOp, plan_sync, the storage node's local-state tracker, and
mgmtd's generate_new_chain). The exhaustive tests take the deterministic
schedule (always the first enabled event), count its steps, and kill each
replica before each step in turn (optionally restarting it a few steps later),
then run a quiet phase that must converge and check the monitors of
craq_monitors.py. The random tests draw every choice (chain length, writers,
schedule, kills, restarts, dropped and duplicated messages, partitions) from
one ``random.Random(seed)``; a failure names the seed and the one replay
command, ``FFS_SEED=<seed> .venv/bin/pytest '<file>::<test>' -s``, which runs
exactly that seed.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import replay_command, seeds_or

from .craq_monitors import check_all
from .craq_sim import Sim, WriteSpec

QUIET_STEPS_MAX = 20000
SLOT_BYTES = 4


def first(events) -> int:
    return 0


def make_plans(writers: int, writes: int, keys: int, rng: random.Random | None = None
               ) -> list[list[WriteSpec]]:
    """Writer w writes its own slots (slot % writers == w-1) of `keys` shared chunks; unique bytes."""
    plans = []
    for w in range(writers):
        plan = []
        for i in range(writes):
            key = b"k%d" % ((i if rng is None else rng.randrange(keys)) % keys)
            slots = [s for s in range(writers * 2) if s % writers == w]
            slot = slots[i % len(slots)] if rng is None else rng.choice(slots)
            plan.append(WriteSpec(key, slot, (b"%d.%d" % (w + 1, i)).ljust(SLOT_BYTES, b"_")[:SLOT_BYTES]))
        plans.append(plan)
    return plans


def baseline_steps(replicas: int, writers: int, writes: int) -> int:
    sim = Sim(replicas, make_plans(writers, writes, keys=1), SLOT_BYTES)
    sim.quiesce(QUIET_STEPS_MAX, first)
    check_all(sim, all_serving=True)
    return sim.steps


def run_with_kill(replicas: int, writers: int, writes: int, kill_step: int, victim_index: int,
                  restart_after: int | None) -> Sim:
    sim = Sim(replicas, make_plans(writers, writes, keys=1), SLOT_BYTES)
    victim = sorted(sim.replicas)[victim_index]
    for _ in range(kill_step):
        if not sim.step(first):
            break
    sim.kill(victim)
    if restart_after is not None:
        for _ in range(restart_after):
            if not sim.step(first):
                break
        sim.restart(victim)
    sim.quiesce(QUIET_STEPS_MAX, first)
    check_all(sim, all_serving=restart_after is not None)
    return sim


CASES = [(r, w) for r in (1, 2, 3) for w in (1, 2)]


@pytest.mark.parametrize("replicas,writers", CASES)
def test_no_failure_all_writes_commit_everywhere(replicas, writers):
    sim = Sim(replicas, make_plans(writers, 3, keys=1), SLOT_BYTES)
    sim.quiesce(QUIET_STEPS_MAX, first)
    check_all(sim, all_serving=True)
    versions = {c.commit_version for r in sim.replicas.values() for c in r.store.chunks.values()}
    assert versions == {3 * writers}, "one chunk, every write one version"


@pytest.mark.parametrize("replicas,writers", [(r, w) for r, w in CASES if r > 1])
def test_fail_stop_between_any_two_steps(replicas, writers):
    """Kill head, middle or tail before every step of the deterministic schedule; it stays dead."""
    steps = baseline_steps(replicas, writers, 2)
    runs = 0
    for kill_step in range(steps + 1):
        for victim in range(replicas):
            run_with_kill(replicas, writers, 2, kill_step, victim, restart_after=None)
            runs += 1
    assert runs == (steps + 1) * replicas


@pytest.mark.parametrize("replicas,writers", CASES)
def test_crash_restart_between_any_two_steps(replicas, writers):
    """Kill any replica before every step, restart it 3 steps later: it resyncs and serves again."""
    steps = baseline_steps(replicas, writers, 2)
    for kill_step in range(steps + 1):
        for victim in range(replicas):
            sim = run_with_kill(replicas, writers, 2, kill_step, victim, restart_after=3)
            assert all(r.alive for r in sim.replicas.values())


def test_two_fail_stops_at_any_two_steps():
    """Chain of 3, one writer: kill two different replicas at steps k1 <= k2 (every k1, every
    second k2); the first comes back 3 steps later, the second stays down."""
    steps = baseline_steps(3, 1, 2)
    runs = 0
    for k1 in range(steps + 1):
        for k2 in range(k1, steps + 1, 2):
            for first_victim in range(3):
                for second_victim in range(3):
                    if first_victim == second_victim:
                        continue
                    sim = Sim(3, make_plans(1, 2, keys=1), SLOT_BYTES)
                    victims = sorted(sim.replicas)
                    for step in range(k2 + 4):
                        if step == k1:
                            sim.kill(victims[first_victim])
                        if step == k1 + 3:
                            sim.restart(victims[first_victim])
                        if step == k2 and sim.replicas[victims[second_victim]].alive and \
                                sum(r.alive for r in sim.replicas.values()) > 1:
                            sim.kill(victims[second_victim])
                        sim.step(first)
                    sim.quiesce(QUIET_STEPS_MAX, first)
                    check_all(sim, all_serving=False)
                    runs += 1
    assert runs > steps * 6


def run_random(seed: int, steps_max: int = 400) -> Sim:
    """One seeded run: random chain length, writers, schedule, kills and restarts, then quiet."""
    rng = random.Random(seed)
    replicas = rng.randint(1, 3)
    writers = rng.randint(1, 2)
    writes = rng.randint(2, 6)
    keys = rng.randint(1, 3)
    kill_rate = rng.choice([0.01, 0.03, 0.08])
    restart = rng.random() < 0.7 or replicas == 1
    drop_rate = rng.choice([0.0, 0.01, 0.05])
    duplicate_rate = rng.choice([0.0, 0.01, 0.05])
    partition_rate = rng.choice([0.0, 0.0, 0.01, 0.03])
    params = dict(replicas=replicas, writers=writers, writes=writes, keys=keys, kill_rate=kill_rate,
                  restart=restart, drop_rate=drop_rate, duplicate_rate=duplicate_rate,
                  partition_rate=partition_rate)
    sim = Sim(replicas, make_plans(writers, writes, keys, rng), SLOT_BYTES)
    sim.trace = bool(os.environ.get("FFS_TRACE"))
    sim.params = params
    actors = [r.name for r in sim.replicas.values()] + [w.name for w in sim.writers]
    choose = lambda events: rng.randrange(len(events))  # noqa: E731
    for _ in range(steps_max):
        dead = [t for t, r in sim.replicas.items() if not r.alive]
        alive = [t for t, r in sim.replicas.items() if r.alive]
        if alive and rng.random() < kill_rate and (len(alive) > 1 or restart):
            sim.kill(rng.choice(alive))
        elif dead and restart and rng.random() < 0.05:
            sim.restart(rng.choice(dead))
        if sim.network and rng.random() < drop_rate:
            sim.drop(rng.choice(sim.network))
        if sim.network and rng.random() < duplicate_rate:
            sim.duplicate(rng.choice(sim.network))
        if rng.random() < partition_rate:
            sim.cut(*rng.sample(actors, 2))
        elif sim.cut_links and rng.random() < 0.05:
            sim.heal()
        if not sim.step(choose):
            if not any(not r.alive for r in sim.replicas.values()):
                break
    if restart:
        for target, replica in sim.replicas.items():
            if not replica.alive:
                sim.restart(target)
    try:
        sim.quiesce(QUIET_STEPS_MAX, choose)
        check_all(sim, all_serving=restart)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nparameters: {params}") from exc
    return sim


def _run_seeds(seeds, request) -> int:
    runs = 0
    for seed in seeds:
        try:
            run_random(seed)
        except AssertionError as exc:
            raise AssertionError(f"SEED={seed} failed: {exc}\n"
                                 f"replay: {replay_command(request.node.nodeid, seed)}") from exc
        runs += 1
    return runs


def test_random_faults_seeded(request):
    """1000 runs on the fixed seeds 1..1000, the same in every CI run (FFS_SEED: only that seed)."""
    assert _run_seeds(seeds_or(range(1, 1001)), request) >= 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_random_faults_many_seeds(request):
    """20,000 runs on fresh seeds, consecutive from one announced base (FFS_SEED: only that seed)."""
    base = random.SystemRandom().randrange(1 << 30)
    print(f"seeds {base}..{base + 19999}", flush=True)
    assert _run_seeds(seeds_or(range(base, base + 20000)), request) >= 1


def test_same_seed_same_run():
    """Replay works: a seed determines the whole run."""
    first_run, second_run = run_random(7), run_random(7)
    assert first_run.events == second_run.events and first_run.steps == second_run.steps
