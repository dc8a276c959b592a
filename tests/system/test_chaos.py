"""Chaos: storage nodes SIGKILLed and restarted under streaming writers; nothing acknowledged is lost.

Goal (issue 3, process level): on a local cluster of at least 4 storage nodes
with replication 3 and a 2 s heartbeat timeout, writers stream files while a
chaos loop SIGKILLs storage nodes and restarts them later, for several rounds.
Afterwards every acknowledged byte reads back, ``ffs admin fsck`` finds no
divergence and every target is SERVING again.

Method (TigerBeetle's VOPR, on real processes):
- One ``random.Random(seed)`` draws every parameter and every choice; the seed
  and all parameters are printed first, and a failure prints the command that
  replays the seed. (The interleaving of real processes is not replayable;
  the parameters, schedule, sizes and offsets are, and so are the victims as
  long as the cluster's states at each kill are the same.)
- Safety phase, ``rounds`` rounds. Each round lets the writer run, then kills:
  ``single`` one random storage node; ``double`` two nodes sharing a chain
  (that chain keeps one SERVING replica: we wait until mgmtd has moved the
  victims OFFLINE and then require the writers to acknowledge writes and verify
  reads while they are down); ``meta`` the metadata service; ``whole`` meta
  and every storage node at once. Killed processes are restarted after a
  random down time, sometimes before mgmtd even noticed (a new incarnation
  must resync anyway); sometimes the next round starts while nodes are still
  resyncing. A storage kill never takes a chain's last SERVING replica (a
  kill is chosen among nodes whose loss leaves every chain a SERVING member
  on a live node), so writes and reads must never stop for long; after every
  restart, too, writes and reads must go on.
- Each writer (one or two threads, each with its own clients and directory)
  mixes new files (FfsClient.write_file, fsspec "wb"),
  overwrites and appends (FfsClient pwrite at random offsets, possibly past
  the end; fsspec "ab"), truncates and removes, and re-reads random files. It
  records each operation in the model only after the call returned
  (acknowledged); any error or misread stops the test.
- Quiet phase (must converge within a bound): start whatever is down, wait
  until every target is SERVING, then a fresh client reads every file back
  and the namespace equals the model, the real ``ffs admin fsck URL --json``
  CLI (a subprocess) exits 0 reporting clean, and every target is SERVING.

The CI test runs four rounds (single, double, meta, whole cluster; 15-30 s). The full
run is ``FFS_SEED=<n> FFS_CHAOS_ROUNDS=<r> .venv/bin/pytest -m chaos
'tests/system/test_chaos.py::test_chaos_full' -s`` (no FFS_SEED: a fresh seed);
FFS_CHAOS_NODES sets the storage node count.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import fsspec
import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.common.limits import KiB
from fireflyfs.deploy.local_cluster import META, ClusterError, LocalCluster, log_tail, storage_role
from tests.conftest import announce_seed, seed_from_env

HEARTBEAT_TIMEOUT_MS = 2000
ROOT = "/chaos"
DETECT_S_MAX = 20.0            # a killed node's targets OFFLINE in routing (heartbeat timeout 2 s)
PROGRESS_S_MAX = 60.0          # writes and reads go on with two nodes of a chain down
SETTLE_S_MAX = 120.0           # every target SERVING again (a round's optional settle; the quiet phase)
FSCK_S_MAX = 180.0
WRITER_JOIN_S_MAX = 180.0
OPS_PER_ROUND_MAX = 100_000    # a bound on the writer's loop


@dataclasses.dataclass(frozen=True)
class ChaosParameters:
    """Everything a run depends on; all derived from the seed (rounds, nodes, schedule may be given)."""

    seed: int
    rounds: int
    schedule: tuple[str, ...]          # one kind per round: single, double, meta, whole
    storage_nodes: int
    targets_per_node: int
    chunk_size_bytes: int
    file_bytes_max: int                # a new file's size
    write_bytes_max: int               # one overwrite/append
    files_max: int                     # live files kept at most (then new writes replace)
    read_probability: float            # after each write, verify a random file
    writers: int                       # writer threads, each with its own client and directory
    run_s_max: float                   # writers alone before a round's kill
    down_s_max: float                  # how long victims stay down (0: restart at once)
    settle_probability: float          # wait for every target SERVING before the next round
    client_retry_time_s: float

    @classmethod
    def from_seed(cls, seed: int, rounds: int, storage_nodes: int | None = None,
                  schedule: tuple[str, ...] | None = None) -> "ChaosParameters":
        rng = random.Random(seed)
        if schedule is None:
            # The last round is always a whole-cluster kill: the restart scenario runs every time.
            kinds = ["single"] * 5 + ["double"] * 3 + ["meta"] + ["whole"]
            schedule = tuple(rng.choice(kinds) for _ in range(rounds - 1)) + ("whole",)
        assert len(schedule) == rounds and set(schedule) <= {"single", "double", "meta", "whole"}
        chunk_size_bytes = rng.choice((64, 64, 128)) * KiB   # the smallest chunk size allowed: more chunks, more chains
        return cls(
            seed=seed, rounds=rounds, schedule=schedule,
            storage_nodes=storage_nodes or rng.choice((4, 4, 5)),
            targets_per_node=3,
            chunk_size_bytes=chunk_size_bytes,
            file_bytes_max=rng.randint(2, 5) * chunk_size_bytes,
            write_bytes_max=rng.randint(1, 3) * chunk_size_bytes,
            files_max=rng.randint(12, 40),
            read_probability=rng.uniform(0.2, 0.5),
            writers=rng.choice((1, 2)),
            run_s_max=rng.uniform(0.5, 2.0),
            down_s_max=rng.uniform(1.0, 5.0),
            settle_probability=rng.uniform(0.3, 0.8),
            client_retry_time_s=120.0,
        )


class ChaosFailure(AssertionError):
    pass


class Writer(threading.Thread):
    """Seeded writes and verifying reads; the model holds exactly what was acknowledged."""

    def __init__(self, params: ChaosParameters, root: str, client: FfsClient, fs, rng: random.Random) -> None:
        super().__init__(name=f"chaos-writer-{root}", daemon=True)
        self.params, self.root, self.client, self.fs, self.rng = params, root, client, fs, rng
        self.files: dict[str, bytearray] = {}          # path -> acknowledged content
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.current: str = ""                          # the operation in flight
        self.recent: collections.deque[str] = collections.deque(maxlen=30)
        self.writes_acknowledged = 0
        self.reads_verified = 0
        self.bytes_acknowledged = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self._next_name = 0

    # ---- operations: each updates the model only after the call returned ----------

    def _new_path(self) -> str:
        self._next_name += 1
        return f"{self.root}/d{self.rng.randrange(4)}/f{self._next_name}"

    def _data(self, size_max: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, size_max))

    def _pick(self) -> str:
        return self.rng.choice(sorted(self.files))

    def op_new_file(self) -> tuple[str, int]:
        path = self._new_path() if len(self.files) < self.params.files_max else self._pick()
        data = self._data(self.params.file_bytes_max)
        self.current = f"write_file {path} ({len(data)} B)"
        self.client.write_file(path, data)
        self.files[path] = bytearray(data)
        return self.current, len(data)

    def op_fsspec_replace(self) -> tuple[str, int]:
        new = len(self.files) < self.params.files_max and self.rng.random() < 0.5
        path = self._new_path() if new else self._pick()
        parts = [self._data(self.params.write_bytes_max) for _ in range(self.rng.randint(1, 3))]
        self.current = f"fsspec wb {path} ({'+'.join(str(len(p)) for p in parts)} B)"
        with self.fs.open(path, "wb") as handle:
            for part in parts:
                handle.write(part)
        self.files[path] = bytearray(b"".join(parts))
        return self.current, sum(map(len, parts))

    def op_pwrite(self, append: bool) -> tuple[str, int]:
        path = self._pick()
        model = self.files[path]
        # Overwrites may start past the end: the gap must read back as zeros.
        offset = len(model) if append else self.rng.randint(0, len(model) + self.params.chunk_size_bytes // 2)
        data = self._data(self.params.write_bytes_max)
        self.current = f"{'pwrite-append' if append else 'pwrite'} {path} @{offset} ({len(data)} B, length {len(model)})"
        handle = self.client.open(path, write=True)
        try:
            self.client.pwrite(handle, offset, data)
        finally:
            self.client.close(handle, length_hint=offset + len(data))
        end = offset + len(data)
        if end > len(model):
            model.extend(bytes(end - len(model)))
        model[offset:end] = data
        return self.current, len(data)

    def op_fsspec_append(self) -> tuple[str, int]:
        path = self._pick()
        data = self._data(self.params.write_bytes_max)
        self.current = f"fsspec ab {path} ({len(data)} B at {len(self.files[path])})"
        with self.fs.open(path, "ab") as handle:
            handle.write(data)
        self.files[path].extend(data)
        return self.current, len(data)

    def op_truncate(self) -> tuple[str, int]:
        path = self._pick()
        model = self.files[path]
        length = self.rng.randint(0, len(model) + self.params.chunk_size_bytes)
        self.current = f"truncate {path} {len(model)} -> {length}"
        self.client.truncate(path, length)
        if length < len(model):
            del model[length:]
        else:
            model.extend(bytes(length - len(model)))
        return self.current, 0

    def op_remove(self) -> tuple[str, int]:
        path = self._pick()
        self.current = f"remove {path}"
        self.client.remove(path)
        del self.files[path]
        return self.current, 0

    def verify_read(self) -> None:
        path = self._pick()
        self.current = f"read {path} ({len(self.files[path])} B)"
        got = self.client.read_file(path) if self.rng.random() < 0.7 else self.fs.cat_file(path)
        want = bytes(self.files[path])
        if got != want:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise ChaosFailure(f"{path}: read {len(got)} B, acknowledged {len(want)} B; first difference at "
                               f"byte {first}")
        self.reads_verified += 1

    def step(self) -> None:
        if len(self.files) < 3:
            operation = self.op_new_file
        else:
            operation = self.rng.choices(
                (self.op_new_file, self.op_fsspec_replace, lambda: self.op_pwrite(False),
                 lambda: self.op_pwrite(True), self.op_fsspec_append, self.op_truncate, self.op_remove),
                weights=(20, 10, 30, 12, 12, 8, 8))[0]
        what, size = operation()
        self.recent.append(what)
        self.counts[what.split(" /")[0]] += 1
        self.writes_acknowledged += 1
        self.bytes_acknowledged += size
        if self.files and self.rng.random() < self.params.read_probability:
            self.verify_read()
        self.current = ""

    def run(self) -> None:
        try:
            for _ in range(OPS_PER_ROUND_MAX * max(1, self.params.rounds)):
                if self.stop.is_set():
                    return
                self.step()
        except BaseException as exc:  # reported by the main thread, with the operation in flight
            self.error = exc

    def check(self, when: str) -> None:
        if self.error is not None:
            raise ChaosFailure(f"{when}: writer {self.root} failed during {self.current!r}: "
                               f"{type(self.error).__name__}: {self.error}\nlast operations: "
                               f"{list(self.recent)[-10:]}") from self.error


class Writers:
    """The writer threads seen as one: summed counters, merged models, the first error."""

    def __init__(self, writers: list[Writer]) -> None:
        self.all = writers

    @property
    def writes_acknowledged(self) -> int:
        return sum(w.writes_acknowledged for w in self.all)

    @property
    def reads_verified(self) -> int:
        return sum(w.reads_verified for w in self.all)

    @property
    def bytes_acknowledged(self) -> int:
        return sum(w.bytes_acknowledged for w in self.all)

    @property
    def files(self) -> dict[str, bytearray]:
        return {path: data for w in self.all for path, data in w.files.items()}

    @property
    def counts(self) -> collections.Counter[str]:
        return sum((w.counts for w in self.all), collections.Counter())

    @property
    def current(self) -> str:
        return "; ".join(f"{w.root}: {w.current or '-'}" for w in self.all)

    def recent(self) -> list[str]:
        return [f"{w.root}: {op}" for w in self.all for op in list(w.recent)[-6:]]

    def check(self, when: str) -> None:
        for w in self.all:
            w.check(when)

    def start(self) -> None:
        for w in self.all:
            w.start()

    def stop(self, timeout_s: float) -> None:
        for w in self.all:
            w.stop.set()
        deadline = time.monotonic() + timeout_s
        for w in self.all:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in self.all):
            raise ChaosFailure(f"the writers did not stop within {timeout_s:.0f}s; in flight: {self.current}")


class Chaos:
    """The kill/restart loop and the quiet phase over one LocalCluster."""

    def __init__(self, params: ChaosParameters, cluster: LocalCluster, rng: random.Random) -> None:
        self.params, self.cluster, self.rng = params, cluster, rng
        self.kills: collections.Counter[str] = collections.Counter()
        self.log: list[str] = []

    def say(self, line: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {line}"
        self.log.append(line)
        print(line, flush=True)

    def nodes(self) -> list[int]:
        return list(range(1, self.params.storage_nodes + 1))

    def safe_to_kill(self, victims: set[int]) -> bool:
        """Every chain keeps a SERVING member on a node outside victims (all other nodes are up)."""
        chains = self.cluster.chain_states()
        return all(any(state == "SERVING" and target // 100 not in victims for target, state in members)
                   for members in chains.values())

    def share_a_chain(self, a: int, b: int) -> bool:
        return any({a, b} <= {t // 100 for t, _ in members} for members in self.cluster.chain_states().values())

    def choose_storage_victims(self, kind: str) -> list[int]:
        """Victims for a single or double kill, drawn from the rng; [] when no kill is safe now."""
        order = self.nodes()
        self.rng.shuffle(order)
        firsts = [n for n in order if self.safe_to_kill({n})]
        if not firsts:
            return []
        if kind == "single":
            return [firsts[0]]
        for first in firsts:
            for second in order:
                if second != first and self.share_a_chain(first, second) and self.safe_to_kill({first, second}):
                    return [first, second]
        return []

    def wait_offline(self, victims: list[int]) -> None:
        deadline = time.monotonic() + DETECT_S_MAX
        while True:
            chains = self.cluster.chain_states()
            states = {t: s for members in chains.values() for t, s in members}
            if all(s == "OFFLINE" for t, s in states.items() if t // 100 in victims):
                return
            if time.monotonic() > deadline:
                raise ChaosFailure(f"nodes {victims} not OFFLINE {DETECT_S_MAX:.0f}s after SIGKILL: {chains}")
            time.sleep(0.1)

    def wait_progress(self, writers: Writers, what: str) -> tuple[int, int]:
        """Writes and reads go on: at least 2 acknowledged writes and 1 verified read from now."""
        writes, reads = writers.writes_acknowledged, writers.reads_verified
        deadline = time.monotonic() + PROGRESS_S_MAX
        while writers.writes_acknowledged < writes + 2 or writers.reads_verified < reads + 1:
            writers.check(what)
            if time.monotonic() > deadline:
                raise ChaosFailure(f"{what}: no progress in {PROGRESS_S_MAX:.0f}s (writes {writes} -> "
                                   f"{writers.writes_acknowledged}, reads {reads} -> {writers.reads_verified}; "
                                   f"in flight: {writers.current}); chains {self.cluster.chain_states()}")
            time.sleep(0.05)
        return writers.writes_acknowledged - writes, writers.reads_verified - reads

    def round(self, number: int, kind: str, writers: Writers) -> None:
        time.sleep(self.rng.uniform(0.1, self.params.run_s_max))
        writers.check(f"round {number}")
        down_s = self.rng.uniform(0.0, self.params.down_s_max)
        settle = self.rng.random() < self.params.settle_probability
        if kind in ("single", "double"):
            victims = self.choose_storage_victims(kind)
            if not victims or (kind == "double" and len(victims) < 2):
                self.say(f"round {number}: no safe {kind} kill now (nodes resyncing); waiting for SERVING")
                self.cluster.wait_all_serving(timeout_s=SETTLE_S_MAX)
                victims = self.choose_storage_victims(kind)
            assert victims, f"round {number}: no safe victims although every target is SERVING"
            roles = [storage_role(n) for n in victims]
        elif kind == "meta":
            roles = [META]
        else:
            roles = [META] + [storage_role(n) for n in self.nodes()]
        self.say(f"round {number}: {kind}: SIGKILL {', '.join(roles)}; down {down_s:.2f}s; "
                 f"{'settle' if settle else 'no settle'} (writes so far {writers.writes_acknowledged})")
        for role in roles:
            self.cluster.kill(role, signal.SIGKILL)
        self.kills.update(roles)
        if kind == "double":
            # Both OFFLINE: a chain they share now has one replica left, which must carry on.
            self.wait_offline(victims)
            writes, reads = self.wait_progress(writers, f"round {number}: nodes {victims} down")
            self.say(f"round {number}: with nodes {victims} down: {writes} writes, {reads} reads went on")
        else:
            time.sleep(down_s)
        writers.check(f"round {number}, while down")
        started = time.monotonic()
        self.cluster.up()
        self.say(f"round {number}: restarted in {time.monotonic() - started:.1f}s; chains "
                 f"{compact(self.cluster.chain_states())}")
        writes, reads = self.wait_progress(writers, f"round {number}: after the restart")
        self.say(f"round {number}: after the restart {writes} writes, {reads} reads went on")
        if settle:
            started = time.monotonic()
            self.cluster.wait_all_serving(timeout_s=SETTLE_S_MAX)
            self.say(f"round {number}: every target SERVING after {time.monotonic() - started:.1f}s")
        writers.check(f"round {number}, after restart")


def compact(chains: dict[int, list[tuple[int, str]]]) -> str:
    return " ".join(f"{cid}:[{','.join(f'{t}={s[:4]}' for t, s in members)}]" for cid, members in chains.items())


def run_fsck(url: str) -> tuple[int, dict, str]:
    """The real CLI in a subprocess: (exit code, its JSON report, stderr)."""
    command = [sys.executable, "-m", "fireflyfs.cli.main", "admin", "fsck", url, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=FSCK_S_MAX)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {"unparsed stdout": result.stdout[-2000:]}
    return result.returncode, report, result.stderr[-2000:]


def quiet_phase(chaos: Chaos, writers: Writers) -> dict:
    cluster = chaos.cluster
    started = time.monotonic()
    cluster.up()                                    # whatever is down comes back
    chains = cluster.wait_all_serving(timeout_s=SETTLE_S_MAX)
    chaos.say(f"quiet: every target SERVING after {time.monotonic() - started:.1f}s: {compact(chains)}")

    fresh = FfsClient(cluster.meta_address)
    found = {entry.path for entry in fresh.find(ROOT)}
    if found != set(writers.files):
        raise ChaosFailure(f"namespace differs from the acknowledged one: missing "
                           f"{sorted(set(writers.files) - found)[:10]}, unexpected {sorted(found - set(writers.files))[:10]}")
    for path, model in sorted(writers.files.items()):
        got = fresh.read_file(path)
        if got != bytes(model):
            raise ChaosFailure(f"{path}: read {len(got)} B, acknowledged {len(model)} B "
                               f"(equal prefix {os.path.commonprefix([got, bytes(model)]).__len__()} B)")
    live_bytes = sum(map(len, writers.files.values()))
    chaos.say(f"quiet: {len(writers.files)} files, {live_bytes} B read back exactly")

    code, report, stderr = run_fsck(cluster.url)
    if code != 0 or not report.get("clean"):
        raise ChaosFailure(f"ffs admin fsck exited {code}: {json.dumps(report)[:3000]}\n{stderr}")
    chaos.say(f"quiet: fsck clean ({report['chains_checked']} chains, {report['replicas_checked']} replicas, "
              f"{report['chunks_checked']} chunk copies)")
    chains = cluster.chain_states()
    if any(state != "SERVING" for members in chains.values() for _, state in members):
        raise ChaosFailure(f"not every target SERVING after fsck: {chains}")
    return {"files": len(writers.files), "live_bytes": live_bytes, "chunk_copies": report["chunks_checked"]}


def run_chaos(base_dir, params: ChaosParameters, replay: str, monkeypatch) -> dict:
    for field in dataclasses.fields(params):
        print(f"  {field.name}={getattr(params, field.name)}", flush=True)
    rng = random.Random(params.seed)
    # Both client kinds (FfsClient and fsspec's) read their retry budget from the environment.
    monkeypatch.setenv("FFS_CLIENT_RETRY_TIME_S", str(params.client_retry_time_s))
    monkeypatch.setenv("FFS_CLIENT_META_RETRY_TIME_S", str(params.client_retry_time_s))
    started = time.monotonic()
    cluster = LocalCluster(base_dir, storage_nodes=params.storage_nodes, targets_per_node=params.targets_per_node,
                           replicas=3, heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS, python=sys.executable)
    writers = None
    try:
        cluster.up()
        cluster.wait_all_serving(timeout_s=SETTLE_S_MAX)
        chaos = Chaos(params, cluster, random.Random(rng.getrandbits(64)))
        chaos.say(f"cluster up: {compact(cluster.chain_states())}")
        client = FfsClient(cluster.meta_address)
        client.mkdir(ROOT, chunk_size=params.chunk_size_bytes)
        threads = []
        for number in range(params.writers):
            fs = fsspec.filesystem("ffs", host=cluster.host, port=cluster.port, skip_instance_cache=True)
            threads.append(Writer(params, f"{ROOT}/w{number}", FfsClient(cluster.meta_address), fs,
                                  random.Random(rng.getrandbits(64))))
        writers = Writers(threads)
        writers.start()
        for number, kind in enumerate(params.schedule):
            chaos.round(number, kind, writers)
        time.sleep(chaos.rng.uniform(0.2, params.run_s_max))   # a last stretch of writes after the last restart
        writers.stop(WRITER_JOIN_S_MAX)
        writers.check("end of the safety phase")
        result = quiet_phase(chaos, writers)
        result.update(seed=params.seed, rounds=params.rounds, kills=dict(chaos.kills),
                      writes_acknowledged=writers.writes_acknowledged, reads_verified=writers.reads_verified,
                      bytes_acknowledged=writers.bytes_acknowledged, operations=dict(writers.counts),
                      duration_s=round(time.monotonic() - started, 1))
        print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
        return result
    except BaseException:
        if writers is not None:
            for w in writers.all:
                w.stop.set()
            print(f"writers: {writers.writes_acknowledged} writes acknowledged, in flight {writers.current}; "
                  f"last operations: {writers.recent()}", flush=True)
        for role in cluster.roles():
            print(f"--- last lines of {cluster.log_file(role)}:\n{log_tail(cluster.log_file(role), 15)}", flush=True)
        print(f"FAILED with SEED={params.seed}; replay: {replay}", flush=True)
        raise
    finally:
        try:
            cluster.down()
        except ClusterError as exc:
            print(f"cluster down: {exc}", flush=True)
        if writers is not None:
            for w in writers.all:
                w.join(timeout=30)


def test_chaos_single_double_and_whole_cluster_kills(tmp_path, monkeypatch, request):
    """CI: one round of each failure kind (one node, two of a chain, meta, everything) and the quiet phase."""
    seed = seed_from_env()
    params = ChaosParameters.from_seed(seed, rounds=4, storage_nodes=4,
                                       schedule=("single", "double", "meta", "whole"))
    params = dataclasses.replace(params, run_s_max=min(params.run_s_max, 1.0), down_s_max=min(params.down_s_max, 2.5),
                                 settle_probability=0.0, writers=2)
    replay = announce_seed(request, seed)
    result = run_chaos(tmp_path / "cluster", params, replay, monkeypatch)
    assert result["writes_acknowledged"] > params.rounds
    assert result["kills"].get(META) == 2 and sum(result["kills"].values()) == 1 + 2 + 1 + 1 + params.storage_nodes


@pytest.mark.chaos
@pytest.mark.slow            # a -m on the command line replaces addopts' "not chaos"; "not slow" still skips it
@pytest.mark.timeout(3600)
def test_chaos_full(tmp_path, monkeypatch, request):
    """On demand: many rounds (FFS_CHAOS_ROUNDS, default 20) of kinds drawn from the seed."""
    seed = seed_from_env()
    rounds = int(os.environ.get("FFS_CHAOS_ROUNDS", "20"))
    nodes = int(os.environ.get("FFS_CHAOS_NODES", "0")) or None
    assert rounds >= 1 and (nodes is None or nodes >= 4)
    params = ChaosParameters.from_seed(seed, rounds=rounds, storage_nodes=nodes)
    env = {"FFS_CHAOS_ROUNDS": rounds, **({"FFS_CHAOS_NODES": nodes} if nodes else {})}
    replay = announce_seed(request, seed, env, args="-m chaos")
    result = run_chaos(tmp_path / "cluster", params, replay, monkeypatch)
    assert result["writes_acknowledged"] > params.rounds
