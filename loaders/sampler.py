"""ShuffledShardSampler: a global shuffle split across ranks, resumable and elastic.

The order is a pure function of (seed, epoch, rank, world size): epoch e's
global order is a seeded permutation of every sample (``IndexPermutation``),
and rank r of W takes the positions r, r + W, r + 2W, ... of it, so ranks are
disjoint and together complete. DataLoader workers need no further split:
the sampler runs in the main process and workers read what it hands them.

Resuming follows MosaicML Streaming: the state is the number of samples of
the epoch consumed *globally* (ranks advance in lockstep, so it is the local
count times the world size) plus seed and epoch, nothing per rank. Loading it
skips those positions in O(1) and splits the rest of the epoch across however
many ranks there are now, so a job can resume on a different world size and
still see every remaining sample exactly once. With ``drop_last=False`` the
tail is padded by repeating the start of the epoch's order (as
``DistributedSampler`` does) so every rank yields the same count; with
``drop_last=True`` the tail that does not divide evenly is dropped.

It is a plain iterable with ``state_dict``/``load_state_dict``: torchdata's
``StatefulDataLoader`` checkpoints it at the batch boundaries it hands out;
with a plain DataLoader (which prefetches ahead of the training loop) pass the
number of samples the loop really consumed to ``state_dict(samples_seen=...)``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterator, Sized

import numpy as np

from .permutation import IndexPermutation

log = logging.getLogger(__name__)

STATE_VERSION = 1
positions_per_block = 8192    # indices computed together (vectorised), then yielded one by one
seed_max = (1 << 64) - 1


def _distributed_defaults() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when a process group is up, else (0, 1)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return 0, 1


class ShuffledShardSampler:
    """Indices of this rank's share of a seeded global shuffle of [0, len(data))."""

    def __init__(self, data: Sized | int, *, rank: int | None = None,
                 world_size: int | None = None, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, num_replicas: int | None = None) -> None:
        # num_replicas: PyTorch's DistributedSampler name for world_size, so it drops in.
        if num_replicas is not None:
            if world_size is not None and world_size != num_replicas:
                raise ValueError(f"world_size={world_size} and num_replicas={num_replicas} disagree")
            world_size = num_replicas
        default_rank, default_world = _distributed_defaults()
        self.num_samples = data if isinstance(data, int) else len(data)
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if self.num_samples < 0:
            raise ValueError(f"negative dataset size {self.num_samples}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of size {self.world_size}")
        if not 0 <= seed <= seed_max:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self._resume_from: int | None = None     # set by load_state_dict, used by the next __iter__
        self._segment_start = 0                  # global position the current iteration started at
        self._yielded = 0                        # indices this rank handed out in the iteration

    # ---- the order ----------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select epoch's order; a pending resume point of another epoch is dropped."""
        if epoch != self.epoch:
            self._resume_from = None
        self.epoch = epoch

    def _share(self, start: int) -> int:
        """How many indices each rank yields when the epoch resumes at global position start."""
        remaining = max(0, self.num_samples - start)
        if self.drop_last:
            return remaining // self.world_size
        return -(-remaining // self.world_size)

    def indices_at(self, start: int, local_positions: np.ndarray) -> np.ndarray:
        """This rank's indices at local positions, for an iteration starting at start."""
        positions = start + self.rank + local_positions * self.world_size
        # Padding wraps to the start of the epoch's order, whatever the resume point, so
        # resuming on the same world size repeats the uninterrupted run exactly.
        positions %= self.num_samples
        if not self.shuffle:
            return positions.astype(np.int64)
        return IndexPermutation(self.num_samples, self.seed, self.epoch)(positions)

    def __len__(self) -> int:
        """Indices the next iteration yields (fewer after a mid-epoch resume)."""
        return self._share(self._resume_from or 0)

    def __iter__(self) -> Iterator[int]:
        start = self._resume_from or 0
        self._resume_from = None
        self._segment_start, self._yielded = start, 0
        count = self._share(start)
        for block_start in range(0, count, positions_per_block):
            local = np.arange(block_start, min(count, block_start + positions_per_block),
                              dtype=np.int64)
            for index in self.indices_at(start, local).tolist():
                self._yielded += 1      # counted before the yield: the batch holding it is drawn
                yield index

    # ---- resume -------------------------------------------------------------

    def samples_consumed(self, samples_seen: int | None = None) -> int:
        """Global position reached: the iteration's start plus every rank's share so far."""
        if self._resume_from is not None:
            return self._resume_from
        seen = self._yielded if samples_seen is None else samples_seen
        if not 0 <= seen <= self._share(self._segment_start):
            raise ValueError(f"samples_seen {seen} outside this rank's "
                             f"{self._share(self._segment_start)} for the epoch")
        return min(self.num_samples, self._segment_start + seen * self.world_size)

    def state_dict(self, samples_seen: int | None = None) -> dict[str, Any]:
        """Where the epoch is, independent of rank and world size.

        samples_seen: indices this rank's training loop has consumed in the
        current iteration (default: all the sampler handed out).
        """
        return {
            "version": STATE_VERSION,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "epoch": self.epoch,
            "shuffle": self.shuffle,
            "samples_consumed": self.samples_consumed(samples_seen),
            "world_size": self.world_size,   # informational: resuming on another size is fine
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch at the saved position."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state version {state.get('version')} is not supported")
        if state["num_samples"] != self.num_samples:
            raise ValueError(f"sampler state is for {state['num_samples']} samples, "
                             f"the dataset has {self.num_samples}")
        consumed = int(state["samples_consumed"])
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(f"samples_consumed {consumed} outside [0, {self.num_samples}]")
        self.seed, self.epoch, self.shuffle = int(state["seed"]), int(state["epoch"]), bool(
            state["shuffle"])
        self._resume_from = consumed
        self._segment_start, self._yielded = consumed, 0
        log.info("sampler resumes epoch %d at sample %d of %d on rank %d of %d", self.epoch,
                 consumed, self.num_samples, self.rank, self.world_size)
