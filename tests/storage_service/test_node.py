"""The storage node with mgmtd: registration, heartbeat, routing refresh, process lifecycle.

Method: a FakeMgmtd (tests/storage_service/fakes.py) on a real 127.0.0.1 gRPC port.
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

from fireflyfs.common.errors import StaleChainVersion
from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
from fireflyfs.proto import storage_pb2, storage_pb2_grpc, types_pb2
from fireflyfs.storage_service.server import StorageConfig, StorageNode, parse_args
from tests import trust

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
                                     mgmtd=mgmtd.address, targets=2, heartbeat_interval_ms=20, insecure=True))
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
                                     mgmtd=mgmtd.address, targets=1, heartbeat_interval_ms=20, insecure=True))
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
    with pytest.raises(SystemExit):       # a node proves itself with its key, unless --insecure
        parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"])
    assert parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1",
                       "--insecure"]).insecure
    monkeypatch.setenv("FFS_NODE_KEY_FILE", str(tmp_path / "node.key"))
    for name in ("CERT", "KEY", "CA"):
        monkeypatch.setenv(f"FFS_TLS_{name}_FILE", str(tmp_path / f"tls.{name.lower()}"))
    monkeypatch.setenv("FFS_HEARTBEAT_INTERVAL_MS", "250")
    config = parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"])
    assert (config.listen, config.targets, config.heartbeat_interval_ms, config.fsync) == \
        ("127.0.0.1:0", 1, 250, True), "durable by default"
    assert (config.node_key_file, config.insecure) == (tmp_path / "node.key", False), "secure by default"
    config = parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1",
                         "--heartbeat-interval-ms", "30", "--no-fsync", "--block-size", "8192"])
    assert (config.heartbeat_interval_ms, config.fsync, config.block_size) == (30, False, 8192)
    monkeypatch.setenv("FFS_STORAGE_FSYNC", "0")
    assert parse_args(["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"]).fsync is False
    with pytest.raises(SystemExit):
        parse_args(["--node-id", "0", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"])
    # Chain updates: over successors' bulk listeners by default, gRPC on request.
    base = ["--node-id", "2", "--data-dir", str(tmp_path), "--mgmtd", "127.0.0.1:1"]
    assert parse_args(base).chain_forward == "bulk"
    assert parse_args(base + ["--chain-forward", "grpc"]).chain_forward == "grpc"
    monkeypatch.setenv("FFS_CHAIN_FORWARD", "grpc")
    assert parse_args(base).chain_forward == "grpc"
    with pytest.raises(SystemExit):
        parse_args(base + ["--chain-forward", "carrier-pigeon"])
    with pytest.raises(ValueError, match="chain_forward"):
        StorageConfig(node_id=2, data_dir=tmp_path, listen="127.0.0.1:0", mgmtd="127.0.0.1:1", insecure=True,
                      chain_forward="udp")


def test_storage_process_serves_stops_and_restarts(tmp_path):
    """The --insecure development mode: plaintext, no keys (a plaintext fake mgmtd)."""
    mgmtd = FakeMgmtd(plaintext=True).start()
    try:
        run_insecure_storage_process(tmp_path, mgmtd)
    finally:
        mgmtd.stop()


def run_insecure_storage_process(tmp_path, mgmtd):
    log_file = tmp_path / "storage.log"
    command = [sys.executable, "-m", "fireflyfs.storage_service", "--node-id", "7", "--data-dir",
               str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--mgmtd", mgmtd.address,
               "--targets", "2", "--log-file", str(log_file), "--heartbeat-interval-ms", "50", "--insecure"]

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
        with make_channel(address, credentials=None) as channel, rpc_errors_mapped():   # --insecure: plaintext
            stub = storage_pb2_grpc.StorageStub(channel)
            stub.Write(write_request(chain, b"durable"), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "stopping" in log_file.read_text()

        process, address = start_and_wait(len(mgmtd.registrations))
        assert mgmtd.registrations[-1].pid == process.pid
        with make_channel(address, credentials=None) as channel, rpc_errors_mapped():
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch_node_key(meta_address: str, node_id: int, path) -> bool:
    """Ask meta (as the admin) for node_id's key and keep it in path; False while meta is not up."""
    import grpc

    from fireflyfs.common.auth import write_token_file
    from fireflyfs.proto import meta_pb2, meta_pb2_grpc

    try:
        with trust.admin_channel(meta_address) as channel:
            token = meta_pb2_grpc.MetaStub(channel).NodeKey(meta_pb2.NodeKeyRequest(node_id=node_id), timeout=2).token
    except grpc.RpcError:
        return False
    write_token_file(str(path), token)
    return True


def test_with_real_meta_service_survives_sigkill(tmp_path):
    """Real meta + storage processes: chain table, write, SIGKILL the storage node, restart, read."""
    import grpc

    from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

    meta_address = f"127.0.0.1:{free_port()}"
    meta = subprocess.Popen([sys.executable, "-m", "fireflyfs.meta_service", "--data-dir",
                             str(tmp_path / "meta"), "--listen", meta_address, "--log-file",
                             str(tmp_path / "meta.log"), "--admin-token-file", trust.admin_token_file(tmp_path),
                             *trust.tls_args()],
                            stdin=subprocess.DEVNULL)
    key_file = tmp_path / "node-1.key"
    wait_for(lambda: fetch_node_key(meta_address, 1, key_file), timeout_s=20, what="meta to hand out a node key")
    storage_command = [sys.executable, "-m", "fireflyfs.storage_service", "--node-id", "1", "--data-dir",
                       str(tmp_path / "storage"), "--listen", "127.0.0.1:0", "--mgmtd", meta_address,
                       "--targets", "2", "--log-file", str(tmp_path / "storage.log"),
                       "--heartbeat-interval-ms", "100", "--node-key-file", str(key_file), *trust.tls_args()]
    storage = subprocess.Popen(storage_command, stdin=subprocess.DEVNULL)
    channel = trust.admin_channel(meta_address)
    try:
        mgmtd_stub = mgmtd_pb2_grpc.MgmtdStub(channel)

        def storage_node(pid: int):
            try:
                routing = mgmtd_stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=2).routing
            except grpc.RpcError:
                return None
            assert meta.poll() is None and storage.poll() is None, "a process exited"
            return next((n for n in routing.nodes if n.type == types_pb2.NODE_STORAGE and n.pid == pid
                         and n.status == types_pb2.HEARTBEAT_CONNECTED), None)

        node = wait_for(lambda: storage_node(storage.pid), timeout_s=20, what="storage registration")
        with rpc_errors_mapped():
            mgmtd_stub.CreateChainTable(mgmtd_pb2.CreateChainTableRequest(replicas=1, only_if_missing=True),
                                        timeout=10)
        routing = mgmtd_stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=5).routing
        chain = routing.chains[0]
        request = write_request(chain, b"survives a kill")

        def write_when_routed(address: str):
            # The node learns of the new chain table through its next heartbeat.
            with make_channel(address, token=trust.ADMIN_TOKEN) as storage_channel:
                stub = storage_pb2_grpc.StorageStub(storage_channel)
                try:
                    return stub.Write(request, timeout=5)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.ABORTED:
                        return None
                    raise

        reply = wait_for(lambda: write_when_routed(node.address), what="a routed write")
        assert reply.commit_version == 1

        storage.send_signal(signal.SIGKILL)
        storage.wait()
        storage = subprocess.Popen(storage_command, stdin=subprocess.DEVNULL)
        node = wait_for(lambda: storage_node(storage.pid), timeout_s=20, what="re-registration")

        def read_when_serving():
            # The restart (new incarnation) takes the one-replica chain through LASTSRV back to
            # SERVING with a new chain version; the node answers once it has that routing.
            current = mgmtd_stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=5).routing
            now = next(c for c in current.chains if c.id == chain.id)
            with make_channel(node.address, token=trust.ADMIN_TOKEN) as storage_channel, rpc_errors_mapped():
                read = storage_pb2_grpc.StorageStub(storage_channel).BatchRead(
                    storage_pb2.BatchReadRequest(verify_checksum=True, ios=[storage_pb2.ReadIO(
                        chain_id=chain.id, chain_version=now.version,
                        chunk=types_pb2.ChunkId(inode=5, index=0), offset=0, length=CHUNK)]), timeout=10)
            return read if read.results[0].status.error == "" else None

        read = wait_for(read_when_serving, timeout_s=20, what="a read after the restart")
        assert read.results[0].status.error == ""
        assert read.results[0].data == b"survives a kill"
        assert read.results[0].checksum == crc32c.crc32c(b"survives a kill")
    finally:
        channel.close()
        for process in (storage, meta):
            if process.poll() is None:
                process.kill()
                process.wait()
