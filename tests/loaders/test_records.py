"""Record files: writer/reader round trips on FireflyFS and local disk, loud corruption.

Goal: any records written come back byte for byte, a batch of indices across
files is one batched read, and every kind of damage (a record's bytes, the
index, the header, not a record file at all) raises an error naming the file
(and the record index for record damage). Method: real files on the session
cluster and in tmp_path; damage is made by rewriting a file with bytes flipped.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from fireflyfs.loaders import (CorruptRecord, CorruptRecordFile, RecordReader, RecordWriter,
                               _io)
from fireflyfs.loaders.record_format import HEADER_BYTES, data_start
from fireflyfs.loaders.records import read_records, reader_for, write_records


def sample_records(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 7, 100, 1024, 8192])) for _ in range(count)]


@pytest.fixture
def ffs_url(cluster, ffs_dir):
    return f"{cluster.url}{ffs_dir}"


@pytest.mark.parametrize("where", ["ffs", "local"])
def test_round_trip_any_order(where, ffs_url, tmp_path):
    base = ffs_url if where == "ffs" else str(tmp_path)
    records = sample_records(500)
    url = f"{base}/data/a.rec"
    assert write_records(url, records) == 500
    reader = RecordReader(url)
    assert len(reader) == 500
    wanted = random.Random(1).sample(range(500), 200) + [0, 499, 0]
    assert reader.read(wanted) == [records[i] for i in wanted]
    assert list(reader) == records
    assert reader[499] == records[499]
    with pytest.raises(IndexError):
        reader[500]


def test_empty_file_and_empty_records(ffs_url):
    write_records(f"{ffs_url}/empty.rec", [])
    assert len(RecordReader(f"{ffs_url}/empty.rec")) == 0
    write_records(f"{ffs_url}/blanks.rec", [b"", b"", b"x"])
    assert RecordReader(f"{ffs_url}/blanks.rec").read([2, 0, 1]) == [b"x", b"", b""]


def test_writer_streams_and_discards_on_error(ffs, ffs_url, ffs_dir):
    url = f"{ffs_url}/stream.rec"
    with RecordWriter(url) as writer:
        for number in range(1000):
            assert writer.write(number.to_bytes(4, "little") * 3) == number
    assert len(writer) == 1000
    before = ffs.cat_file(f"{ffs_dir}/stream.rec")
    with pytest.raises(RuntimeError):
        with RecordWriter(url) as writer:
            writer.write(b"replacement")
            raise RuntimeError("the producer failed")
    assert ffs.cat_file(f"{ffs_dir}/stream.rec") == before      # old file untouched
    assert sorted(ffs.ls(ffs_dir, detail=False)) == [f"{ffs_dir}/stream.rec"]  # no temp left


def test_batch_across_files_is_one_batched_read(ffs_url, monkeypatch):
    first, second = sample_records(50, 1), sample_records(60, 2)
    write_records(f"{ffs_url}/x.rec", first)
    write_records(f"{ffs_url}/y.rec", second)
    readers = reader_for(f"{ffs_url}/x.rec"), reader_for(f"{ffs_url}/y.rec")
    len(readers[0]), len(readers[1])            # header and index loaded before counting
    calls = []
    real = _io.read_batch
    monkeypatch.setattr(_io, "read_batch",
                        lambda reads, into=None: calls.append(len(reads)) or real(reads, into))
    wanted = [(readers[1], 59), (readers[0], 3), (readers[1], 0), (readers[0], 49)]
    assert read_records(wanted) == [second[59], first[3], second[0], first[49]]
    assert calls == [4]


def rewrite_with_flip(fs, path: str, position: int) -> None:
    data = bytearray(fs.cat_file(path))
    data[position] ^= 0x40
    fs.pipe_file(path, bytes(data))
    _io.clear_cache()


def test_corrupt_record_names_index_and_file(ffs, ffs_url, ffs_dir):
    records = [bytes([n]) * 100 for n in range(20)]
    url = f"{ffs_url}/bad.rec"
    write_records(url, records)
    rewrite_with_flip(ffs, f"{ffs_dir}/bad.rec", data_start(20) + 13 * 100 + 42)
    reader = RecordReader(url)
    assert reader.read([12, 14]) == [records[12], records[14]]   # neighbours are fine
    with pytest.raises(CorruptRecord) as failure:
        reader.read([1, 13])
    assert failure.value.index == 13
    assert "record 13" in str(failure.value) and url in str(failure.value)
    assert isinstance(failure.value, OSError)            # a ChecksumMismatch, errno EIO
    assert RecordReader(url, verify=False).read([13])[0] != records[13]


@pytest.mark.parametrize("position, message", [
    (0, "not a FireflyFS record file"),            # magic
    (17, "header CRC32C"),                         # record count
    (HEADER_BYTES + 8, "index CRC32C"),            # second offset
])
def test_damaged_header_or_index_fails_at_open(ffs, ffs_url, ffs_dir, position, message):
    url = f"{ffs_url}/hdr.rec"
    write_records(url, [b"abc"] * 5)
    rewrite_with_flip(ffs, f"{ffs_dir}/hdr.rec", position)
    with pytest.raises(CorruptRecordFile, match=message) as failure:
        len(RecordReader(url))
    assert url in str(failure.value)


def test_truncated_or_foreign_file(ffs, ffs_url, ffs_dir):
    ffs.pipe_file(f"{ffs_dir}/short.rec", b"FFLY")
    with pytest.raises(CorruptRecordFile, match="too short"):
        len(RecordReader(f"{ffs_url}/short.rec"))
    write_records(f"{ffs_url}/cut.rec", [b"x" * 100] * 3)
    data = ffs.cat_file(f"{ffs_dir}/cut.rec")
    ffs.pipe_file(f"{ffs_dir}/cut.rec", data[:-10])
    with pytest.raises(CorruptRecordFile, match="index covers"):
        len(RecordReader(f"{ffs_url}/cut.rec"))


def test_large_index_needs_a_second_read(tmp_path):
    count = 100_000            # index of 1.2 MB: more than the first speculative read
    url = str(tmp_path / "many.rec")
    write_records(url, (n.to_bytes(3, "little") for n in range(count)))
    reader = RecordReader(url)
    assert len(reader) == count
    assert reader.read([count - 1, 0, 77_777]) == [
        n.to_bytes(3, "little") for n in (count - 1, 0, 77_777)]


def test_bulk_reads_are_cut_into_concurrent_requests(ffs, ffs_dir, ffs_url, monkeypatch):
    """read_ranges_into splits big ranges into ~bulk_request_bytes requests and fills every
    buffer exactly, whatever the cut."""
    data = random.Random(3).randbytes(1_000_003)
    ffs.pipe_file(f"{ffs_dir}/bulk.bin", data)
    monkeypatch.setattr(_io, "bulk_request_bytes", 100_000)
    opened = _io.open_file(f"{ffs_url}/bulk.bin", cached=False)
    ranges = [(opened, 5, 450_000), (opened, 0, 1), (opened, 600_000, 400_003), (opened, 7, 0)]
    groups = _io._bulk_groups(ranges, [memoryview(bytearray(n)) for _, _, n in ranges])
    assert len(groups) == 10 and all(sum(p[2] for p in g) <= 100_000 for g in groups)
    buffers = [bytearray(n) for _, _, n in ranges]
    _io.read_ranges_into(ranges, [memoryview(b) for b in buffers])
    assert [bytes(b) for b in buffers] == [data[5:450_005], data[:1], data[600_000:], b""]
    with pytest.raises(EOFError):
        _io.read_ranges_into([(opened, 999_000, 5000)], [memoryview(bytearray(5000))])


def test_record_format_needs_neither_torch_nor_numpy(tmp_path):
    script = (
        "import sys\n"
        "from fireflyfs.loaders import RecordReader, RecordWriter\n"
        f"url = {str(tmp_path / 'x.rec')!r}\n"
        "with RecordWriter(url) as w:\n"
        "    w.write_all([b'a', b'bc'])\n"
        "assert RecordReader(url).read([1, 0]) == [b'bc', b'a']\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_one_batch_across_ffs_and_local_files(ffs_url, tmp_path):
    """A batch mixing backends is still one read_batch call; each record lands in its slot."""
    remote, local = sample_records(30, 4), sample_records(20, 5)
    write_records(f"{ffs_url}/mixed.rec", remote)
    write_records(str(tmp_path / "mixed.rec"), local)
    readers = reader_for(f"{ffs_url}/mixed.rec"), reader_for(str(tmp_path / "mixed.rec"))
    wanted = [(readers[1], 19), (readers[0], 0), (readers[1], 3), (readers[0], 29), (readers[0], 7)]
    assert read_records(wanted) == [local[19], remote[0], local[3], remote[29], remote[7]]
    batch = _io.read_batch([(readers[0]._load()[0], 0, 4), (readers[1]._load()[0], 0, 4)])
    assert [bytes(batch.view(n)) for n in range(2)] == [b"FFLY", b"FFLY"]
