"""The metadata service SIGKILLed and restarted mid-workload: clients retry and carry on.

Method: a dedicated local cluster (meta + three storage nodes, replication 3)
in a tmp dir. A writer thread runs a seeded workload through FfsClient, each step a
call that would fail if it ran twice (exclusive creates, no-replace renames,
removes, mkdirs) and logs what it acknowledged. Meanwhile the main thread
SIGKILLs the meta process at random moments and restarts it with
``cluster.up()``. Afterwards: the writer saw no error at all (no spurious
AlreadyExists/NotFound thanks to the request ids), and the namespace holds
exactly what was acknowledged, every file with its bytes. A second test makes
the lost-reply case deterministic: the same request sent again after a
restart gets the first reply back. The seed is printed first, with the command
that replays it (FFS_SEED=<seed>).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time

import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.common import errors, rpc
from fireflyfs.common.rpc import make_channel
from fireflyfs.deploy.local_cluster import LocalCluster
from fireflyfs.proto import meta_pb2, meta_pb2_grpc
from tests import trust

KILLS = 3
OPS_MAX = 20_000          # a bound on the writer; it normally stops when told
OPS_AFTER_LAST_KILL = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster(tmp_path_factory.mktemp("meta-restart"), storage_nodes=3, targets_per_node=1,
                         replicas=3, python=sys.executable)
    try:
        local.up()
        yield local
    finally:
        local.down()


def restart_meta(cluster: LocalCluster) -> None:
    cluster.kill("meta", signal.SIGKILL)
    cluster.up()


class Writer(threading.Thread):
    """Seeded operations whose second run would fail; records the acknowledged namespace."""

    def __init__(self, client: FfsClient, root: str, rng: random.Random) -> None:
        super().__init__(name="meta-restart-writer", daemon=True)
        self.client, self.root, self.rng = client, root, rng
        self.files: dict[str, bytes] = {}     # acknowledged path -> content
        self.dirs: set[str] = {root}
        self.done_ops = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def step(self, number: int) -> None:
        choice = self.rng.random()
        if choice < 0.5 or len(self.files) < 3:
            directory = self.rng.choice(sorted(self.dirs))
            path = f"{directory}/f{number}"
            data = self.rng.randbytes(self.rng.choice((0, 100, 70_000)))
            self.client.write_file(path, data, exclusive=True)
            self.files[path] = data
        elif choice < 0.75:
            src = self.rng.choice(sorted(self.files))
            dst = f"{self.rng.choice(sorted(self.dirs))}/r{number}"
            self.client.rename(src, dst, no_replace=True)
            self.files[dst] = self.files.pop(src)
        elif choice < 0.9:
            victim = self.rng.choice(sorted(self.files))
            self.client.remove(victim)
            del self.files[victim]
        else:
            path = f"{self.root}/d{number}"
            self.client.mkdir(path)
            self.dirs.add(path)

    def run(self) -> None:
        try:
            self.client.mkdir(self.root)
            for number in range(OPS_MAX):
                if self.stop.is_set():
                    return
                self.step(number)
                self.done_ops += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_clients_carry_on_across_meta_kills(cluster, seed):
    rng = random.Random(seed)
    writer = Writer(FfsClient(cluster.meta_address), f"/work-{seed}", random.Random(rng.random()))
    writer.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.1, 0.8))
        restart_meta(cluster)
    ops_at_last_kill = writer.done_ops
    deadline = time.monotonic() + 120
    while writer.is_alive() and writer.done_ops < ops_at_last_kill + OPS_AFTER_LAST_KILL:
        assert time.monotonic() < deadline, f"seed {seed}: writer stuck at {writer.done_ops} ops"
        time.sleep(0.05)
    writer.stop.set()
    writer.join(timeout=120)
    assert not writer.is_alive(), f"seed {seed}: writer hung after {writer.done_ops} ops"
    assert writer.error is None, f"seed {seed}: after {writer.done_ops} ops: {writer.error!r}"
    print(f"{writer.done_ops} operations, {KILLS} meta kills, {len(writer.files)} files")

    fresh = FfsClient(cluster.meta_address)
    found = {entry.path for entry in fresh.find(writer.root)}
    assert found == set(writer.files), f"seed {seed}: namespace differs from what was acknowledged"
    for path, data in writer.files.items():
        assert fresh.read_file(path) == data, f"seed {seed}: {path} lost acknowledged bytes"


def test_a_request_resent_after_a_restart_gets_its_first_reply(cluster):
    def stub():
        return meta_pb2_grpc.MetaStub(make_channel(cluster.meta_address, token=trust.ADMIN_TOKEN))

    def call(method, request):
        for _ in range(100):   # the restarted process may take a moment to accept calls
            try:
                with rpc.rpc_errors_mapped():
                    return getattr(stub(), method)(request, timeout=10)
            except errors.Unavailable:
                time.sleep(0.1)
        raise AssertionError(f"{method}: meta did not come back")

    create = meta_pb2.CreateRequest(path="/once/f", exclusive=True, parents=True, open_for_write=True,
                                    client_id="test", request_id="restart-create-1")
    first = call("Create", create)
    restart_meta(cluster)
    again = call("Create", create)
    for reply in (again, first):          # each reply signs a fresh capability; the rest is the record's
        reply.ClearField("capability")
    assert again == first, "the retry is answered from the record, not AlreadyExists"
    close = meta_pb2.CloseRequest(inode_id=first.inode.id, session_id=first.session_id, client_id="test",
                                  request_id="restart-close-1")
    closed = call("Close", close)
    rename = meta_pb2.RenameRequest(src="/once/f", dst="/once/g", request_id="restart-rename-1")
    call("Rename", rename)
    restart_meta(cluster)
    assert call("Close", close) == closed, "no NotFound for the already-closed session"
    call("Rename", rename)   # no NotFound for the already-moved source
    assert FfsClient(cluster.meta_address).stat("/once/g").id == first.inode.id
