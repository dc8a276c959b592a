"""A cluster with TLS (the default) talks only to clients that trust its CA, on gRPC and bulk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fireflyfs.common import tls

PROBE = r'''
import json, sys
from fireflyfs.common import tls
from fireflyfs.client.bulk_client import BulkConnection
meta, bulk, ca = sys.argv[1], sys.argv[2], sys.argv[3]
if ca:
    tls.configure(ca=ca)
out = {}
import fsspec
try:
    fsspec.filesystem("ffs", addresses=meta, skip_instance_cache=True).ls("/")
    out["grpc"] = "ok"
except Exception as exc:
    out["grpc"] = f"{type(exc).__name__}: {exc}"
try:
    connection = BulkConnection(bulk, 5.0)
    connection.send_read([(1, 1, 1, 0, 0, 1)])
    connection.recv_read([(1, 1, 1, 0, 0, 1)], [memoryview(bytearray(1))])
    out["bulk"] = "ok"
except Exception as exc:
    out["bulk"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def probe(cluster, ca: str) -> dict:
    routing = cluster.cluster.routing()
    bulk = next(node.bulk_address for node in routing.nodes if node.bulk_address)
    env = {key: value for key, value in os.environ.items() if key != tls.CA_ENV}
    env["FFS_CLIENT_META_RETRY_TIME_S"] = "2"
    result = subprocess.run([sys.executable, "-c", PROBE, cluster.cluster.meta_address, bulk, ca], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_only_clients_trusting_the_cluster_ca_get_through(cluster, tmp_path):
    trusted = probe(cluster, os.environ[tls.CA_ENV])
    assert trusted["grpc"] == "ok"
    assert "PermissionDenied" in trusted["bulk"] or "capabilit" in trusted["bulk"]   # TLS passed, no capability
    plain = probe(cluster, "")
    assert plain["grpc"].startswith("Unavailable") and "TLS" in plain["grpc"], plain
    assert plain["bulk"] != "ok" and "PermissionDenied" not in plain["bulk"], plain
    other_ca, _ = tls.ensure_ca(str(tmp_path / "other-ca"))
    foreign = probe(cluster, other_ca)
    assert foreign["grpc"].startswith("Unavailable") and "TLS" in foreign["grpc"], foreign
    assert "certificate" in foreign["bulk"].lower(), foreign
