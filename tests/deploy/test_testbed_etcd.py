"""Several hosts for real (issue 11): etcd members, meta servers and storage nodes each on a namespace host.

Under a writer on the client host, the link of one etcd member's host is cut,
then the link of the host running the mgmtd primary: the rest carries on, a
standby takes over, the cut-off primary stops acting and, once its link is
back, rejoins as a standby; every acknowledged file reads back.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from fireflyfs.deploy import netns
from fireflyfs.deploy.testbed import Testbed, TestbedSpec
from tests.conftest import require_etcd

pytestmark = pytest.mark.skipif(netns.available() is not None,
                                reason=f"testbed needs root and ip/tc: {netns.available()}")

WRITER = r'''
import hashlib, json, os, sys, time
import fsspec
url, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fs = fsspec.filesystem("ffs", addresses=url[len("ffs://"):])
end, n = time.monotonic() + seconds, 0
with open(out, "w") as log:
    while time.monotonic() < end:
        path, data = f"/cut/f{n:05d}", os.urandom(1000 + (n * 7919) % 60000)
        try:
            fs.pipe_file(path, data)
        except Exception as exc:
            log.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            break
        log.write(json.dumps({"path": path, "sha": hashlib.sha256(data).hexdigest(), "t": time.time()}) + "\n")
        log.flush()
        n += 1
'''

VERIFY = r'''
import hashlib, json, sys
import fsspec
url, log = sys.argv[1], sys.argv[2]
fs = fsspec.filesystem("ffs", addresses=url[len("ffs://"):])
rows = [json.loads(line) for line in open(log)]
bad = [r["path"] for r in rows if "path" in r and hashlib.sha256(fs.cat_file(r["path"])).hexdigest() != r["sha"]]
print(json.dumps({"checked": sum("path" in r for r in rows), "bad": bad, "errors": [r["error"] for r in rows if "error" in r]}))
'''

ROUTING = r'''
import json, sys
from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc, types_pb2
from tests import trust
from fireflyfs.common import tls
tls.configure_client_from_env()                                  # the session CA (FFS_TLS_CA)
routing = None
for address in sys.argv[1][len("ffs://"):].split(",") * 3:     # a cut or busy server: ask the next
    try:
        with make_channel(address, token=trust.ADMIN_TOKEN) as channel:
            routing = mgmtd_pb2_grpc.MgmtdStub(channel).GetRoutingInfo(
                mgmtd_pb2.GetRoutingInfoRequest(), timeout=5).routing
        break
    except Exception:
        continue
if routing is None:
    print(json.dumps({"primary": None, "metas": []}))
    sys.exit(0)
metas = {n.id: n.address for n in routing.nodes if n.type == types_pb2.NODE_META}
print(json.dumps({"primary": metas.get(routing.mgmtd_primary_id), "metas": sorted(metas.values())}))
'''


def routing(bed: Testbed) -> dict:
    return json.loads(bed.run("c", [sys.executable, "-c", ROUTING, bed.url], timeout_s=60).stdout)


def wait_for(check, what: str, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_cutting_an_etcd_member_and_the_mgmtd_primary_loses_nothing(tmp_path):
    require_etcd()
    bed = Testbed(TestbedSpec(name=f"e{os.getpid() % 10000}", storage_hosts=2, peer_hosts=0, replicas=2,
                              meta_engine="etcd", meta_servers=2, etcd_members=3), tmp_path / "bed")
    try:
        bed.up(services=True, timeout_s=120)
        log = tmp_path / "writes.jsonl"
        writer = bed.spawn("c", [sys.executable, "-c", WRITER, bed.url, "40", str(log)], label="writer")
        time.sleep(5)

        bed.cut("e3")                               # one etcd member: the other two keep a quorum
        time.sleep(8)
        bed.cut("e3", down=False)

        before = routing(bed)
        old_primary = before["primary"]
        host = next(h for h in bed.spec.hosts() if old_primary.startswith(bed.address(h) + ":"))
        cut_at = time.monotonic()
        bed.cut(host)
        taken = wait_for(lambda: (r := routing(bed))["primary"] not in (None, old_primary) and r,
                         "a standby takes over", 60)
        takeover_s = time.monotonic() - cut_at
        time.sleep(5)
        bed.cut(host, down=False)
        rejoined = wait_for(lambda: old_primary in (r := routing(bed))["metas"] and r, "the old primary rejoins", 60)
        assert rejoined["primary"] == taken["primary"], "it rejoined as a standby"
        assert writer.wait(timeout=180) == 0
        result = json.loads(bed.run("c", [sys.executable, "-c", VERIFY, bed.url, str(log)], timeout_s=300).stdout)
        print(f"takeover after cutting the primary's host: {takeover_s:.1f} s; {result['checked']} files checked")
        assert result["errors"] == [] and result["bad"] == [] and result["checked"] > 20
        cut_log = (bed.base_dir / "cluster" / "logs").glob("meta*.log")
        assert any("steps down" in path.read_text() for path in cut_log), "the cut-off primary stopped acting"
    finally:
        bed.down()
