"""The storage node with mgmtd: registration, heartbeat, routing refresh, process lifecycle.

Method: a FakeMgmtd (tests/storage/fakes.py) on a real 127.0.0.1 gRPC port.
The MgmtdLink tests run the node in-process with a short heartbeat interval;
the last test starts the real ``python -m fireflyfs.storage_service`` process,
writes and reads through its registered address, stops it with SIGTERM
(graceful, exit code 0), restarts it and reads the data back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import crc32c
import pytest

from fireflyfs.common.errors import StaleChainVersion, rpc_errors_mapped
from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from fireflyfs.storage_service.server import StorageConfig, StorageNode, parse_args

from .fakes import FakeMgmtd

CHUNK = 64 * 1024


def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def mgmtd():
    fake = FakeMgmtd().start()
    yield fake
    fake.stop()


def write_request(chain: types_pb2.ChainInfo, data: bytes, offset: int = 0) -> storage_pb2.WriteRequest:
    return storage_pb2.WriteRequest(chain_id=chain.id, chain_version=chain.version,
                                    chunk=types_pb2.ChunkId(inode=5, index=0), offset=offset, data=data,
                                    checksum=crc32c.crc32c(data), chunk_size=CHUNK)


def test_registers_after_retries_and_heartbeats(tmp_path, mgmtd):
    mgmtd.refuse_registrations = 2
    node = StorageNode(StorageConfig(node_id=3, data_dir=tmp_path, listen="127.0.0.1:0",
                                     mgmtd=mgmtd.address, targets=2, heartbeat_interval_ms=20))
    try:
        node.start()
        wait_for(node.link.registered.is_set, what="registration")
        registration = mgmtd.registrations[-1]
        assert registration.address == node.address and registration.type == types_pb2.NODE_STORAGE
        assert [t.id for t in registration.targets] == [301, 302]
        assert registration.targets[0].path == str(tmp_path / "target-301")
        assert mgmtd.refuse_registrations == 0  # both refusals were retried
        wait_for(lambda: len(mgmtd.heartbeats) >= 2, what="heartbeats")
        assert [t.target_id for t in mgmtd.heartbeats[-1].targets] == [301, 302]
        assert node.routing.version == mgmtd.routing.version
    finally:
        node.stop()


def test_routing_refresh_and_reregistration(tmp_path, mgmtd):
    node = StorageNode(StorageConfig(node_id=4, data_dir=tmp_path, listen="127.0.0.1:0",
                                     mgmtd=mgmtd.address, targets=1, heartbeat_interval_ms=20))
    try:
        node.start()
        wait_for(node.link.registered.is_set, what="registration")
        with make_channel(node.address) as channel, rpc_errors_mapped():
            stub = storage_pb2_grpc.StorageStub(channel)
            chain = mgmtd.chain_for_target(401)
            assert stub.Write(write_request(chain, b"one"), timeout=10).commit_version == 1
            # mgmtd bumps the chain: the heartbeat notices the routing version and refreshes.
            new_version = mgmtd.bump_chain(chain.id)
            wait_for(lambda: node.routing.chain(chain.id).version == new_version, what="routing refresh")
            with pytest.raises(StaleChainVersion), rpc_errors_mapped():
                stub.Write(write_request(chain, b"old"), timeout=10)
            assert stub.Write(write_request(mgmtd.chain_for_target(401), b"two", 3),
                              timeout=10).commit_version == 2
        # mgmtd forgets the node: the heartbeat gets NotFound and the node registers again.
        registrations = len(mgmtd.registrations)
        mgmtd.forget_nodes()
        wait_for(lambda: len(mgmtd.registrations) > registrations, what="re-registration")
        assert mgmtd.node(4).address == node.address
    finally:
        node.stop()


def test_parse_args_defaults_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FFS_HEARTBEAT_INTERVAL_MS", "250")
    config = parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"])
    assert (config.listen, config.targets, config.heartbeat_interval_ms, config.fsync) == \
        ("127.0.0.1:0", 1, 250, False)
    config = parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1",
                         "--heartbeat-interval-ms", "30", "--fsync", "--block-size", "8192"])
    assert (config.heartbeat_interval_ms, config.fsync, config.block_size) == (30, True, 8192)
    with pytest.raises(SystemExit):
        parse_args(["--node-id", "0", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"])


def test_storage_process_serves_stops_and_restarts(tmp_path, mgmtd):
    log_file = tmp_path / "storage.log"
    command = [sys.executable, "-m", "fireflyfs.storage_service", "--node-id", "7", "--data-dir",
               str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--mgmtd", mgmtd.address,
               "--targets", "2", "--log-file", str(log_file), "--heartbeat-interval-ms", "50"]

    def start_and_wait(registrations_before: int) -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(mgmtd.registrations) > registrations_before or process.poll() is not None,
                     timeout_s=20, what="storage process registration")
            assert process.poll() is None, f"storage exited: {log_file.read_text()}"
        except BaseException:
            process.kill()
            process.wait()
            raise
        return process, mgmtd.registrations[-1].address

    process, address = start_and_wait(0)
    try:
        chain = mgmtd.chain_for_target(702)
        with make_channel(address) as channel, rpc_errors_mapped():
            stub = storage_pb2_grpc.StorageStub(channel)
            stub.Write(write_request(chain, b"durable"), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "stopping" in log_file.read_text()

        process, address = start_and_wait(len(mgmtd.registrations))
        assert mgmtd.registrations[-1].pid == process.pid
        with make_channel(address) as channel, rpc_errors_mapped():
            stub = storage_pb2_grpc.StorageStub(channel)
            read = stub.BatchRead(storage_pb2.BatchReadRequest(ios=[storage_pb2.ReadIO(
                chain_id=chain.id, chain_version=chain.version, chunk=types_pb2.ChunkId(inode=5, index=0),
                offset=0, length=100)]), timeout=10)
        assert read.results[0].data == b"durable"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
