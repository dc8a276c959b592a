"""``ffs meta serve --config`` and ``ffs storage serve --config``: one command, one TOML file per service.

Goal: every key of MetaConfig and StorageConfig is read from the file under its field's name
and documented in docs/configuration.md; a bad key stops the command with its name; and the
two commands start a working cluster. Method: ``--check`` prints the configuration a file
gives, compared field by field with files that set every key to a non-default value; then real
processes: a meta server (on LMDB, and on a real etcd member) and a storage node, each started
by ``ffs ... serve --config`` in a subprocess on loopback, serve a file written and read through
fsspec, and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import signal
import subprocess
import sys
import time

import fsspec
import grpc
import pytest
from click.testing import CliRunner

from fireflyfs.cli.main import cli
from fireflyfs.deploy.local_cluster import pick_free_port
from fireflyfs.meta_service.server import MetaConfig
from fireflyfs.proto import types_pb2
from fireflyfs.storage_service.bulk_connections import BulkLimits
from fireflyfs.storage_service.server import StorageConfig
from tests import trust
from tests.conftest import require_etcd

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

META_TOML = '''
data_dir = "/srv/ffs/meta"
listen = "0.0.0.0:7000"
metrics_listen = "10.0.0.1:9100"
advertise = "meta-1.example"
log_file = "/var/log/ffs/meta.log"
fsync = false
gc_interval_ms = 500
gc_delay_ms = 60000
heartbeat_timeout_ms = 4000
map_size_bytes = "2GiB"
map_size_bytes_max = 4398046511104
space_warn_fraction = 0.9
space_check_interval_ms = 5000
rpc_workers_max = 32
session_lease_ms = 30000
storage_calls_max = 12
engine = "etcd"
etcd_endpoints = "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379"
etcd_prefix = "/ffs-prod/"
node_id = 10002
admin_token_file = "/etc/ffs/admin.token"
insecure = true
capability_ttl_ms = 600000
tls_cert = "/etc/ffs/tls/meta.pem"
tls_key = "/etc/ffs/tls/meta.key"
tls_ca = "/etc/ffs/tls/ca.pem"
'''

STORAGE_TOML = '''
node_id = 7
data_dir = "/srv/ffs/storage"
listen = "10.0.0.7:8000"
mgmtd = "10.0.0.1:7000,10.0.0.2:7000"
targets = 4
log_file = "/var/log/ffs/storage.log"
heartbeat_interval_ms = 500
heartbeat_timeout_ms = 4000
fsync = false
block_size = 65536
server_workers = 32
bulk_listen = "10.0.0.7:8001"
metrics_listen = "10.0.0.7:9100"
advertise = "storage-7.example"
chain_forward = "grpc"
chunk_pool_files = 16
chunk_pool_prefill_mib = 256
target_capacity_bytes = "500GiB"
target_reserve = "2GiB"
target_map_size_bytes = "2GiB"
target_map_size_bytes_max = "128GiB"
space_warn_fraction = 0.75
scrub_bytes_per_s = 4194304
scrub_interval_s = 7200.0
node_key_file = "/etc/ffs/node.key"
insecure = true
tls_cert = "/etc/ffs/tls/storage.pem"
tls_key = "/etc/ffs/tls/storage.key"
tls_ca = "/etc/ffs/tls/ca.pem"

[bulk_limits]
connections_max = 512
connections_per_peer_max = 64
inflight_bytes_max = "512MiB"
inflight_bytes_per_peer_max = "256MiB"
budget_wait_s_max = 5.0
idle_s_max = 120
request_s_max = 30.0
'''


def _check(tmp_path: pathlib.Path, service: str, text: str, *overrides: str):
    path = tmp_path / f"{service}.toml"
    path.write_text(text)
    args = [service, "serve", "--config", str(path), "--check"]
    for override in overrides:
        args += ["--set", override]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _keys(cls) -> set[str]:
    keys = set()
    for field in dataclasses.fields(cls):
        if field.name == "bulk_limits":
            keys |= {f"bulk_limits.{inner.name}" for inner in dataclasses.fields(BulkLimits)}
        else:
            keys.add(field.name)
    return keys


def _toml_keys(text: str) -> set[str]:
    keys, table = set(), ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line.strip()):
            table = header.group(1) + "."
        elif "=" in line:
            keys.add(table + line.split("=", 1)[0].strip())
    return keys


def test_every_meta_key_reaches_meta_config(tmp_path):
    assert _toml_keys(META_TOML) == _keys(MetaConfig), "the file sets every key (a new field: add it here)"
    result = _check(tmp_path, "meta", META_TOML)
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got == {
        "data_dir": "/srv/ffs/meta", "listen": "0.0.0.0:7000", "metrics_listen": "10.0.0.1:9100",
        "advertise": "meta-1.example", "log_file": "/var/log/ffs/meta.log",
        "fsync": False, "gc_interval_ms": 500, "gc_delay_ms": 60000, "heartbeat_timeout_ms": 4000,
        "map_size_bytes": 2 << 30, "map_size_bytes_max": 4 << 40, "space_warn_fraction": 0.9,
        "space_check_interval_ms": 5000, "rpc_workers_max": 32, "session_lease_ms": 30000,
        "storage_calls_max": 12, "engine": "etcd",
        "etcd_endpoints": "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379", "etcd_prefix": "/ffs-prod/",
        "node_id": 10002, "admin_token_file": "/etc/ffs/admin.token", "insecure": True,
        "capability_ttl_ms": 600000, "tls_cert": "/etc/ffs/tls/meta.pem", "tls_key": "/etc/ffs/tls/meta.key",
        "tls_ca": "/etc/ffs/tls/ca.pem"}
    defaults = dataclasses.asdict(MetaConfig(data_dir=""))
    assert all(got[name] != defaults[name] for name in defaults), "every key differs from its default"


def test_every_storage_key_reaches_storage_config(tmp_path):
    assert _toml_keys(STORAGE_TOML) == _keys(StorageConfig), "the file sets every key (a new field: add it here)"
    result = _check(tmp_path, "storage", STORAGE_TOML)
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got == {
        "node_id": 7, "data_dir": "/srv/ffs/storage", "listen": "10.0.0.7:8000",
        "mgmtd": "10.0.0.1:7000,10.0.0.2:7000", "targets": 4, "log_file": "/var/log/ffs/storage.log",
        "heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 4000, "fsync": False, "block_size": 65536,
        "server_workers": 32, "bulk_listen": "10.0.0.7:8001", "metrics_listen": "10.0.0.7:9100",
        "advertise": "storage-7.example", "chain_forward": "grpc", "chunk_pool_files": 16,
        "chunk_pool_prefill_mib": 256, "target_capacity_bytes": 500 << 30,
        "target_reserve": {"fraction": None, "bytes": 2 << 30},
        "target_map_size_bytes": 2 << 30, "target_map_size_bytes_max": 128 << 30,
        "space_warn_fraction": 0.75, "scrub_bytes_per_s": 4 << 20, "scrub_interval_s": 7200.0,
        "node_key_file": "/etc/ffs/node.key", "insecure": True, "tls_cert": "/etc/ffs/tls/storage.pem",
        "tls_key": "/etc/ffs/tls/storage.key", "tls_ca": "/etc/ffs/tls/ca.pem",
        "bulk_limits": {"connections_max": 512, "connections_per_peer_max": 64,
                        "inflight_bytes_max": 512 << 20, "inflight_bytes_per_peer_max": 256 << 20,
                        "budget_wait_s_max": 5.0, "idle_s_max": 120.0, "request_s_max": 30.0}}
    no_bulk = json.loads(_check(tmp_path, "storage", STORAGE_TOML, "bulk_listen=false").stdout)
    assert no_bulk["bulk_listen"] is None                       # false: no bulk listener


def test_every_key_is_documented():
    text = DOCS.read_text().split("## Environment variables", 1)[0]
    documented = set(re.findall(r"^\| `([\w.]+)` \|", text, flags=re.MULTILINE))
    meta, storage = text.split("## meta.toml", 1)[1].split("## storage.toml", 1)
    assert _keys(MetaConfig) <= set(re.findall(r"^\| `([\w.]+)` \|", meta, flags=re.MULTILINE))
    assert _keys(StorageConfig) <= set(re.findall(r"^\| `([\w.]+)` \|", storage, flags=re.MULTILINE))
    assert documented <= _keys(MetaConfig) | _keys(StorageConfig), "a documented key no service reads"


def test_every_client_setting_and_environment_variable_is_documented():
    from fireflyfs.client.config import ENV_PREFIX, ClientConfig

    text = DOCS.read_text().split("## Environment variables", 1)[1]
    documented = set(re.findall(r"^\| `(FFS_[A-Z_<>]+)`", text, flags=re.MULTILINE))
    assert {ENV_PREFIX + field.name.upper() for field in dataclasses.fields(ClientConfig)} <= documented
    assert {"FFS_ADDRESS", "FFS_TOKEN", "FFS_TLS_CA", "FFS_TIMEOUT", "FFS_LOG_FORMAT"} <= documented


def test_bad_files_stop_the_command_naming_the_key(tmp_path):
    unknown = _check(tmp_path, "meta", 'data_dir = "/x"\nheartbeat_timout_ms = 3\n')
    assert unknown.exit_code == 1 and "unknown key 'heartbeat_timout_ms'" in unknown.stderr
    wrong = _check(tmp_path, "storage", STORAGE_TOML.replace("targets = 4", 'targets = "four"'))
    assert wrong.exit_code == 1 and "key 'targets' must be an integer" in wrong.stderr
    refused = _check(tmp_path, "meta", 'data_dir = "/x"\nengine = "etcd"\n')       # MetaConfig's own check
    assert refused.exit_code == 1 and "etcd_endpoints" in refused.stderr
    missing = _check(tmp_path, "storage", 'data_dir = "/x"\nlisten = "a:1"\nmgmtd = "a:2"\n')
    assert missing.exit_code == 1 and "missing key 'node_id'" in missing.stderr
    overridden = _check(tmp_path, "meta", 'data_dir = "/x"\n', "listen=0.0.0.0:7100", "fsync=false")
    assert overridden.exit_code == 0
    assert json.loads(overridden.stdout)["listen"] == "0.0.0.0:7100"
    no_file = CliRunner().invoke(cli, ["meta", "serve", "--config", str(tmp_path / "absent.toml")])
    assert no_file.exit_code == 2                              # click: the path must exist


def _serve(service: str, config: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "fireflyfs.cli.main", service, "serve", "--config",
                                 str(config)], stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_node_key(url: str, key_file: pathlib.Path, deadline_s: float, procs) -> None:
    """`ffs admin node key 1 URL --key-file F`, once meta answers."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert all(proc.poll() is None for proc in procs), "a service exited"
        result = CliRunner().invoke(cli, ["admin", "node", "key", "1", url, "--key-file", str(key_file)])
        if result.exit_code == 0:
            assert oct(key_file.stat().st_mode & 0o777) == "0o600"
            return
        assert time.monotonic() < deadline, result.output
        time.sleep(0.2)


def _wait_storage_registered(address: str, deadline_s: float, procs: list[subprocess.Popen]) -> None:
    from fireflyfs.common.rpc import make_channel
    from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

    deadline = time.monotonic() + deadline_s
    while True:
        assert all(proc.poll() is None for proc in procs), "a service exited"
        try:
            with make_channel(address, token=trust.ADMIN_TOKEN) as channel:
                routing = mgmtd_pb2_grpc.MgmtdStub(channel).GetRoutingInfo(
                    mgmtd_pb2.GetRoutingInfoRequest(), timeout=1.0).routing
            if any(n.type == types_pb2.NODE_STORAGE and n.status == types_pb2.HEARTBEAT_CONNECTED
                   for n in routing.nodes):
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "the storage node did not register"
        time.sleep(0.1)


@pytest.mark.parametrize("engine", ["lmdb", "etcd"])
def test_serve_commands_run_a_cluster_from_toml_files(tmp_path, engine, request):
    meta_address = f"127.0.0.1:{pick_free_port()}"
    engine_keys = ""
    if engine == "etcd":
        require_etcd()
        endpoints = request.getfixturevalue("etcd_endpoints")
        engine_keys = f'engine = "etcd"\netcd_endpoints = "{",".join(endpoints)}"\n' \
                      f'etcd_prefix = "/{tmp_path.name}/"\n'
    files = trust.tls_files()
    tls_keys = f'tls_cert = "{files.cert}"\ntls_key = "{files.key}"\ntls_ca = "{files.ca}"\n'
    meta_toml = tmp_path / "meta.toml"
    meta_toml.write_text(f'data_dir = "{tmp_path / "meta"}"\nlisten = "{meta_address}"\n'
                         f'heartbeat_timeout_ms = 4000\n{engine_keys}'
                         f'admin_token_file = "{trust.admin_token_file(tmp_path)}"\n{tls_keys}')
    storage_toml = tmp_path / "storage.toml"
    storage_toml.write_text(f'node_id = 1\ndata_dir = "{tmp_path / "storage"}"\nlisten = "127.0.0.1:0"\n'
                            f'mgmtd = "{meta_address}"\ntargets = 1\nheartbeat_interval_ms = 400\n'
                            f'heartbeat_timeout_ms = 4000\nscrub_bytes_per_s = 0\n'
                            f'log_file = "{tmp_path / "storage.log"}"\n'
                            f'node_key_file = "{tmp_path / "node.key"}"\n{tls_keys}')
    meta = _serve("meta", meta_toml, tmp_path / "meta.out")
    procs = [meta]
    try:
        _wait_node_key(f"ffs://{meta_address}", tmp_path / "node.key", 60, procs)   # as an operator would
        procs.append(_serve("storage", storage_toml, tmp_path / "storage.out"))
        _wait_storage_registered(meta_address, 60, procs)
        created = CliRunner().invoke(cli, ["admin", "chain-table", "create", f"ffs://{meta_address}",
                                           "--replicas", "1"])
        assert created.exit_code == 0, created.stderr
        fs = fsspec.filesystem("ffs", host="127.0.0.1", port=int(meta_address.rsplit(":", 1)[1]),
                               skip_instance_cache=True)
        payload = bytes(range(256)) * 20_000                           # on storage, not inline
        fs.pipe_file("/served/data.bin", payload)
        assert fs.cat_file("/served/data.bin") == payload
        assert (tmp_path / "storage" / "target-101").is_dir()          # the file's data_dir and targets
        assert "registered with mgmtd" in (tmp_path / "storage.log").read_text()   # and its log_file
        if engine == "lmdb":
            assert (tmp_path / "meta" / "meta.lmdb").exists()
        else:
            assert not (tmp_path / "meta" / "meta.lmdb").exists()      # the namespace lives in etcd
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in reversed(procs)]
    assert codes == [0, 0], f"stopped with {codes}"


def _doc_block(header: str, language: str) -> str:
    """The first ```language block after the docs' header line."""
    after = DOCS.read_text().split(f"\n{header}", 1)[1]
    return after.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_3_host_files_parse(tmp_path):
    meta = json.loads(_check(tmp_path, "meta", _doc_block("### meta.toml", "toml")).stdout)
    assert (meta["engine"], meta["etcd_endpoints"].count(",")) == ("etcd", 2)
    storage = json.loads(_check(tmp_path, "storage", _doc_block("### storage.toml", "toml")).stdout)
    assert storage["mgmtd"].split(",") == [f"10.0.0.{i}:7000" for i in (1, 2, 3)]
    assert storage["bulk_limits"]["inflight_bytes_max"] == 512 << 20


def test_the_documented_etcd_settings_are_the_limits_we_size_transactions_by():
    from fireflyfs.common import limits

    settings = dict(line.split("=", 1) for line in _doc_block("### etcd", "bash").splitlines()
                    if line and not line.startswith("#"))
    assert settings["ETCD_MAX_TXN_OPS"] == str(limits.etcd_txn_ops_max)
    assert settings["ETCD_MAX_REQUEST_BYTES"] == str(limits.etcd_request_bytes_max)
    assert settings["ETCD_AUTO_COMPACTION_MODE"] == "periodic"
    assert settings["ETCD_AUTO_COMPACTION_RETENTION"] == f"{limits.etcd_history_retention_hours}h"
    assert len(settings["ETCD_INITIAL_CLUSTER"].split(",")) == 3
