"""Growing and shrinking a cluster while a seeded reader and writer run (issue 14, item 3).

3 storage nodes, data written; 3 more nodes join and ``ffs admin rebalance
--wait`` moves replicas onto them through the normal resync while a writer
adds files and a reader checks random acknowledged ones. Neither may see an
error; afterwards every byte reads back from a fresh client, every node holds
a fair share of the replicas (the spread is printed), ``ffs admin fsck`` is
clean and the retired replicas' chunks are gone. Then one of the first nodes
is drained, stopped and removed the same way.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import fsspec

from fireflyfs.client.client import FfsClient
from fireflyfs.proto import types_pb2
from tests.conftest import SESSION_ADMIN_TOKEN, announce_seed, seed_from_env
from tests.storage_service.test_node import wait_for as wait_until
from tests.system.test_chaos import run_fsck

WAIT_S_MAX = 180.0


def ffs_cli(*args: str, timeout: float = WAIT_S_MAX + 30) -> tuple[int, dict | str, str]:
    result = subprocess.run([sys.executable, "-m", "fireflyfs.cli.main", *args], capture_output=True,
                            text=True, timeout=timeout)
    try:
        out = json.loads(result.stdout)
    except ValueError:
        out = result.stdout
    return result.returncode, out, result.stderr[-3000:]


class Traffic:
    """A writer adding files and a reader checking acknowledged ones, both seeded; errors kept."""

    def __init__(self, fs, seed: int, root: str, model: dict[str, bytes]) -> None:
        self.fs, self.root, self.model = fs, root, model
        self.rng_writer, self.rng_reader = random.Random(seed), random.Random(seed + 1)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.writes = self.reads = 0
        self.threads = [threading.Thread(target=self._loop, args=(self._write,), daemon=True),
                        threading.Thread(target=self._loop, args=(self._read,), daemon=True)]

    def _loop(self, step) -> None:
        while not self.stop.is_set():
            try:
                step()
            except Exception as exc:  # every error is a failure of the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return

    def _write(self) -> None:
        path = f"{self.root}/w{self.writes:05d}"
        data = self.rng_writer.randbytes(self.rng_writer.randint(1, 3 << 20))
        self.fs.pipe_file(path, data)
        with self.lock:
            self.model[path] = data
        self.writes += 1

    def _read(self) -> None:
        with self.lock:
            path = self.rng_reader.choice(sorted(self.model))
            want = self.model[path]
        start = self.rng_reader.randrange(len(want))
        got = self.fs.cat_file(path, start, start + (1 << 20))
        if got != want[start:start + (1 << 20)]:
            raise AssertionError(f"{path}[{start}:] read {len(got)} bytes that differ from what was written")
        self.reads += 1

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def spread(cluster) -> dict[int, tuple[int, int]]:
    """node -> (replicas, used bytes) from routing."""
    routing = cluster.routing()
    rows = {n.id: [0, 0] for n in routing.nodes if n.type == types_pb2.NODE_STORAGE}
    for target in routing.targets:
        rows[target.node_id][1] += target.used_bytes
        rows[target.node_id][0] += bool(target.chain_id)
    return {node: tuple(row) for node, row in sorted(rows.items())}


def check_every_byte(cluster, model: dict[str, bytes]) -> None:
    fresh = FfsClient(cluster.meta_address)
    try:
        for path, data in model.items():
            assert fresh.read_file(path) == data, f"{path} reads back different bytes"
    finally:
        fresh.close_connections()


def wait_for(predicate, what: str, timeout_s: float = 60.0):
    return wait_until(predicate, timeout_s=timeout_s, what=what)


def three_nodes_with_data(make_cluster, request, root: str, files: int, size_max: int):
    """A 3-node cluster (3 replicas) holding seeded files: (cluster, fsspec fs, model, seed)."""
    seed = seed_from_env()
    announce_seed(request, seed)
    rng = random.Random(seed)
    cluster = make_cluster(storage_nodes=3, replicas=3, heartbeat_timeout_ms=2000)
    fs = fsspec.filesystem("ffs", addresses=cluster.meta_address, token=SESSION_ADMIN_TOKEN,
                           skip_instance_cache=True)
    model: dict[str, bytes] = {}
    for i in range(files):
        data = rng.randbytes(rng.randint(1, size_max))
        fs.pipe_file(f"{root}/f{i}", data)
        model[f"{root}/f{i}"] = data
    return cluster, fs, model, seed


def test_grow_rebalance_then_drain_and_remove_under_traffic(make_cluster, request, capsys):
    cluster, fs, model, seed = three_nodes_with_data(make_cluster, request, "/grow", 8, 4 << 20)
    url = cluster.url
    before = spread(cluster)

    cluster.storage_nodes = 6          # three more nodes join; their targets are in no chain yet
    cluster.up()
    assert all(spread(cluster)[node][0] == 0 for node in (4, 5, 6))

    with Traffic(fs, seed, "/grow", model) as traffic:
        code, out, err = ffs_cli("admin", "rebalance", url, "--moves-in-flight", "2", "--wait",
                                 "--wait-timeout", str(WAIT_S_MAX), "--json")
        assert code == 0, err
        wait_for(lambda: traffic.errors or (traffic.writes >= 3 and traffic.reads >= 3), "traffic")
    assert not traffic.errors, traffic.errors
    assert out["planned"] and out["pending"] == []
    after = spread(cluster)
    with capsys.disabled():
        print(f"\nspread (node: replicas, bytes) before {before}\n  after rebalance {after}; "
              f"{len(out['planned'])} moves, {traffic.writes} writes and {traffic.reads} reads during them")
    replicas = [count for count, _ in after.values()]
    assert max(replicas) - min(replicas) <= 1 and min(replicas) >= 1, after
    assert all(after[node][1] > 0 for node in (4, 5, 6)), after
    chains = cluster.wait_all_serving(timeout_s=60)
    assert all(len(members) == 3 for members in chains.values()), chains
    check_every_byte(cluster, model)
    code, report, err = run_fsck(url)
    assert code == 0, (report, err)
    # the replicas moved away are deleted by their nodes, which frees their targets
    wait_for(lambda: not any(t.retired for t in cluster.routing().targets), "retired targets emptied")

    # Drain one of the first nodes, stop it, remove it.
    code, out, err = ffs_cli("admin", "node", "drain", url, "1", "--wait", "--wait-timeout", str(WAIT_S_MAX),
                             "--json")
    assert code == 0, err
    assert out["spread"][0]["node"] == 1 and out["spread"][0]["replicas"] == 0, out["spread"]
    cluster.kill(1)
    code, _, err = ffs_cli("admin", "node", "remove", url, "1")
    assert code == 1 and "still heartbeats" in err, err
    code, out, err = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(
        ffs_cli("admin", "node", "remove", url, "1", "--json")), "node 1 removable", timeout_s=30)
    assert sorted(out["targets"]) == [101, 102]
    routing = cluster.routing()
    assert 1 not in {n.id for n in routing.nodes} and not any(t.node_id == 1 for t in routing.targets)
    chains = cluster.wait_all_serving(timeout_s=60)
    assert all(len(members) == 3 for members in chains.values()), chains
    check_every_byte(cluster, model)
    code, report, err = run_fsck(url)
    assert code == 0, (report, err)


def test_nodes_dying_mid_move_lose_nothing(make_cluster, request):
    """The node receiving a replica and the node giving it up are both SIGKILLed right after the
    move starts, under traffic; once they are back the move completes and nothing is lost."""
    cluster, fs, model, seed = three_nodes_with_data(make_cluster, request, "/mid", 6, 6 << 20)
    url = cluster.url
    cluster.storage_nodes = 5
    cluster.up()

    with Traffic(fs, seed, "/mid", model) as traffic:
        code, out, err = ffs_cli("admin", "rebalance", url, "--json")
        assert code == 0, err
        first = out["planned"][0]
        receiver, giver = first["to_target"] // 100, first["from_target"] // 100
        cluster.kill(receiver)
        cluster.kill(giver)
        moving = cluster.routing().moves
        assert moving and moving[0].to_target == first["to_target"], "the move waits for its new replica"
        code, status, err = ffs_cli("status", url, "--json")
        assert code in (0, 1), err        # degraded once mgmtd sees the nodes gone; never unavailable
        assert {(m["chain"], m["to_target"]) for m in status["moves"]} >= {(first["chain"], first["to_target"])}
        time.sleep(4)                    # past the heartbeat timeout: both nodes' targets go offline
        cluster.up()                     # both come back (new incarnations: they resync)
        wait_for(lambda: traffic.errors or not cluster.routing().moves, "the moves to finish", WAIT_S_MAX)
    assert not traffic.errors, traffic.errors
    assert traffic.writes and traffic.reads
    chains = cluster.wait_all_serving(timeout_s=120)
    assert all(len(members) == 3 for members in chains.values()), chains
    wait_for(lambda: not any(t.retired for t in cluster.routing().targets), "retired targets emptied")
    check_every_byte(cluster, model)
    code, report, err = run_fsck(url)
    assert code == 0, (report, err)
