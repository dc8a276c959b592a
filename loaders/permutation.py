"""A seeded permutation of [0, size) computed position by position.

The sampler needs "which sample is at position p of epoch e's global order"
for any p, cheaply: resuming at position p must not replay or even materialise
the epoch (a 1-billion-sample epoch would need 8 GB for a numpy permutation).
A keyed Feistel network over the next even power of two, with cycle walking
back into [0, size), is a bijection computed in O(1) per position, the idea
behind Grain's ``index_shuffle`` and format-preserving encryption.

Only integer arithmetic on numpy uint64 (exact, wrapping), so the order is the
same on every platform and numpy version, unlike ``Generator.permutation``
whose streams numpy does not promise to keep.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
feistel_rounds = 6            # 4 suffice for a permutation; 6 for better mixing of small domains
cycle_walk_steps_max = 1 << 16  # the domain is < 4 * size, so walks are short; a bound still


def splitmix64(value: int) -> int:
    """The SplitMix64 output function on a Python int (mod 2**64)."""
    z = (value + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    z = values ^ (values >> np.uint64(30))
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


class IndexPermutation:
    """position -> index, a bijection of [0, size) fixed by (seed, epoch)."""

    def __init__(self, size: int, seed: int, epoch: int) -> None:
        if size < 0:
            raise ValueError(f"negative permutation size {size}")
        self.size = size
        bits = max(2, (max(size, 1) - 1).bit_length())
        self._half_bits = np.uint64((bits + 1) // 2)
        self._half_mask = np.uint64((1 << ((bits + 1) // 2)) - 1)
        base = splitmix64(splitmix64(seed & _MASK64) ^ (epoch & _MASK64))
        self._keys = [np.uint64(splitmix64(base + number)) for number in range(feistel_rounds)]

    def _encrypt(self, values: np.ndarray) -> np.ndarray:
        left = values >> self._half_bits
        right = values & self._half_mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right ^ key) & self._half_mask)
        return (left << self._half_bits) | right

    def __call__(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """Indices (int64) at the given positions, each in [0, size)."""
        values = np.asarray(positions, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.size):
            raise IndexError(f"positions outside [0, {self.size})")
        out = self._encrypt(values.astype(np.uint64))
        outside = out >= np.uint64(self.size)
        for _ in range(cycle_walk_steps_max):
            if not outside.any():
                return out.astype(np.int64)
            out[outside] = self._encrypt(out[outside])
            outside = out >= np.uint64(self.size)
        raise AssertionError("cycle walk did not return into the domain")
