"""What security costs: TLS, tokens, permission checks and capabilities on against --insecure.

    python bench/security_cost.py [--size-mib 256] [--seconds 2] [--json]

Starts two local clusters in this run (3 storage nodes, replication 1): one
secure (the default) and one ``--insecure``. Each is measured by its own
worker process (a process holds one TLS setting), on the same phases: bulk
sequential write and read of one file through fsspec, random 4 KiB reads
through ``FfsClient.read_batch`` (256 per call), and metadata ``info`` and
``touch`` rates. Prints each phase's rate in both modes and secure/insecure.
The ratios are the figures to quote: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

WORKER = r'''
import json, os, random, sys, time
import fsspec
from fireflyfs.client.client import FfsClient
address, size_mib, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
MiB = 1 << 20
fs = fsspec.filesystem("ffs", addresses=address, skip_instance_cache=True)
out = {}
payload = os.urandom(size_mib * MiB)
start = time.perf_counter(); fs.pipe_file("/bench/seq.bin", payload); out["seq_write_mb_s"] = len(payload) / MiB / (time.perf_counter() - start)
start = time.perf_counter(); got = fs.cat_file("/bench/seq.bin"); out["seq_read_mb_s"] = len(got) / MiB / (time.perf_counter() - start)
assert got == payload
client = FfsClient(address)
handle = client.open("/bench/seq.bin")
rng = random.Random(7); blocks = len(payload) // 4096; buffer = bytearray(256 * 4096)
def timed(step):
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += step()
    return count / seconds
def batch():
    outcome = client.read_batch([(handle, rng.randrange(blocks) * 4096, 4096) for _ in range(256)], into=buffer)
    if not outcome.ok:
        outcome.raise_first()
    return 256
out["read_batch_4k_s"] = timed(batch)
names = [f"/bench/meta/f{i}" for i in range(200)]
for name in names:
    fs.touch(name)
cursor = iter(range(10**9))
out["info_s"] = timed(lambda: (fs.info(names[next(cursor) % len(names)]), 1)[1])
out["touch_s"] = timed(lambda: (fs.touch(names[next(cursor) % len(names)], truncate=False), 1)[1])
print(json.dumps(out))
'''


def measure(insecure: bool, size_mib: int, seconds: float) -> dict:
    from fireflyfs.common import tls
    from fireflyfs.deploy.local_cluster import LocalCluster

    base = tempfile.mkdtemp(prefix="ffs-bench-security-")
    local = LocalCluster(base, storage_nodes=3, targets_per_node=1, replicas=1, python=sys.executable,
                         insecure=insecure)
    try:
        local.up()
        env = {key: value for key, value in os.environ.items()
               if key not in ("FFS_TOKEN", "FFS_TOKEN_FILE", tls.CA_ENV)}
        if not insecure:
            env.update(FFS_TOKEN_FILE=str(local.admin_token_file), **{tls.CA_ENV: str(local.ca_file)})
        result = subprocess.run([sys.executable, "-c", WORKER, local.meta_address, str(size_mib), str(seconds)],
                                env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"worker failed: {result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        local.down()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    # The insecure cluster first: this process's own TLS setting (for its launcher calls) then
    # follows the secure one, started second.
    insecure = measure(True, args.size_mib, args.seconds)
    secure = measure(False, args.size_mib, args.seconds)
    ratios = {key: secure[key] / insecure[key] for key in insecure if insecure[key]}
    result = {"size_mib": args.size_mib, "secure": secure, "insecure": insecure, "secure_over_insecure": ratios}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'phase':<18}{'secure':>12}{'insecure':>12}{'ratio':>8}")
    for key, ratio in ratios.items():
        print(f"{key:<18}{secure[key]:>12.1f}{insecure[key]:>12.1f}{ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
