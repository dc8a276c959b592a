"""Storage processes SIGKILLed mid-write, in a loop: no acknowledged write is lost or torn.

Goal: the chunk engine's crash safety holds for the real storage process, not
only for the engine in a child (tests/storage_service/test_crash_safety.py): a writer
streams random overwrites and appends into a file whose 64 KiB chunks spread
over every storage node, while the main thread SIGKILLs a random storage node
and restarts it with ``cluster.up()``. With one replica a write to a dead node
waits (the client retries through routing refreshes) until the node is back,
so every pwrite that returns is acknowledged. Afterwards the file must equal a
model that applied exactly the acknowledged writes, and every read verifies the
stored CRC32C blocks.

Method: everything random comes from one ``random.Random(seed)``; the seed is
printed first and FFS_SEED replays it. The CI run does a few rounds; the slow
one (``-m slow``) many more.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time

import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.deploy.local_cluster import LocalCluster, storage_role
from tests.conftest import announce_seed, seed_from_env

CHUNK_SIZE = 64 * 1024
FILE_SPAN = 24 * CHUNK_SIZE          # writes land anywhere in the first 24 chunks (and extend it)
WRITE_BYTES_MAX = 3 * CHUNK_SIZE


def run_kill_loop(base_dir, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    cluster = LocalCluster(base_dir, storage_nodes=2, targets_per_node=2, replicas=1,
                           python=sys.executable)
    try:
        url = cluster.up()
        client = FfsClient(url.removeprefix("ffs://"))
        client.mkdir("/crash", chunk_size=CHUNK_SIZE)
        handle = client.create("/crash/file", exclusive=True)
        model = bytearray()
        writes_done = 0
        stop = threading.Event()
        failure: list[BaseException] = []
        write_rng = random.Random(rng.getrandbits(64))

        def writer() -> None:
            nonlocal writes_done
            try:
                while not stop.is_set():
                    offset = write_rng.randrange(0, min(len(model), FILE_SPAN) + 1)
                    data = write_rng.randbytes(write_rng.randrange(1, WRITE_BYTES_MAX))
                    client.pwrite(handle, offset, data)      # returns only once acknowledged
                    end = offset + len(data)
                    if end > len(model):
                        model.extend(bytes(end - len(model)))
                    model[offset:end] = data
                    writes_done += 1
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

        thread = threading.Thread(target=writer, name="crash-writer")
        thread.start()
        try:
            for round_index in range(rounds):
                time.sleep(rng.uniform(0.1, 0.6))
                node_id = rng.randint(1, 2)
                cluster.kill(storage_role(node_id), signal.SIGKILL)
                time.sleep(rng.uniform(0.0, 0.3))
                cluster.up()
                assert not failure, f"round {round_index}: writer failed: {failure[0]!r}"
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join(timeout=120)
        assert not thread.is_alive(), "the writer did not finish"
        assert not failure, f"writer failed: {failure[0]!r}"
        assert writes_done > rounds, f"only {writes_done} writes were acknowledged"
        closed = client.close(handle, length_hint=len(model))
        assert closed.length == len(model)
        # A read verifies every touched CRC32C block on the storage side.
        assert client.read_file("/crash/file") == bytes(model), f"content differs (SEED={seed})"
    finally:
        cluster.down()


def test_storage_sigkill_loop_keeps_acknowledged_writes(tmp_path, request):
    seed = seed_from_env()
    announce_seed(request, seed, rounds=3)
    run_kill_loop(tmp_path / "cluster", rounds=3, seed=seed)


@pytest.mark.slow
def test_storage_sigkill_loop_keeps_acknowledged_writes_soak(tmp_path, request):
    seed = seed_from_env()
    announce_seed(request, seed, rounds=25)
    run_kill_loop(tmp_path / "cluster", rounds=25, seed=seed)
