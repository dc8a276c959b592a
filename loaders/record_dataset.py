"""RecordDataset: a map-style torch Dataset over one or many record files.

With automatic batching the DataLoader hands a whole batch of indices to
``__getitems__``, which fetches them as one batched read across all files
(one Storage.BatchRead per storage node); 3FS-style random reads make a
shuffle buffer or prefetch of shards unnecessary. ``decode`` turns each
record's bytes into a sample in the worker; it must be picklable (a
module-level function) for spawn and forkserver workers.

The dataset pickles as its URLs, record counts and options, never as open
connections, so DataLoader workers under fork, spawn or forkserver connect
lazily on their own.
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Sequence

import torch.utils.data

from .records import read_records, reader_for


class RecordDataset(torch.utils.data.Dataset):
    """Samples decode(record) over the concatenation of record files, in order given."""

    def __init__(self, urls: str | Sequence[str], decode: Callable[[bytes], Any] | None = None,
                 *, storage_options: dict | None = None, verify: bool = True) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("RecordDataset needs at least one record file")
        self.decode = decode
        self.storage_options = storage_options
        self.verify = verify
        self._ends: list[int] = []         # cumulative record counts: file i holds [ends[i-1], ends[i])
        total = 0
        for url in self.urls:
            total += len(self._reader(url))
            self._ends.append(total)

    def _reader(self, url: str):
        return reader_for(url, self.storage_options, self.verify)

    def __len__(self) -> int:
        return self._ends[-1]

    def locate(self, index: int) -> tuple[str, int]:
        """(file URL, record number in it) of a dataset index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        file_number = bisect.bisect_right(self._ends, index)
        first = self._ends[file_number - 1] if file_number else 0
        return self.urls[file_number], index - first

    def _readers(self) -> list:
        readers = self.__dict__.get("_readers_cache")
        if readers is None:
            readers = self._readers_cache = [self._reader(url) for url in self.urls]
        return readers

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_readers_cache", None)     # workers share their process's readers
        return state

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        readers, total = self._readers(), len(self)
        if len(readers) == 1:
            reader = readers[0]
            wanted = []
            for index in indices:
                index = int(index)
                if not 0 <= index < total:
                    raise IndexError(f"index {index} out of range for {total} records")
                wanted.append((reader, index))
        else:
            ends, wanted = self._ends, []
            for index in indices:
                index = int(index)
                if not 0 <= index < total:
                    raise IndexError(f"index {index} out of range for {total} records")
                file_number = bisect.bisect_right(ends, index)
                wanted.append((readers[file_number],
                               index - (ends[file_number - 1] if file_number else 0)))
        records = read_records(wanted)
        if self.decode is None:
            return records
        return [self.decode(record) for record in records]

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]
