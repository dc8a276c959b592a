"""pyarrow over FireflyFS reads parquet with batched range reads, not a round trip per column chunk.

Method: write a hive-partitioned dataset with many row groups and columns to
the session cluster, then read it three ways while counting the client's
metadata RPCs (MetaClient._call) and storage reads (read_batch calls, plain
preads, and the fetches of the files' read cache): ``fs.read_parquet`` (two
batched reads in all), ``fs.arrow_filesystem()`` (one BatchStat for many infos,
no isfile probes, about a read per row group), and pyarrow's generic fsspec
wrapping as the baseline the tables must equal.
"""

from __future__ import annotations

import collections

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fireflyfs.client import fsspec_fs

ROWS = 30_000
ROW_GROUP = 2_000


@pytest.fixture
def dataset(ffs, ffs_dir):
    table = pa.table({"x": list(range(ROWS)), "part": [i % 3 for i in range(ROWS)],
                      "s": [f"row-{i}" for i in range(ROWS)], "y": [i * 0.5 for i in range(ROWS)],
                      "z": [i % 7 for i in range(ROWS)]})
    path = f"{ffs_dir}/ds"
    pq.write_to_dataset(table, path, partition_cols=["part"], filesystem=ffs, row_group_size=ROW_GROUP)
    return path, table


@pytest.fixture
def counts(ffs, monkeypatch):
    counted: collections.Counter = collections.Counter()
    client = ffs.client
    call = client.meta._call

    def meta_call(method, request):
        counted["meta"] += 1
        counted[method] += 1
        return call(method, request)

    monkeypatch.setattr(client.meta, "_call", meta_call)
    for name in ("read_batch", "pread", "pread_many"):
        if hasattr(client, name):
            original = getattr(client, name)
            monkeypatch.setattr(client, name, lambda *a, _o=original, _n=name, **k: (
                counted.update([_n]), _o(*a, **k))[1])
    init = fsspec_fs.SequentialReadaheadCache.__init__

    def counting_init(self, blocksize, fetcher, size, **options):
        def fetch(start, end):
            counted["cache_fetch"] += 1
            return fetcher(start, end)
        init(self, blocksize, fetch, size, **options)

    monkeypatch.setattr(fsspec_fs.SequentialReadaheadCache, "__init__", counting_init)
    return counted


def sorted_rows(table, columns):
    return sorted(zip(*(table.column(c).to_pylist() for c in columns)))


def test_read_parquet_is_two_batched_reads(ffs, dataset, counts):
    path, table = dataset
    got = ffs.read_parquet(path, columns=["x", "y", "part"])
    assert sorted_rows(got, ["x", "y", "part"]) == sorted_rows(table, ["x", "y", "part"])
    # 3 files x 5 row groups x 2 file columns = 30 column chunks: 2 batched reads, no plain reads.
    assert counts["read_batch"] + counts["pread_many"] == 2 and counts["pread"] == 0
    assert counts["cache_fetch"] == 0
    assert counts["meta"] <= 5           # isdir, Find, sizes, a BatchStat per cat_ranges
    from fireflyfs.client.arrow_fs import read_parquet
    assert all(f.fallback_reads == 0 for f in read_parquet.last_handler.files)


def test_read_parquet_whole_files_filters_and_single_files(ffs, dataset, counts):
    path, table = dataset
    whole = ffs.read_parquet(path)
    assert whole.num_rows == ROWS and sorted(whole.column("x").to_pylist()) == list(range(ROWS))
    counts.clear()
    few = ffs.read_parquet(path, filters=[("x", "<", 10)])
    assert sorted(few.column("x").to_pylist()) == list(range(10))
    assert counts["read_batch"] + counts["pread_many"] <= 2 and counts["pread"] == 0
    single = ffs.find(path)[0]
    one = ffs.read_parquet(single, columns=["s"])
    assert one.column_names == ["s"] and one.num_rows == pq.read_table(single, filesystem=ffs).num_rows
    with pytest.raises(FileNotFoundError):
        ffs.read_parquet(f"{path}/missing.parquet")


def test_arrow_filesystem_costs_few_round_trips(ffs, dataset, counts):
    path, table = dataset
    arrow = ffs.arrow_filesystem()
    assert arrow.type_name == "py::ffs"
    files = ffs.find(path)
    counts.clear()
    infos = arrow.get_file_info(files + [f"{path}/nope"])
    assert [i.type for i in infos] == [pa.fs.FileType.File] * len(files) + [pa.fs.FileType.NotFound]
    assert counts["meta"] == 1 and counts["BatchStat"] == 1          # one call for every path
    counts.clear()
    got = ds.dataset(path, filesystem=arrow, partitioning="hive").to_table(columns=["x", "z"])
    assert sorted_rows(got, ["x", "z"]) == sorted_rows(table, ["x", "z"])
    assert counts["Stat"] == 0                                          # no isfile probes
    row_groups = sum(pq.ParquetFile(f, filesystem=ffs).num_row_groups for f in files)
    column_chunks = row_groups * 2
    reads = counts["cache_fetch"] + counts["pread"] + counts["read_batch"]
    assert reads < column_chunks      # Arrow's pre-buffering merges a row group's column chunks
    selected = arrow.get_file_info(pa.fs.FileSelector(path, recursive=True))
    assert sorted(i.path for i in selected if i.type == pa.fs.FileType.File) == sorted(files)
    assert pq.read_table(files[0], filesystem=arrow).equals(pq.read_table(files[0], filesystem=ffs))


def test_cat_of_many_files_and_sizes_are_batched(ffs, ffs_dir, counts):
    for i in range(5):
        ffs.pipe_file(f"{ffs_dir}/f{i}", bytes([i]) * (100 + i))
    ffs.pipe_file(f"{ffs_dir}/big", b"b" * 100_000)
    counts.clear()
    assert ffs.sizes([f"{ffs_dir}/f{i}" for i in range(5)] + [f"{ffs_dir}/big"]) == [
        100, 101, 102, 103, 104, 100_000]
    assert counts["meta"] == 1
    counts.clear()
    got = ffs.cat(f"{ffs_dir}/*")
    assert got == {**{f"{ffs_dir}/f{i}": bytes([i]) * (100 + i) for i in range(5)},
                   f"{ffs_dir}/big": b"b" * 100_000}
    assert counts["read_batch"] + counts["pread_many"] <= 1 and counts["pread"] == 0
    with pytest.raises(FileNotFoundError):
        ffs.sizes([f"{ffs_dir}/missing"])
    assert ffs.cat([f"{ffs_dir}/f1", f"{ffs_dir}/missing"], on_error="omit") == {f"{ffs_dir}/f1": b"\x01" * 101}
