#!/usr/bin/env bash
# The FireflyFS demo, end to end on this machine:
#   1. create .venv and install fireflyfs into it
#   2. start a local cluster (1 meta + 3 storage processes) in a tmp dir
#   3. write and read files through fsspec, a parquet round trip through pyarrow, and a shuffled
#      PyTorch DataLoader (2 workers) over a record file
#   4. run the sequential throughput benchmark (256 MiB by default: DEMO_BENCH_SIZE=1GiB for more)
#   5. stop the cluster and remove its tmp dir (also on failure or Ctrl-C)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
BENCH_SIZE="${DEMO_BENCH_SIZE:-256MiB}"

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
echo "== installing fireflyfs (with the PyTorch loaders, CPU torch) into .venv" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[loaders]'

CLUSTER_DIR="$(mktemp -d -t ffs-demo-XXXXXX)"
cleanup() {
    echo "== stopping the cluster in $CLUSTER_DIR" >&2
    .venv/bin/ffs cluster down --dir "$CLUSTER_DIR" >&2 || true
    rm -rf "$CLUSTER_DIR"
}
trap cleanup EXIT

echo "== starting a local cluster in $CLUSTER_DIR" >&2
URL="$(.venv/bin/ffs cluster up --dir "$CLUSTER_DIR")"
echo "cluster URL: $URL"
# Secure by default: every client below presents the admin's token and trusts the cluster's CA.
export FFS_TOKEN_FILE="$CLUSTER_DIR/admin.token" FFS_TLS_CA="$CLUSTER_DIR/tls/ca.pem"
.venv/bin/ffs cluster status --dir "$CLUSTER_DIR"
.venv/bin/ffs admin targets "$URL"

echo "== files and parquet through fsspec" >&2
.venv/bin/python - "$URL" <<'PY'
import os
import sys

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

url = sys.argv[1]
fs, _ = fsspec.url_to_fs(url)
fs.makedirs("/demo", exist_ok=True)

payload = os.urandom(10 * 1024 * 1024 + 17)          # spans three 4 MiB chunks
with fsspec.open(f"{url}/demo/blob.bin", "wb") as f:
    f.write(payload)
with fsspec.open(f"{url}/demo/blob.bin", "rb") as f:
    assert f.read() == payload
    f.seek(4 * 1024 * 1024 - 5)
    assert f.read(10) == payload[4 * 1024 * 1024 - 5: 4 * 1024 * 1024 + 5]
print(f"wrote and read back {len(payload)} bytes: identical")

table = pa.table({"id": list(range(100_000)), "name": [f"row-{i}" for i in range(100_000)]})
pq.write_table(table, "/demo/table.parquet", filesystem=fs)
back = pq.read_table("/demo/table.parquet", filesystem=fs)
assert back.equals(table)
print(f"parquet round trip: {back.num_rows} rows identical, "
      f"{fs.info('/demo/table.parquet')['size']} bytes on FireflyFS")
print("listing:", sorted(p.rsplit('/', 1)[-1] for p in fs.ls("/demo", detail=False)))
PY
.venv/bin/ffs ls -l "$URL/demo"

echo "== a shuffled PyTorch DataLoader over a record file on FireflyFS" >&2
.venv/bin/python - "$URL" <<'PY'
import random
import sys
import time

from torch.utils.data import DataLoader

from fireflyfs.loaders import RecordDataset, RecordWriter, ShuffledShardSampler


def keep_bytes(batch):
    return batch


url = sys.argv[1]
rng = random.Random(7)
records = [rng.randbytes(rng.randint(1024, 8192)) for _ in range(20_000)]
with RecordWriter(f"{url}/demo/train-000.rec") as writer:
    for record in records:
        writer.write(record)

dataset = RecordDataset([f"{url}/demo/train-000.rec"])          # samples are the records' bytes
sampler = ShuffledShardSampler(dataset, rank=0, world_size=1, seed=1234)
loader = DataLoader(dataset, batch_size=64, sampler=sampler, num_workers=2, collate_fn=keep_bytes)
expected = iter(list(iter(sampler)))                            # the epoch's order, a pure function of the seed
started = time.perf_counter()
seen = 0
for batch in loader:
    for sample in batch:
        assert bytes(sample) == records[next(expected)], "a sample differs from what was written"
    seen += len(batch)
elapsed = time.perf_counter() - started
assert seen == len(records)
print(f"DataLoader (2 workers, shuffled batches of 64): {seen} records verified "
      f"in {elapsed:.2f} s = {seen / elapsed:,.0f} samples/s")
PY

echo "== sequential throughput ($BENCH_SIZE)" >&2
.venv/bin/python bench/seq_throughput.py --url "$URL" --size "$BENCH_SIZE"

echo "== demo finished" >&2
