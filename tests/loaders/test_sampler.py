"""ShuffledShardSampler and its permutation: properties under hypothesis.

Goal: the order is a pure function of (seed, epoch, rank, world size); ranks
are disjoint and together complete (with padding or drop-last exactly as
documented); and a saved state resumes at the exact next sample, also on a
different world size, in O(1). Method: enumerate every rank's indices for
drawn sizes and compare multisets against the dataset.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fireflyfs.loaders import ShuffledShardSampler
from fireflyfs.loaders.permutation import IndexPermutation

sizes = st.integers(min_value=0, max_value=300)
worlds = st.integers(min_value=1, max_value=9)
seeds = st.integers(min_value=0, max_value=2**64 - 1)
epochs = st.integers(min_value=0, max_value=1000)


def shares(n, world, seed=0, epoch=0, drop_last=False, shuffle=True):
    out = []
    for rank in range(world):
        sampler = ShuffledShardSampler(n, rank=rank, world_size=world, seed=seed,
                                       drop_last=drop_last, shuffle=shuffle)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


@settings(max_examples=200, deadline=None)
@given(size=st.integers(min_value=0, max_value=5000), seed=seeds, epoch=epochs)
def test_permutation_is_a_bijection(size, seed, epoch):
    permutation = IndexPermutation(size, seed, epoch)
    values = permutation(np.arange(size))
    assert sorted(values.tolist()) == list(range(size))
    # Position by position gives the same answer as the whole vector at once.
    if size:
        picks = np.array([0, size // 2, size - 1])
        assert permutation(picks).tolist() == values[picks].tolist()


def test_permutation_shuffles_and_depends_on_seed_and_epoch():
    base = IndexPermutation(1000, 7, 0)(np.arange(1000)).tolist()
    assert base != list(range(1000))
    assert IndexPermutation(1000, 7, 1)(np.arange(1000)).tolist() != base
    assert IndexPermutation(1000, 8, 0)(np.arange(1000)).tolist() != base
    assert IndexPermutation(1000, 7, 0)(np.arange(1000)).tolist() == base
    # Not just a rotation or a near-identity: few fixed points, like a random permutation.
    assert sum(a == b for a, b in zip(base, range(1000))) < 10


def test_permutation_is_pinned_across_platforms():
    """The exact order is part of the resume contract: a change here breaks old checkpoints."""
    assert IndexPermutation(10, 1, 0)(np.arange(10)).tolist() == [0, 7, 9, 3, 2, 1, 4, 8, 5, 6]


@settings(max_examples=150, deadline=None)
@given(n=sizes, world=worlds, seed=seeds, epoch=epochs)
def test_ranks_disjoint_and_complete_with_padding(n, world, seed, epoch):
    per_rank = shares(n, world, seed, epoch)
    counts = Counter(i for share in per_rank for i in share)
    assert set(counts) == set(range(n))                       # complete
    assert len({len(share) for share in per_rank}) == 1       # equal shares
    padding = sum(counts.values()) - n
    assert 0 <= padding < world                               # only the tail is repeated
    assert sum(c - 1 for c in counts.values()) == padding     # otherwise disjoint


@settings(max_examples=150, deadline=None)
@given(n=sizes, world=worlds, seed=seeds)
def test_ranks_disjoint_with_drop_last(n, world, seed):
    per_rank = shares(n, world, seed, drop_last=True)
    flat = [i for share in per_rank for i in share]
    assert len(flat) == len(set(flat)) == (n // world) * world
    assert set(flat) <= set(range(n))


@settings(max_examples=100, deadline=None)
@given(n=sizes, world=worlds, seed=seeds, epoch=epochs)
def test_order_is_a_pure_function(n, world, seed, epoch):
    assert shares(n, world, seed, epoch) == shares(n, world, seed, epoch)


def test_epochs_and_seeds_change_the_order_and_shuffle_false_does_not():
    assert shares(100, 2, seed=1, epoch=0) != shares(100, 2, seed=1, epoch=1)
    assert shares(100, 2, seed=1) != shares(100, 2, seed=2)
    assert shares(10, 2, shuffle=False) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def consume(sampler, samples):
    iterator = iter(sampler)
    return [next(iterator) for _ in range(samples)]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(min_value=1, max_value=300), old_world=worlds, new_world=worlds,
       seed=seeds, epoch=epochs, data=st.data())
def test_elastic_resume_sees_every_remaining_sample_once(n, old_world, new_world, seed, epoch,
                                                          data):
    """Run k lockstep steps on old_world ranks, save rank 0's state, resume on new_world."""
    samplers = [ShuffledShardSampler(n, rank=r, world_size=old_world, seed=seed)
                for r in range(old_world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    steps = data.draw(st.integers(min_value=0, max_value=n // old_world))
    before = [i for sampler in samplers for i in consume(sampler, steps)]
    states = [sampler.state_dict() for sampler in samplers]
    assert all(state == {**states[0], "world_size": old_world} for state in states)

    after = []
    for rank in range(new_world):
        resumed = ShuffledShardSampler(n, rank=rank, world_size=new_world, seed=12345)
        resumed.load_state_dict(states[0])          # adopts seed and epoch from the state
        expected_count = len(resumed)
        share = list(resumed)
        assert len(share) == expected_count == -(-(n - steps * old_world) // new_world)
        after.extend(share)
    assert len(before) == len(set(before))
    counts = Counter(before + after)
    assert set(counts) == set(range(n))
    assert sum(counts.values()) - n < new_world     # only the new tail padding repeats
    # The remaining samples are exactly the unconsumed positions of the same global order.
    order = IndexPermutation(n, seed, epoch)(np.arange(n)).tolist()
    assert set(before) == set(order[:steps * old_world])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=1, max_value=300), world=worlds, seed=seeds, data=st.data())
def test_same_world_resume_continues_exactly(n, world, seed, data):
    rank = data.draw(st.integers(min_value=0, max_value=world - 1))
    full = ShuffledShardSampler(n, rank=rank, world_size=world, seed=seed)
    expected = list(full)
    done = data.draw(st.integers(min_value=0, max_value=len(expected)))
    first = ShuffledShardSampler(n, rank=rank, world_size=world, seed=seed)
    assert consume(first, done) == expected[:done]
    resumed = ShuffledShardSampler(n, rank=rank, world_size=world, seed=seed)
    resumed.load_state_dict(first.state_dict())
    assert list(resumed) == expected[done:]


def test_state_with_samples_seen_for_a_prefetching_loader():
    sampler = ShuffledShardSampler(100, rank=1, world_size=4, seed=3)
    handed_out = consume(sampler, 20)
    state = sampler.state_dict(samples_seen=12)     # the loop trained on 12 of the 20
    assert state["samples_consumed"] == 48
    resumed = ShuffledShardSampler(100, rank=1, world_size=4)
    resumed.load_state_dict(state)
    assert consume(resumed, 8) == handed_out[12:]
    with pytest.raises(ValueError):
        sampler.state_dict(samples_seen=26)


def test_resume_far_into_a_huge_epoch_is_immediate():
    """No replay: resuming 10**12 samples into an epoch costs the same as at the start."""
    n = 10**12 + 7
    sampler = ShuffledShardSampler(n, rank=2, world_size=3, seed=99)
    sampler.set_epoch(5)
    sampler.load_state_dict({**sampler.state_dict(), "samples_consumed": n - 10})
    rest = list(sampler)
    assert len(rest) == 4                         # ceil(10 / 3) with padding
    # Positions n-8, n-5, n-2, then padding wraps to position 1 of the epoch's order.
    assert rest == IndexPermutation(n, 99, 5)([n - 8, n - 5, n - 2, 1]).tolist()


def test_set_epoch_drops_a_resume_point_of_another_epoch():
    sampler = ShuffledShardSampler(50, seed=1)
    sampler.set_epoch(3)
    consume(sampler, 10)
    state = sampler.state_dict()
    resumed = ShuffledShardSampler(50, seed=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)                 # the usual loop calls set_epoch again: keep the point
    assert len(list(resumed)) == 40
    resumed.load_state_dict(state)
    resumed.set_epoch(4)                 # a new epoch starts from its beginning
    assert len(list(resumed)) == 50


def test_bad_arguments_and_states_are_refused():
    with pytest.raises(ValueError):
        ShuffledShardSampler(10, rank=2, world_size=2)
    with pytest.raises(ValueError):
        ShuffledShardSampler(10, seed=-1)
    sampler = ShuffledShardSampler(10)
    with pytest.raises(ValueError, match="11 samples"):
        sampler.load_state_dict({**ShuffledShardSampler(11).state_dict()})
    with pytest.raises(ValueError):
        sampler.load_state_dict({**sampler.state_dict(), "samples_consumed": 11})
    with pytest.raises(ValueError):
        sampler.load_state_dict({**sampler.state_dict(), "version": 99})


def test_pytorch_distributed_sampler_names_are_accepted():
    """Drop-in for torch's DistributedSampler(dataset, num_replicas=, rank=)."""
    ours = ShuffledShardSampler(100, num_replicas=4, rank=1, seed=3)
    assert ours.world_size == 4 and list(ours) == list(ShuffledShardSampler(100, world_size=4, rank=1, seed=3))
    with pytest.raises(ValueError, match="disagree"):
        ShuffledShardSampler(100, num_replicas=4, world_size=2, rank=0)
