"""RecordDataset and TokenWindowDataset under real DataLoaders on the session cluster.

Goal: with workers started by fork, spawn or forkserver and no user set-up,
a DataLoader yields exactly the samples the sampler chose, in its order;
a batch is one batched read; and a resumed loader (torchdata's
StatefulDataLoader, or a plain DataLoader with ``samples_seen``) continues
at the exact next sample. Method: records that encode their own index, so
every sample says where it came from.
"""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fireflyfs.loaders import (RecordDataset, ShuffledShardSampler, TokenWindowDataset, _io)
from fireflyfs.loaders.records import write_records

decode_index = functools.partial(int.from_bytes, byteorder="little")   # picklable for spawn


@pytest.fixture
def ffs_url(cluster, ffs_dir):
    return f"{cluster.url}{ffs_dir}"


@pytest.fixture
def two_files(ffs_url):
    """Records 0..299 in two files of 120 and 180 records; record i holds i (8 bytes)."""
    urls = [f"{ffs_url}/part-0.rec", f"{ffs_url}/part-1.rec"]
    write_records(urls[0], (i.to_bytes(8, "little") for i in range(120)))
    write_records(urls[1], (i.to_bytes(8, "little") for i in range(120, 300)))
    return urls


def flatten(batches) -> list[int]:
    return [int(value) for batch in batches for value in batch]


def test_dataset_reads_across_files_and_decodes(two_files):
    dataset = RecordDataset(two_files, decode_index)
    assert len(dataset) == 300
    assert dataset.__getitems__([299, 0, 119, 120]) == [299, 0, 119, 120]
    assert dataset[150] == 150
    assert RecordDataset(two_files)[5] == (5).to_bytes(8, "little")      # default: bytes
    assert dataset.locate(130) == (two_files[1], 10)
    with pytest.raises(IndexError):
        dataset[300]


def test_dataset_pickles_as_urls_not_connections(two_files):
    dataset = RecordDataset(two_files, decode_index)
    dataset[0]                                           # opens files and connections
    blob = pickle.dumps(dataset)
    assert b"grpc" not in blob and len(blob) < 2000
    assert pickle.loads(blob).__getitems__([7, 200]) == [7, 200]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_dataloader_workers_yield_exactly_the_sampled_records(two_files, method):
    dataset = RecordDataset(two_files, decode_index)
    dataset[0]                          # the parent is connected before the workers start
    sampler = ShuffledShardSampler(dataset, seed=11)
    sampler.set_epoch(2)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, num_workers=2,
                        multiprocessing_context=method)
    got = flatten(loader)
    assert got == list(sampler)
    assert sorted(got) == list(range(300))


def test_ranks_with_workers_are_disjoint_and_complete(two_files):
    dataset = RecordDataset(two_files, decode_index)
    seen = []
    for rank in range(3):
        sampler = ShuffledShardSampler(dataset, rank=rank, world_size=3, seed=5)
        seen.append(flatten(DataLoader(dataset, batch_size=10, sampler=sampler, num_workers=2,
                                       multiprocessing_context="fork")))
    assert sorted(i for share in seen for i in share) == list(range(300))


def test_each_batch_is_one_batched_read(two_files, monkeypatch):
    dataset = RecordDataset(two_files, decode_index)
    dataset[0]
    calls = []
    real = _io.read_batch
    monkeypatch.setattr(_io, "read_batch",
                        lambda reads, into=None: calls.append(len(reads)) or real(reads, into))
    batches = list(DataLoader(dataset, batch_size=32, sampler=ShuffledShardSampler(dataset)))
    assert calls == [32] * 9 + [12] and len(batches) == 10


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_at_the_exact_next_batch(two_files, workers):
    import torchdata.stateful_dataloader as stateful

    dataset = RecordDataset(two_files, decode_index)

    def loader():
        sampler = ShuffledShardSampler(dataset, seed=3)
        sampler.set_epoch(1)
        return stateful.StatefulDataLoader(dataset, batch_size=8, sampler=sampler,
                                           num_workers=workers,
                                           multiprocessing_context="fork" if workers else None)

    expected = [batch.tolist() for batch in loader()]
    first = loader()
    iterator = iter(first)
    head = [next(iterator).tolist() for _ in range(13)]
    state = first.state_dict()
    assert f"'samples_consumed': {13 * 8}" in repr(state)     # our state, not a fast-forward
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    assert head + [batch.tolist() for batch in resumed] == expected


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
def test_stateful_dataloader_elastic_resume_on_more_ranks(two_files):
    """Two ranks run 5 batches; rank 0's loader state resumes three ranks: nothing lost."""
    import torchdata.stateful_dataloader as stateful

    dataset = RecordDataset(two_files, decode_index)

    def loader(rank, world):
        sampler = ShuffledShardSampler(dataset, rank=rank, world_size=world, seed=21)
        return stateful.StatefulDataLoader(dataset, batch_size=6, sampler=sampler)

    before, states = [], []
    for rank in range(2):
        old = loader(rank, 2)
        iterator = iter(old)
        before += flatten(next(iterator) for _ in range(5))
        states.append(old.state_dict())
    after = []
    for rank in range(3):
        new = loader(rank, 3)
        new.load_state_dict(states[0])
        after += flatten(new)
    assert len(set(before)) == len(before) == 60
    assert sorted(set(before + after)) == list(range(300))
    assert len(before) + len(after) - 300 < 3 * 6          # only the tail is padded


def test_plain_dataloader_resume_with_samples_seen(two_files):
    """A prefetching DataLoader is ahead of the loop: the loop's own count is the truth."""
    dataset = RecordDataset(two_files, decode_index)
    sampler = ShuffledShardSampler(dataset, rank=1, world_size=2, seed=9)
    loader = DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=2,
                        multiprocessing_context="fork", prefetch_factor=4)
    expected = flatten(loader)
    iterator = iter(loader)
    head = flatten(next(iterator) for _ in range(7))
    state = sampler.state_dict(samples_seen=7 * 5)
    del iterator
    resumed_sampler = ShuffledShardSampler(dataset, rank=1, world_size=2)
    resumed_sampler.load_state_dict(state)
    rest = flatten(DataLoader(dataset, batch_size=5, sampler=resumed_sampler))
    assert head + rest == expected


@pytest.fixture
def token_files(ffs, ffs_dir, ffs_url):
    small = (np.arange(1000) * 7 % 65536).astype("<u2")
    big = (np.arange(500, dtype=np.int64) + 70_000).astype("<u4")
    ffs.pipe_file(f"{ffs_dir}/tok-0.u16", small.tobytes())
    ffs.pipe_file(f"{ffs_dir}/tok-1.u16", small[:250].tobytes())
    ffs.pipe_file(f"{ffs_dir}/tok.u32", big.tobytes())
    return small, big


def test_token_windows_are_the_right_slices(token_files, ffs_url):
    small, big = token_files
    dataset = TokenWindowDataset([f"{ffs_url}/tok-0.u16", f"{ffs_url}/tok-1.u16"],
                                 window_tokens=65, stride_tokens=64)
    assert len(dataset) == (1000 - 65) // 64 + 1 + (250 - 65) // 64 + 1     # 15 + 3
    first_file = (1000 - 65) // 64 + 1
    windows = dataset.__getitems__([0, 3, first_file + 2])
    assert all(w.dtype == torch.int64 and w.shape == (65,) for w in windows)
    assert windows[0].tolist() == small[:65].tolist()
    assert windows[1].tolist() == small[192:257].tolist()
    assert windows[2].tolist() == small[128:193].tolist()
    wide = TokenWindowDataset(f"{ffs_url}/tok.u32", window_tokens=100, dtype="uint32")
    assert len(wide) == 5 and wide[4].tolist() == big[400:500].tolist()


def test_token_windows_through_a_spawned_loader(token_files, ffs_url):
    small, _ = token_files
    dataset = TokenWindowDataset(f"{ffs_url}/tok-0.u16", window_tokens=33, stride_tokens=32)
    sampler = ShuffledShardSampler(dataset, seed=1)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=1,
                        multiprocessing_context="spawn")
    rows = [row.tolist() for batch in loader for row in batch]
    assert rows == [small[i * 32:i * 32 + 33].tolist() for i in sampler]


def test_bad_token_arguments(token_files, ffs_url):
    with pytest.raises(ValueError):
        TokenWindowDataset(f"{ffs_url}/tok.u32", window_tokens=10, dtype="int8")
    with pytest.raises(ValueError):
        TokenWindowDataset(f"{ffs_url}/tok.u32", window_tokens=0)
    assert len(TokenWindowDataset(f"{ffs_url}/tok-1.u16", window_tokens=251)) == 0
