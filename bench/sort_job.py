"""A GraySort-style job on FireflyFS and on local disk in the same run (``ffs bench sort``).

What 3FS reports as its sort benchmark, scaled to one machine: N bytes of
100-byte records (a 10-byte random key, 90 bytes of payload) are generated
into input files, then sorted by key in two passes over worker processes,
and every output partition is validated::

    generate   each worker writes its input files (16 MB writes)
    partition  each worker reads its input files and splits their records by
               key range (splitters sampled from the inputs) into one
               intermediate file per (input file, partition)
    sort       each worker reads every intermediate file of its partitions,
               sorts the records by key (pyarrow's sort_indices over the keys
               as fixed-size binary) and writes one output file per partition
    validate   each output file: keys in order inside it and across partition
               boundaries; the record count and an order-free checksum of all
               records equal the input's (a sum of 64-bit record hashes, so a
               lost, duplicated or altered record shows, a permutation does not)

The same job runs on a local directory (the baseline: the machine's own disk
and page cache through the same code) and on FireflyFS, and the report gives
each phase's seconds, the sort's GiB/min (input bytes over the partition +
sort seconds, GraySort's figure) and the FireflyFS / local ratio. Workers are
spawned processes (``workers``), each opening its own file system from the URL
(FfsClient is per process: client/client.py); the pool is made before any
timing starts.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import Callable

RECORD_BYTES = 100
KEY_BYTES = 10
IO_RECORDS = 160_000                # 16 MB per read or write call
SAMPLE_RECORDS = 1000               # per input file, for the splitters
_HASH_SEED = 0x9E3779B97F4A7C15


@dataclasses.dataclass
class SortConfig:
    size_bytes: int = 256 << 20      # input bytes (rounded down to whole records)
    workers: int = 0                 # 0: one per CPU
    input_files: int = 0             # 0: at most 256 MiB each, at least 2 per worker
    partitions: int = 0              # 0: enough for about 64 MiB each, at least 2 per worker
    url: str | None = None           # an existing cluster; None: start a local one
    replicas: int = 1
    tmp_dir: str | None = None       # where the local baseline and a local cluster live
    seed: int = 0

    def resolved(self) -> "SortConfig":
        workers = self.workers or os.cpu_count() or 1
        # A worker holds one input file (and its partitioned copy) or one partition (and its
        # sorted copy) in memory at a time: both are bounded by default.
        inputs = self.input_files or max(2 * workers, -(-self.size_bytes // (256 << 20)))
        partitions = self.partitions or max(2 * workers, -(-self.size_bytes // (64 << 20)))
        return dataclasses.replace(self, workers=workers, input_files=inputs, partitions=partitions)

    def check(self) -> None:
        if self.size_bytes < RECORD_BYTES:
            raise ValueError(f"--size must hold at least one {RECORD_BYTES}-byte record")
        if self.workers < 0 or self.input_files < 0 or self.partitions < 0:
            raise ValueError("--workers, --input-files and --partitions must be >= 1 (0: automatic)")


# ---------------------------------------------------------------- record helpers (numpy, per worker)

def _np():
    import numpy

    return numpy


def records_view(raw):
    """(n, 100) uint8 view of raw bytes."""
    np = _np()
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)


def record_hashes(records):
    """One 64-bit hash per record (its 25 little-endian words mixed with odd constants)."""
    np = _np()
    words = np.ascontiguousarray(records).view("<u4").astype(np.uint64)
    constants = np.random.default_rng(_HASH_SEED).integers(1, 1 << 62, words.shape[1], dtype=np.uint64) | 1
    with np.errstate(over="ignore"):
        mixed = (words * constants).sum(axis=1, dtype=np.uint64)
        mixed ^= mixed >> np.uint64(29)
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(32)
    return mixed


def checksum(records) -> int:
    """Order-free: the sum (mod 2**64) of the records' hashes."""
    np = _np()
    with np.errstate(over="ignore"):
        return int(record_hashes(records).sum(dtype=np.uint64))


def key_prefixes(records):
    """Each key's first 8 bytes as a big-endian uint64 (the order of the keys, up to ties)."""
    np = _np()
    return np.ascontiguousarray(records[:, :8]).view(">u8").ravel().astype(np.uint64)


def keys_in_order(records) -> bool:
    """Every key <= the next one (all 10 bytes, lexicographic)."""
    np = _np()
    if len(records) < 2:
        return True
    prefix = key_prefixes(records)
    tail = np.ascontiguousarray(records[:, 8:KEY_BYTES]).view(">u2").ravel()
    before, after = prefix[:-1], prefix[1:]
    return bool(np.all((before < after) | ((before == after) & (tail[:-1] <= tail[1:]))))


def sort_records(records):
    """The records ordered by their 10-byte keys (pyarrow sorts the keys as fixed-size binary)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    np = _np()
    keys = np.ascontiguousarray(records[:, :KEY_BYTES])
    array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(KEY_BYTES), len(keys), [None, pa.py_buffer(keys)])
    order = pc.sort_indices(array).to_numpy()
    return records[order]


# ---------------------------------------------------------------- worker tasks (run in spawned processes)

_FS: dict[str, object] = {}


@dataclasses.dataclass(frozen=True)
class Store:
    """Where a job runs: a file system (fsspec URL and storage options) and a directory in it."""
    name: str
    url: str
    options: tuple = ()           # (key, value) pairs: token=, tls_ca= for a cluster this run started
    base: str = ""

    def fs(self):
        """This process's file system for the store (one per worker, reused by its tasks)."""
        fs = _FS.get(self.url)
        if fs is None:
            import fsspec

            fs, _ = fsspec.url_to_fs(self.url, **dict(self.options))
            _FS[self.url] = fs
        return fs


def _read_all(fs, path: str) -> bytes:
    with fs.open(path, "rb", block_size=IO_RECORDS * RECORD_BYTES) as handle:
        return handle.read()


def generate_input(store: Store, path: str, records: int, seed: int) -> tuple[int, int, bytes]:
    """Write one input file of random records; (records, checksum, a sample of its keys)."""
    np = _np()
    fs = store.fs()
    rng = np.random.default_rng(seed)
    total = 0
    sample = b""
    with fs.open(path, "wb", block_size=IO_RECORDS * RECORD_BYTES) as handle:
        left = records
        while left:
            count = min(left, IO_RECORDS)
            block = records_view(rng.bytes(count * RECORD_BYTES))
            if not sample:
                sample = np.ascontiguousarray(block[:SAMPLE_RECORDS, :KEY_BYTES]).tobytes()
            with np.errstate(over="ignore"):
                total = (total + checksum(block)) % (1 << 64)
            handle.write(block.data)
            left -= count
    return records, total, sample


def partition_input(store: Store, path: str, out_dir: str, splitters: bytes, partitions: int, tag: str) -> int:
    """Split one input file by key range into out_dir/p<partition>/<tag>; records read."""
    np = _np()
    fs = store.fs()
    records = records_view(_read_all(fs, path))
    bounds = np.frombuffer(splitters, dtype=">u8").astype(np.uint64)
    owner = np.searchsorted(bounds, key_prefixes(records), side="right")
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=partitions)
    grouped = records[order]
    start = 0
    for number, count in enumerate(counts):
        if count:
            fs.pipe_file(f"{out_dir}/p{number:05d}/{tag}", grouped[start:start + count].tobytes())
        start += count
    return len(records)


def sort_partition(store: Store, in_dir: str, out_path: str) -> int:
    """Read every intermediate file of one partition, sort its records, write the output file."""
    np = _np()
    fs = store.fs()
    parts = sorted(fs.ls(in_dir, detail=False)) if fs.exists(in_dir) else []
    pieces = [_read_all(fs, path) for path in parts]
    records = records_view(b"".join(pieces)) if pieces else np.zeros((0, RECORD_BYTES), np.uint8)
    ordered = sort_records(records)
    with fs.open(out_path, "wb", block_size=IO_RECORDS * RECORD_BYTES) as handle:
        view = memoryview(ordered.tobytes())
        for start in range(0, len(view), IO_RECORDS * RECORD_BYTES):
            handle.write(view[start:start + IO_RECORDS * RECORD_BYTES])
    return len(records)


def validate_partition(store: Store, path: str) -> tuple[int, int, bool, bytes, bytes]:
    """(records, checksum, keys in order, first key, last key) of one output file."""
    fs = store.fs()
    records = records_view(_read_all(fs, path))
    if not len(records):
        return 0, 0, True, b"", b""
    return (len(records), checksum(records), keys_in_order(records), records[0, :KEY_BYTES].tobytes(),
            records[-1, :KEY_BYTES].tobytes())


# ---------------------------------------------------------------- one job on one store

def judge(outputs: list[str], checked: list[tuple], records_in: int, checksum_in: int) -> tuple[int, list[str]]:
    """(partitions valid, problems) from each output's validate_partition result, in key order."""
    problems = []
    previous_last = b""
    valid = 0
    for path, (count, _, ordered, first, last) in zip(outputs, checked):
        if not ordered:
            problems.append(f"{path}: keys out of order")
        elif count and previous_last and first < previous_last:
            problems.append(f"{path}: first key below the previous partition's last key")
        else:
            valid += 1
        if count:
            previous_last = last
    records_out = sum(entry[0] for entry in checked)
    checksum_out = sum(entry[1] for entry in checked) % (1 << 64)
    if records_out != records_in:
        problems.append(f"{records_out} records out, {records_in} in")
    if checksum_out != checksum_in:
        problems.append(f"checksum of the output {checksum_out:#018x} != the input's {checksum_in:#018x}")
    return valid, problems


@dataclasses.dataclass
class JobResult:
    store: str
    url: str
    records: int
    generate_s: float
    partition_s: float
    sort_s: float
    validate_s: float
    partitions_valid: int
    partitions: int
    valid: bool
    problems: list[str]

    @property
    def sort_gib_per_min(self) -> float:
        seconds = self.partition_s + self.sort_s
        return self.records * RECORD_BYTES / (1 << 30) / seconds * 60 if seconds else 0.0


def run_job(pool, store: Store, config: SortConfig, progress: Callable[[str], None]) -> JobResult:
    """Generate, sort and validate under the store's base directory with the pool's workers."""
    np = _np()
    c = config
    base, name = store.base, store.name
    records_total = c.size_bytes // RECORD_BYTES
    per_file = [records_total // c.input_files + (i < records_total % c.input_files) for i in range(c.input_files)]
    inputs = [f"{base}/input/in-{i:05d}" for i in range(c.input_files)]

    def all_of(function, *argument_lists):
        return list(pool.map(function, *argument_lists))

    progress(f"{name}: generate {c.size_bytes / (1 << 20):.0f} MiB in {c.input_files} files")
    started = time.perf_counter()
    generated = all_of(generate_input, [store] * len(inputs), inputs, per_file,
                       [c.seed * 1_000_003 + i for i in range(len(inputs))])
    generate_s = time.perf_counter() - started
    input_checksum = sum(g[1] for g in generated) % (1 << 64)
    sample = np.frombuffer(b"".join(g[2] for g in generated), dtype=np.uint8).reshape(-1, KEY_BYTES)
    prefixes = np.sort(key_prefixes(sample))
    cut = [prefixes[len(prefixes) * (i + 1) // c.partitions] for i in range(c.partitions - 1)]
    splitters = np.array(cut, dtype=np.uint64).astype(">u8").tobytes()

    progress(f"{name}: partition into {c.partitions} key ranges")
    started = time.perf_counter()
    all_of(partition_input, [store] * len(inputs), inputs, [f"{base}/spill"] * len(inputs),
           [splitters] * len(inputs), [c.partitions] * len(inputs), [f"in-{i:05d}" for i in range(len(inputs))])
    partition_s = time.perf_counter() - started

    progress(f"{name}: sort {c.partitions} partitions")
    outputs = [f"{base}/output/part-{p:05d}" for p in range(c.partitions)]
    started = time.perf_counter()
    all_of(sort_partition, [store] * c.partitions, [f"{base}/spill/p{p:05d}" for p in range(c.partitions)], outputs)
    sort_s = time.perf_counter() - started

    progress(f"{name}: validate")
    started = time.perf_counter()
    checked = all_of(validate_partition, [store] * c.partitions, outputs)
    validate_s = time.perf_counter() - started
    valid_partitions, problems = judge(outputs, checked, records_total, input_checksum)
    return JobResult(name, store.url, records_total, round(generate_s, 3), round(partition_s, 3), round(sort_s, 3),
                     round(validate_s, 3), valid_partitions, c.partitions, not problems, problems)


@dataclasses.dataclass
class SortReport:
    config: dict
    results: list[JobResult]
    environment: dict

    def as_dict(self) -> dict:
        by_store = {r.store: r for r in self.results}
        out = {"config": self.config, "environment": self.environment, "stores": {}}
        for result in self.results:
            entry = dataclasses.asdict(result)
            entry["sort_gib_per_min"] = round(result.sort_gib_per_min, 3)
            out["stores"][result.store] = entry
        if "fireflyfs" in by_store and "local" in by_store and by_store["local"].sort_gib_per_min:
            out["fireflyfs_over_local"] = round(by_store["fireflyfs"].sort_gib_per_min
                                                / by_store["local"].sort_gib_per_min, 3)
        out["valid"] = all(result.valid for result in self.results)
        return out


def run(config: SortConfig, progress: Callable[[str], None] = lambda text: None) -> SortReport:
    """The job on local disk, then on FireflyFS (a local cluster unless config.url), in one run."""
    config.check()
    config = config.resolved()
    work = tempfile.mkdtemp(prefix="ffs-bench-sort-", dir=config.tmp_dir)
    cluster = None
    fireflyfs = None
    results = []
    try:
        if config.url is None:
            from fireflyfs.deploy.local_cluster import LocalCluster

            progress("starting a local cluster")
            cluster = LocalCluster(os.path.join(work, "cluster"), storage_nodes=3, targets_per_node=1,
                                   replicas=config.replicas, python=sys.executable)
            url = cluster.up()
            options = () if cluster.insecure else (("token", cluster.admin_token()),
                                                   ("tls_ca", str(cluster.ca_file)))
        else:
            url, options = config.url, ()      # the token and CA as any client finds them
        import fsspec

        _, root = fsspec.url_to_fs(url, **dict(options))      # a URL's own path: the job goes below it
        fireflyfs = Store("fireflyfs", url, options, f"{root.rstrip('/')}/ffs-bench-sort-{uuid.uuid4().hex[:8]}")
        local = Store("local", "file://", (("auto_mkdir", True),), os.path.join(work, "local"))
        # Spawned, not forked: no gRPC threads or sockets of this process are inherited.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(config.workers, mp_context=context) as pool:
            for _ in pool.map(_warm, range(config.workers)):    # every worker up before any timing
                pass
            results.append(run_job(pool, local, config, progress))
            shutil.rmtree(local.base, ignore_errors=True)      # its pages need not compete
            try:
                results.append(run_job(pool, fireflyfs, config, progress))
            finally:
                _remove_tree(fireflyfs)
        environment = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                       "local_cluster": cluster is not None, "load_average_1m_end": os.getloadavg()[0]}
        return SortReport(dataclasses.asdict(config), results, environment)
    finally:
        if cluster is not None:
            cluster.down()
        shutil.rmtree(work, ignore_errors=True)


def _warm(_: int) -> int:
    _np()
    import pyarrow.compute  # noqa: F401 - imported once per worker, outside the timed phases

    time.sleep(0.2)          # one task per worker: the pool spreads them over every process
    return os.getpid()


def _remove_tree(store: Store) -> None:
    fs = store.fs()
    if fs.exists(store.base):
        fs.rm(store.base, recursive=True)
