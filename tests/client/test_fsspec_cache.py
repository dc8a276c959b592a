"""The default read cache ("ffs-adaptive"): exact fetches for random reads, readahead for scans.

Method: drive SequentialReadaheadCache over an in-memory file through a fetcher
that records every (start, end) it is asked for, and check what is fetched
(no waste on random reads, a window doubling up to the block size on
sequential ones, large reads straight through) and, with hypothesis, that any
mix of reads returns the file's bytes.
"""

from __future__ import annotations

import fsspec.caching
from hypothesis import given, settings
from hypothesis import strategies as st

from fireflyfs.client.fsspec_fs import FireflyFileSystem, SequentialReadaheadCache
from fireflyfs.common.limits import KiB

BLOCK = 64 * KiB


def make(size: int, **options):
    data = bytes((i * 131 + 7) % 256 for i in range(size))
    fetched: list[tuple[int, int]] = []

    def fetcher(start, end):
        fetched.append((start, end))
        return data[start:end]

    return SequentialReadaheadCache(BLOCK, fetcher, size, **options), data, fetched


def test_registered_and_the_filesystem_default():
    assert fsspec.caching.caches["ffs-adaptive"] is SequentialReadaheadCache
    assert FireflyFileSystem.default_cache_type == "ffs-adaptive"


def test_random_reads_fetch_exactly_what_they_ask():
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB)
    for start in (500_000, 10, 900_000, 300_000, 700_000):
        assert cache._fetch(start, start + 4 * KiB) == data[start:start + 4 * KiB]
    assert fetched == [(s, s + 4 * KiB) for s in (500_000, 10, 900_000, 300_000, 700_000)]
    assert cache.total_requested_bytes == 5 * 4 * KiB


def test_sequential_reads_ramp_a_readahead_window_up_to_the_block():
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB, sequential_reads_min=2)
    position, step = 0, 1 * KiB
    while position < 400 * KiB:
        assert cache._fetch(position, position + step) == data[position:position + step]
        position += step
    sizes = [end - start for start, end in fetched]
    assert sizes[:2] == [step, step]                # not yet known to be sequential
    assert sizes[2:6] == [8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB]
    assert set(sizes[6:]) == {BLOCK}               # capped at the block size
    assert cache.hit_count > cache.miss_count
    # Fetched ranges never overlap: each byte came over once.
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(fetched, fetched[1:]))


def test_a_jump_resets_the_window_and_large_reads_bypass():
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB)
    for position in range(0, 8 * KiB, KiB):
        cache._fetch(position, position + KiB)
    fetched.clear()
    assert cache._fetch(600_000, 601_000) == data[600_000:601_000]
    assert fetched == [(600_000, 601_000)]
    assert cache._fetch(0, BLOCK) == data[:BLOCK] and fetched[-1] == (0, BLOCK)
    assert cache._fetch(600_100, 600_200) == data[600_100:600_200]   # still the kept window
    assert len(fetched) == 2


def test_small_forward_skips_count_as_sequential():
    """A zip scan (torch.load): a 30-byte header, then the data a few dozen bytes on, then
    the next header; the window ramps as for a plain scan instead of one fetch per read."""
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB, forward_gap_max_bytes=100)
    position, reads = 0, 0
    while position < 600 * KiB:
        assert cache._fetch(position, position + 30) == data[position:position + 30]
        start = position + 30 + 34            # name and alignment padding skipped
        assert cache._fetch(start, start + 2 * KiB) == data[start:start + 2 * KiB]
        position, reads = start + 2 * KiB, reads + 2
    assert len(fetched) < reads // 10
    assert set(end - start for start, end in fetched[-3:]) == {BLOCK}


def test_a_skip_longer_than_the_gap_resets_the_window():
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB, forward_gap_max_bytes=100)
    for position in range(0, 8 * KiB, KiB):
        cache._fetch(position, position + KiB)
    fetched.clear()
    assert cache._fetch(200_000, 200_100) == data[200_000:200_100]
    assert fetched == [(200_000, 200_100)]          # exactly what was asked: no readahead


def test_a_large_read_around_the_cache_keeps_the_scan_going():
    cache, data, fetched = make(1 << 20, readahead_min_bytes=8 * KiB)
    for position in range(0, 4 * KiB, KiB):
        cache._fetch(position, position + KiB)
    cache.read_past(4 * KiB, 4 * KiB + 3 * BLOCK)     # FireflyFile streamed it straight
    fetched.clear()
    start = 4 * KiB + 3 * BLOCK
    assert cache._fetch(start, start + KiB) == data[start:start + KiB]
    assert fetched[0][1] - fetched[0][0] > KiB      # a readahead window, not the exact KiB


def test_reads_past_the_end_and_empty_reads():
    cache, data, fetched = make(1000)
    assert cache._fetch(990, 2000) == data[990:]
    assert cache._fetch(1000, 1010) == b"" and cache._fetch(5, 5) == b""
    assert cache._fetch(None, None) == data


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 300 * KiB),
       reads=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 2 * BLOCK), st.booleans()), max_size=40),
       readahead=st.sampled_from([1, 4 * KiB, BLOCK]))
def test_any_mix_of_reads_returns_the_files_bytes(size, reads, readahead):
    cache, data, _ = make(size, readahead_min_bytes=readahead)
    position = 0
    for where, length, sequential in reads:
        start = position if sequential else int(where * size)
        assert cache._fetch(start, start + length) == data[start:start + length]
        position = min(size, start + length)
