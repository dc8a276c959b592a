"""Pins the layout math: changing any of these answers orphans every stored file.

Method: literal test vectors computed once (2026-11, the foundation commit)
for SplitMix64 and the seeded shuffle, plus properties checked over many
seeds and sizes (permutation, determinism, periodicity, exact coverage).
"""

from __future__ import annotations

import random

import pytest

from fireflyfs.common import limits
from fireflyfs.common.errors import InvalidArgument, NoChainTable
from fireflyfs.common.layout import (ChainAllocator, Layout, seeded_shuffle, splitmix64,
                                     stripe_chain_indices, validate_chunk_size)
from fireflyfs.proto import types_pb2


def test_splitmix64_reference_output():
    # The first SplitMix64 output for seed 0 is the published 0xE220A8397B1DCDAF.
    state, value = splitmix64(0)
    assert value == 0xE220A8397B1DCDAF == 16294208416658607535
    assert state == 0x9E3779B97F4A7C15
    assert splitmix64(1) == (11400714819323198486, 10451216379200822465)


@pytest.mark.parametrize("seed, size, expected", [
    (0, 1, [0]),
    (0, 2, [0, 1]),
    (1, 5, [2, 1, 4, 3, 0]),
    (42, 8, [3, 1, 6, 2, 4, 0, 7, 5]),
    (12345, 16, [1, 4, 8, 9, 11, 13, 15, 7, 14, 6, 10, 3, 2, 5, 12, 0]),
    (2**64 - 1, 10, [3, 4, 2, 7, 5, 0, 8, 1, 9, 6]),
    (0xDEADBEEF, 3, [2, 0, 1]),
])
def test_seeded_shuffle_vectors(seed, size, expected):
    assert seeded_shuffle(list(range(size)), seed) == expected


def test_stripe_chain_indices_vectors():
    assert stripe_chain_indices(5, 4, 7, 6) == (6, 1, 5, 2)
    assert stripe_chain_indices(1, 6, 99, 6) == (2, 1, 3, 4, 5, 6)


def test_seed_is_taken_mod_2_64():
    assert seeded_shuffle(list(range(12)), 2**64 + 5) == seeded_shuffle(list(range(12)), 5)


def test_shuffle_is_a_deterministic_permutation_and_leaves_input_alone():
    rng = random.Random(7)
    for _ in range(200):
        size = rng.randint(0, 300)
        seed = rng.getrandbits(64)
        items = [rng.randint(-1000, 1000) for _ in range(size)]
        before = list(items)
        shuffled = seeded_shuffle(items, seed)
        assert items == before
        assert sorted(shuffled) == sorted(items)
        assert seeded_shuffle(items, seed) == shuffled


def test_shuffle_depends_on_the_seed():
    results = {tuple(seeded_shuffle(list(range(16)), seed)) for seed in range(50)}
    assert len(results) == 50


def _layout(**overrides) -> Layout:
    fields = dict(chunk_size=limits.chunk_size_default, stripe_size=4, chain_table_id=1,
                  chain_table_version=1, chain_base=3, seed=11)
    fields.update(overrides)
    return Layout(**fields)


def test_chain_index_is_periodic_in_the_stripe_and_covers_the_stripe():
    for chain_count in (4, 5, 9, 16):
        layout = _layout(stripe_size=4, chain_base=chain_count - 1)
        stripe = [layout.chain_index_for_chunk(k, chain_count) for k in range(4)]
        assert len(set(stripe)) == 4
        assert all(1 <= index <= chain_count for index in stripe)
        for k in range(64):
            assert layout.chain_index_for_chunk(k, chain_count) == stripe[k % 4]
        assert tuple(stripe) == layout.stripe_chain_indices(chain_count)
        # The stripe is the wrapped range [base, base + stripe), shuffled.
        expected = {(layout.chain_base - 1 + i) % chain_count + 1 for i in range(4)}
        assert set(stripe) == expected


def test_stripe_larger_than_table_and_empty_table_are_rejected():
    with pytest.raises(InvalidArgument):
        _layout(stripe_size=8).chain_index_for_chunk(0, 4)
    with pytest.raises(NoChainTable):
        _layout().chain_index_for_chunk(0, 0)


@pytest.mark.parametrize("offset, length", [
    (0, 0), (0, 1), (0, 4 * limits.MiB), (1, 4 * limits.MiB), (4 * limits.MiB - 1, 2),
    (3 * limits.MiB, 9 * limits.MiB + 17), (123456789, 1), (10 * limits.MiB, 0)])
def test_chunk_ranges_cover_exactly(offset, length):
    layout = _layout()
    pieces = list(layout.chunk_ranges(offset, length))
    assert sum(piece for _, _, piece in pieces) == length
    position = offset
    for index, within, piece in pieces:
        assert index * layout.chunk_size + within == position
        assert 0 <= within < layout.chunk_size
        assert 0 < piece <= layout.chunk_size - within
        position += piece
    assert position == offset + length
    assert [i for i, _, _ in pieces] == list(range(offset // layout.chunk_size,
                                                   offset // layout.chunk_size + len(pieces)))


def test_chunk_ranges_and_index_reject_negatives():
    layout = _layout()
    with pytest.raises(InvalidArgument):
        list(layout.chunk_ranges(-1, 10))
    with pytest.raises(InvalidArgument):
        list(layout.chunk_ranges(0, -10))
    with pytest.raises(InvalidArgument):
        layout.chunk_index(-1)
    assert layout.chunk_index(layout.chunk_size) == 1


@pytest.mark.parametrize("bad", [0, -4096, 3 * limits.MiB, limits.chunk_size_min // 2,
                                 limits.chunk_size_max * 2, limits.chunk_size_min + 1])
def test_bad_chunk_sizes_rejected(bad):
    with pytest.raises(InvalidArgument):
        validate_chunk_size(bad)
    with pytest.raises(InvalidArgument):
        _layout(chunk_size=bad)


def test_good_chunk_sizes_accepted():
    for size in (limits.chunk_size_min, limits.chunk_size_default, limits.chunk_size_max):
        assert validate_chunk_size(size) == size


@pytest.mark.parametrize("overrides", [dict(stripe_size=0), dict(stripe_size=limits.stripe_size_max + 1),
                                       dict(chain_base=0)])
def test_bad_stripe_or_base_rejected(overrides):
    with pytest.raises(InvalidArgument):
        _layout(**overrides)


def test_proto_round_trip():
    layout = _layout(seed=2**64 - 1)
    message = layout.to_proto(types_pb2.Layout)
    assert message.seed == 2**64 - 1
    assert Layout.from_proto(message) == layout


def test_chain_allocator_round_robin():
    counter, bases = 0, []
    for _ in range(5):
        base, counter = ChainAllocator.next_base(counter, 4, 10)
        bases.append(base)
    assert bases == [1, 5, 9, 3, 7]
    with pytest.raises(NoChainTable):
        ChainAllocator.next_base(0, 1, 0)
