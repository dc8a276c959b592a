"""Metadata that outlives its host: etcd members, meta servers and the mgmtd primary SIGKILLed mid-workload.

Issue 11's "must hold": on a 3-member etcd cluster with 2 meta servers, a
seeded writer and reader run while, in turn, one etcd member, one meta
server and then the mgmtd primary are SIGKILLed (each restarted later).
No acknowledged write is lost, the workload never sees a non-retryable
error, and after each kill a mutation succeeds again within the heartbeat
timeout plus a few seconds.

The CI run does one round of the three kills; ``FFS_META_FAILOVER_ROUNDS=N
.venv/bin/pytest -m slow tests/system/test_meta_failover.py -s`` repeats the
sequence N times (victims drawn from the seed).
"""

from __future__ import annotations

import os
import random
import threading
import time

import fsspec
import pytest

from fireflyfs.deploy.local_cluster import LocalCluster
from tests.conftest import announce_seed, require_etcd, seed_from_env

HEARTBEAT_TIMEOUT_MS = 3000
RESUME_S_MAX = HEARTBEAT_TIMEOUT_MS / 1000 + 8     # "the heartbeat timeout plus a few seconds"
DOWN_S = 2.0                                       # how long a victim stays dead before its restart


class Workload:
    """A writer of seeded files and a reader of the acknowledged ones, each on its own fsspec handle."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.url = url
        self.acknowledged: dict[str, bytes] = {}
        self.errors: list[str] = []
        self.last_write_s = time.monotonic()
        self._sizes = random.Random(rng.getrandbits(64))
        self._picks = random.Random(rng.getrandbits(64))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._write, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]

    def _fs(self):
        return fsspec.filesystem("ffs", addresses=self.url[len("ffs://"):], skip_instance_cache=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _write(self) -> None:
        fs = self._fs()
        number = 0
        while not self._stop.is_set():
            path = f"/failover/f{number:06d}"
            data = self._sizes.randbytes(self._sizes.choice((100, 3000, 70_000, 300_000)))
            try:
                fs.pipe_file(path, data)
            except Exception as exc:   # noqa: BLE001 - any error is the test's failure
                self.errors.append(f"write {path}: {type(exc).__name__}: {exc}")
                return
            with self._lock:
                self.acknowledged[path] = data
            self.last_write_s = time.monotonic()
            number += 1

    def _read(self) -> None:
        fs = self._fs()
        while not self._stop.is_set():
            with self._lock:
                paths = list(self.acknowledged)
            if not paths:
                time.sleep(0.05)
                continue
            path = self._picks.choice(paths)
            try:
                got = fs.cat_file(path)
            except Exception as exc:   # noqa: BLE001
                self.errors.append(f"read {path}: {type(exc).__name__}: {exc}")
                return
            if got != self.acknowledged[path]:
                self.errors.append(f"read {path}: {len(got)} bytes differ from the acknowledged write")
                return

    def writes_resume_after(self, killed_s: float) -> float:
        """Seconds from the kill to the first acknowledged write after it (fails past RESUME_S_MAX)."""
        deadline = killed_s + RESUME_S_MAX
        while time.monotonic() < deadline and not self.errors:
            if self.last_write_s > killed_s + 0.2:
                return self.last_write_s - killed_s
            time.sleep(0.05)
        raise AssertionError(f"no write acknowledged within {RESUME_S_MAX} s of the kill; errors: "
                             f"{self.errors[:3]}")


def primary_role(cluster: LocalCluster) -> str:
    routing = cluster.routing()
    address = next(node.address for node in routing.nodes if node.id == routing.mgmtd_primary_id)
    return cluster.meta_roles()[cluster.meta_addresses.index(address)]


def run_rounds(tmp_path, request, rounds: int) -> None:
    require_etcd()
    seed = seed_from_env()
    announce_seed(request, seed, {"FFS_META_FAILOVER_ROUNDS": rounds})
    rng = random.Random(seed)
    cluster = LocalCluster(tmp_path / "c", storage_nodes=2, targets_per_node=1, replicas=2,
                           heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS, meta_engine="etcd", etcd_members=3,
                           meta_servers=2)
    try:
        url = cluster.up()
        workload = Workload(url, rng)
        workload.start()
        resumed = {}
        try:
            time.sleep(1.0)
            for round_number in range(rounds):
                standby = next(r for r in cluster.meta_roles() if r != primary_role(cluster))
                for kind, victim in (("etcd member", rng.choice(cluster.etcd_roles())),
                                     ("meta server", standby),
                                     ("mgmtd primary", primary_role(cluster))):
                    killed_s = time.monotonic()
                    cluster.kill(victim)
                    resumed[f"{round_number}:{kind}"] = workload.writes_resume_after(killed_s)
                    time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed_s)))
                    cluster.up()                     # restarts what is down
                    time.sleep(1.0)
                    assert not workload.errors, workload.errors[:3]
            print("seconds from kill to the next acknowledged write:", resumed)
        finally:
            workload.stop()
        assert not workload.errors, workload.errors[:3]
        assert len(workload.acknowledged) > 10
        fs = fsspec.filesystem("ffs", addresses=url[len("ffs://"):], skip_instance_cache=True)
        lost = [path for path, data in workload.acknowledged.items() if fs.cat_file(path) != data]
        assert lost == [], f"{len(lost)} acknowledged files differ or are gone: {lost[:5]}"
        routing = cluster.routing()
        assert routing.mgmtd_primary_id, "a primary is elected again"
    finally:
        cluster.down()


def test_etcd_member_meta_server_and_primary_kills_lose_nothing(tmp_path, request):
    run_rounds(tmp_path, request, rounds=1)


@pytest.mark.slow
def test_meta_failover_soak(tmp_path, request):
    run_rounds(tmp_path, request, rounds=int(os.environ.get("FFS_META_FAILOVER_ROUNDS", "5")))
