"""TokenWindowDataset: fixed-length windows of flat token files, for LM pretraining.

A pretraining corpus is tokenized into flat arrays of uint16 (vocabularies
up to 65,536) or uint32 tokens, concatenated documents with separator tokens,
and training reads fixed-length windows of it at random. Window i of a file
starts at token i * stride; with ``stride_tokens = window_tokens - 1`` the last
token of one window is the first of the next, the usual input/target
overlap. The randomness is the sampler's (a global shuffle of window
indices), so the order is seeded and resumable like any other dataset.

A batch is one batched read of its windows (``FfsClient.read_batch``: one
request per storage node), packed into a reused per-thread buffer and
widened to int64 in one numpy pass; windows never cross a file boundary. Samples are int64 tensors (what
``nn.Embedding`` takes). Pickles as URLs and sizes, like RecordDataset.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np
import torch
import torch.utils.data

from . import _io

_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class TokenWindowDataset(torch.utils.data.Dataset):
    """Window i: window_tokens consecutive tokens of the files, as an int64 tensor."""

    def __init__(self, urls: str | Sequence[str], window_tokens: int, *, dtype: str = "uint16",
                 stride_tokens: int | None = None, storage_options: dict | None = None) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if window_tokens < 1:
            raise ValueError(f"window_tokens must be positive, got {window_tokens}")
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.window_tokens = window_tokens
        self.stride_tokens = window_tokens if stride_tokens is None else stride_tokens
        if self.stride_tokens < 1:
            raise ValueError(f"stride_tokens must be positive, got {self.stride_tokens}")
        self.dtype = dtype
        self.storage_options = storage_options
        self._ends: list[int] = []        # cumulative window counts per file
        total = 0
        for url in self.urls:
            tokens = self._open(url).length // _DTYPES[dtype].itemsize
            windows = 0 if tokens < window_tokens else (
                (tokens - window_tokens) // self.stride_tokens + 1)
            total += windows
            self._ends.append(total)

    def _open(self, url: str) -> _io.OpenFile:
        return _io.open_file(url, self.storage_options)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def span(self, index: int) -> tuple[str, int, int]:
        """(file URL, byte offset, byte length) of window index."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        file_number = bisect.bisect_right(self._ends, index)
        first = self._ends[file_number - 1] if file_number else 0
        itemsize = _DTYPES[self.dtype].itemsize
        return (self.urls[file_number], (index - first) * self.stride_tokens * itemsize,
                self.window_tokens * itemsize)

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        reads = []
        for index in indices:
            url, offset, length = self.span(int(index))
            reads.append((self._open(url), offset, length))
        batch = _io.read_batch(reads)          # packed windows, in this thread's scratch buffer
        for (opened, offset, length), size in zip(reads, batch.nbytes):
            if size != length:
                raise EOFError(f"{opened.url}: {size} of {length} bytes at {offset}; "
                               "the file shrank after the dataset was built")
        total = sum(length for _, _, length in reads)
        windows = np.frombuffer(batch.buffer[:total], dtype=_DTYPES[self.dtype])
        stacked = torch.from_numpy(windows.reshape(len(reads), self.window_tokens).astype(np.int64))
        return list(stacked.unbind(0))     # one int64 copy; the collate stacks the views

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]
