"""PyTorch data loading over FireflyFS: record files, samplers, datasets, checkpoints.

Public names (imported lazily, so ``import fireflyfs.loaders`` and the record
format need neither torch nor numpy; the datasets and checkpoints import
torch, the sampler numpy):

- ``RecordWriter``, ``RecordReader`` (module ``records``; byte layout in
  ``record_format`` and docs/record-format.md)
- ``RecordDataset``, ``TokenWindowDataset`` (map-style torch datasets with
  ``__getitems__``: one batched read per batch)
- ``ShuffledShardSampler`` (global seeded shuffle, split by rank, resumable
  and elastic)
- ``save_checkpoint``, ``load_checkpoint`` (tensors as parallel chunk-aligned
  writes and batched reads; atomic)

All storage access goes through ``_io``, the one adapter to the client.
"""

__all__ = ["RecordWriter", "RecordReader", "RecordDataset", "TokenWindowDataset",
           "ShuffledShardSampler", "save_checkpoint", "load_checkpoint", "CorruptRecord",
           "CorruptRecordFile", "CorruptCheckpoint"]

_HOMES = {
    "RecordWriter": "records", "RecordReader": "records",
    "CorruptRecord": "record_format", "CorruptRecordFile": "record_format",
    "RecordDataset": "record_dataset", "TokenWindowDataset": "token_dataset",
    "ShuffledShardSampler": "sampler",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "CorruptCheckpoint": "checkpoint",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(f"{__name__}.{home}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        raise ModuleNotFoundError(f"fireflyfs.loaders.{name} needs PyTorch, which the 'loaders' extra "
                                  f"installs: pip install 'fireflyfs[loaders]'", name="torch") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
