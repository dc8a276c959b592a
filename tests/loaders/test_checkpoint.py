"""save_checkpoint / load_checkpoint on the session cluster.

Goal: any state dict comes back equal (dtypes, shapes, nesting, shared
tensors, parameters); writes are whole-chunk aligned and reads batched; a
save that dies part-way, by an exception or by SIGKILL, leaves the previous
checkpoint loadable; damage is reported, never returned; and plain
torch.save/torch.load through fsspec.open interoperate. Method: real files,
faults injected by replacing the function that produces each tensor's bytes.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap

import fsspec
import pytest
import torch

from fireflyfs.client.client import FfsClient
from fireflyfs.common.errors import InvalidArgument
from fireflyfs.loaders import CorruptCheckpoint, _io, checkpoint, load_checkpoint, save_checkpoint

small_chunk_bytes = 64 * 1024


@pytest.fixture
def ffs_url(cluster, ffs_dir):
    return f"{cluster.url}{ffs_dir}"


@pytest.fixture
def small_chunks(ffs, ffs_dir, cluster):
    """A directory whose files have 64 KiB chunks, so a few MiB span many chunks and windows."""
    path = f"{ffs_dir}/small"
    ffs.mkdir(path, chunk_size=small_chunk_bytes)
    return f"{cluster.url}{path}", path


def state(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(700, 1000, generator=generator)            # 2.8 MB: many chunks
    out = collections.OrderedDict(
        weight=weight,
        tied=weight,                                                  # the same tensor twice
        view=weight[3:5, ::7],                                        # a strided view
        bf16=torch.randn(33, generator=generator).to(torch.bfloat16),
        mask=torch.rand(17, generator=generator) > 0.5,
        complex=torch.randn(4, dtype=torch.complex64, generator=generator),
        scalar=torch.tensor(3.5),
        empty=torch.empty(0, 4),
        step=torch.tensor(12, dtype=torch.int64),
        param=torch.nn.Parameter(torch.randn(5, generator=generator)),
    )
    return {"model": out, "optimizer": {"lr": 1e-3, "betas": (0.9, 0.95), "names": ["a", "b"]},
            "epoch": seed, "size": torch.Size([2, 3]), "dtype": torch.float16}


def assert_same(got, want):
    assert type(got) is type(want) or isinstance(want, torch.Tensor)
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)
        assert isinstance(got, torch.nn.Parameter) == isinstance(want, torch.nn.Parameter)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b)
    else:
        assert got == want


def test_round_trip(small_chunks):
    url = f"{small_chunks[0]}/model.ckpt"
    want = state(1)
    size = save_checkpoint(want, url)
    assert size > 700 * 1000 * 4
    got = load_checkpoint(url)
    assert_same(got, want)
    assert got["model"]["tied"] is got["model"]["weight"]
    assert got["model"]["param"].requires_grad


def test_round_trip_on_local_disk(tmp_path):
    url = str(tmp_path / "sub" / "model.ckpt")
    save_checkpoint(state(2), url)
    assert_same(load_checkpoint(url), state(2))
    assert os.listdir(tmp_path / "sub") == ["model.ckpt"]
    moved = load_checkpoint(url, map_location="meta")
    assert moved["model"]["weight"].is_meta and isinstance(moved["model"]["param"],
                                                           torch.nn.Parameter)


def test_writes_are_whole_chunk_windows_and_reads_are_batched(small_chunks, monkeypatch):
    url = f"{small_chunks[0]}/aligned.ckpt"
    writes, bulk_reads = [], []
    real_pwrite, real_read_into = FfsClient.pwrite, _io.read_ranges_into
    monkeypatch.setattr(FfsClient, "pwrite", lambda self, handle, offset, data: (
        writes.append((offset, len(data))) or real_pwrite(self, handle, offset, data)))
    monkeypatch.setattr(_io, "read_ranges_into", lambda ranges, buffers: (
        bulk_reads.append(len(ranges)) or real_read_into(ranges, buffers)))
    monkeypatch.setattr(_io, "bulk_request_bytes", 256 * 1024)   # many concurrent requests
    size = save_checkpoint(state(3), url)
    window = small_chunk_bytes * _io.write_window_chunks
    writes.sort()
    assert [offset for offset, _ in writes] == [0] + [o + n for o, n in writes[:-1]]  # contiguous
    assert all(offset % small_chunk_bytes == 0 and 0 < length <= window for offset, length in writes)
    assert all(length % small_chunk_bytes == 0 for _, length in writes[:-1])   # whole chunks
    assert sum(length for _, length in writes) == size
    assert_same(load_checkpoint(url), state(3))
    assert bulk_reads == [8]    # the 8 non-empty tensors (tied stored once) in one bulk read


def test_exception_mid_save_leaves_the_previous_checkpoint(small_chunks, ffs, monkeypatch):
    url, path = small_chunks
    save_checkpoint(state(1), f"{url}/run.ckpt")
    calls = []
    real = checkpoint._tensor_bytes

    def fail_on_fourth(tensor):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("disk on fire")
        return real(tensor)

    monkeypatch.setattr(checkpoint, "_tensor_bytes", fail_on_fourth)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_checkpoint(state(2), f"{url}/run.ckpt")
    assert_same(load_checkpoint(f"{url}/run.ckpt"), state(1))
    assert ffs.ls(path, detail=False) == [f"{path}/run.ckpt"]      # the temp file is gone


CRASHING_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from fireflyfs.loaders import checkpoint, save_checkpoint
    real, calls = checkpoint._tensor_bytes, []
    def die_on_fourth(tensor):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)      # no cleanup, no finally: a real crash
        return real(tensor)
    checkpoint._tensor_bytes = die_on_fourth
    state = {"w": [torch.full((300_000,), float(i)) for i in range(8)]}
    save_checkpoint(state, sys.argv[1])
""")


def test_sigkill_mid_save_leaves_the_previous_checkpoint(small_chunks, ffs):
    url, path = small_chunks
    before = {"w": [torch.full((300_000,), -1.0)]}
    save_checkpoint(before, f"{url}/run.ckpt")
    child = subprocess.run([sys.executable, "-c", CRASHING_SAVE, f"{url}/run.ckpt"],
                           timeout=120, capture_output=True)
    assert child.returncode == -9, child.stderr.decode()
    assert_same(load_checkpoint(f"{url}/run.ckpt"), before)
    leftovers = [name for name in ffs.ls(path, detail=False) if name != f"{path}/run.ckpt"]
    assert len(leftovers) == 1 and "/.run.ckpt.tmp-" in leftovers[0]   # an orphan, ignored


def flip(fs, path: str, position: int) -> None:
    data = bytearray(fs.cat_file(path))
    data[position] ^= 1
    fs.pipe_file(path, bytes(data))


def test_damage_is_reported(ffs, ffs_dir, ffs_url):
    save_checkpoint({"a": torch.zeros(100), "b": torch.ones(100)}, f"{ffs_url}/c.ckpt")
    pristine = ffs.cat_file(f"{ffs_dir}/c.ckpt")
    flip(ffs, f"{ffs_dir}/c.ckpt", 512 + 10)     # tensor 1 ("b"): "a" is [64, 464), b at 512
    with pytest.raises(CorruptCheckpoint, match="tensor 1 .*CRC32C"):
        load_checkpoint(f"{ffs_url}/c.ckpt")
    ffs.pipe_file(f"{ffs_dir}/c.ckpt", pristine)
    flip(ffs, f"{ffs_dir}/c.ckpt", len(pristine) - 60)         # inside the table
    with pytest.raises(CorruptCheckpoint, match="table"):
        load_checkpoint(f"{ffs_url}/c.ckpt")
    ffs.pipe_file(f"{ffs_dir}/c.ckpt", pristine[:-5])
    with pytest.raises(CorruptCheckpoint):
        load_checkpoint(f"{ffs_url}/c.ckpt")
    ffs.pipe_file(f"{ffs_dir}/c.ckpt", b"just some bytes, not a checkpoint at all......")
    with pytest.raises(CorruptCheckpoint, match="not a FireflyFS checkpoint"):
        load_checkpoint(f"{ffs_url}/c.ckpt")


def test_torch_save_and_load_through_fsspec_interoperate(ffs_url):
    want = state(4)
    with fsspec.open(f"{ffs_url}/plain.pt", "wb") as file:
        torch.save(want, file)
    with fsspec.open(f"{ffs_url}/plain.pt", "rb") as file:
        assert_same(torch.load(file), want)
    assert_same(load_checkpoint(f"{ffs_url}/plain.pt"), want)   # our loader reads it too


def test_torch_load_through_fsspec_reads_ahead_over_its_zip_records(ffs_url):
    """torch.load reads a header, skips a few bytes, reads the data: one storage round trip
    per read before the cache tolerated small forward skips (client/fsspec_fs.py)."""
    want = {f"t{n}": torch.full((256 + n,), float(n)) for n in range(200)}
    with fsspec.open(f"{ffs_url}/many.pt", "wb") as file:
        torch.save(want, file)
    with fsspec.open(f"{ffs_url}/many.pt", "rb") as file:
        assert_same(torch.load(file), want)
        reads = file.cache.hit_count + file.cache.miss_count
        assert reads > 400                                  # two or more per tensor
        assert file.cache.miss_count < reads // 20


class Custom:
    def __init__(self, value):
        self.value = value


def test_weights_only_refuses_arbitrary_objects(ffs_url):
    save_checkpoint({"w": torch.ones(2), "custom": Custom(5)}, f"{ffs_url}/obj.ckpt")
    with pytest.raises(Exception, match="weights_only"):
        load_checkpoint(f"{ffs_url}/obj.ckpt")
    assert load_checkpoint(f"{ffs_url}/obj.ckpt", weights_only=False)["custom"].value == 5


def test_unsupported_tensors_are_refused_before_writing(ffs, ffs_dir, ffs_url):
    with pytest.raises(InvalidArgument, match="torch.save"):
        save_checkpoint({"s": torch.eye(3).to_sparse()}, f"{ffs_url}/sparse.ckpt")
    assert ffs.ls(ffs_dir, detail=False) == []
