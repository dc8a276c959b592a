"""Directory default layouts and the layout a new file gets.

A directory's ``layout`` holds defaults (chunk size, stripe, chain table) for
the files created in it; base and seed stay 0 there. A new file inherits its
parent's defaults (overridden field by field by a non-zero request layout)
and gets, as 3FS does, a chain range from a round-robin counter per
(table, stripe) persisted in the counters DB, started at a random multiple of
the stripe, plus a random 64-bit shuffle seed. The stripe is clamped to the
table's chain count.
"""

from __future__ import annotations

import random

from fireflyfs.common import limits
from fireflyfs.common.errors import InvalidArgument, NoChainTable
from fireflyfs.common.layout import ChainAllocator, validate_chunk_size
from fireflyfs.proto import types_pb2

from .store import Txn, u32_key

DEFAULT_CHAIN_TABLE_ID = 1


def root_layout() -> types_pb2.Layout:
    return types_pb2.Layout(chunk_size=limits.chunk_size_default,
                            stripe_size=limits.stripe_size_default,
                            chain_table_id=DEFAULT_CHAIN_TABLE_ID)


def get_chain_table(txn: Txn, table_id: int) -> types_pb2.ChainTable | None:
    return txn.get_msg("chain_tables", u32_key(table_id), types_pb2.ChainTable)


def merge_layout(defaults: types_pb2.Layout, override: types_pb2.Layout | None,
                 txn: Txn) -> types_pb2.Layout:
    """Directory defaults with the non-zero fields of override applied, validated."""
    merged = types_pb2.Layout(chunk_size=defaults.chunk_size, stripe_size=defaults.stripe_size,
                              chain_table_id=defaults.chain_table_id)
    if override is not None:
        for field in ("chunk_size", "stripe_size", "chain_table_id"):
            if getattr(override, field):
                setattr(merged, field, getattr(override, field))
        if override.chain_table_id and get_chain_table(txn, override.chain_table_id) is None:
            raise InvalidArgument(f"unknown chain table {override.chain_table_id}")
    validate_chunk_size(merged.chunk_size)
    if not 1 <= merged.stripe_size <= limits.stripe_size_max:
        raise InvalidArgument(f"stripe size {merged.stripe_size} not in 1..{limits.stripe_size_max}")
    return merged


def allocate_file_layout(txn: Txn, defaults: types_pb2.Layout, override: types_pb2.Layout | None,
                         rng: random.Random) -> types_pb2.Layout:
    """The layout of a new file; advances the persisted chain allocation counter."""
    spec = merge_layout(defaults, override, txn)
    table = get_chain_table(txn, spec.chain_table_id)
    if table is None:
        raise NoChainTable(f"chain table {spec.chain_table_id} does not exist; "
                           "create one with Mgmtd.CreateChainTable")
    chain_count = len(table.chains)
    stripe = min(spec.stripe_size, chain_count)
    # Round robin over the table from a random start: the n-th file of this (table, stripe) starts at
    # chain n * stripe. next_id, not a counter read and written here: on etcd every create would
    # conflict on it, and the engine hands out sequence numbers from ranges reserved per server.
    sequence = txn.next_id(f"chain_seq/{table.id}/{stripe}", rng.randrange(max(1, chain_count // stripe)))
    base, _ = ChainAllocator.next_base(sequence * stripe % chain_count, stripe, chain_count)
    # merge_layout validated chunk and stripe sizes; next_base gives a base >= 1. The proto is
    # built directly: Layout.to_proto (dataclasses.asdict) cost a third of a create's CPU.
    return types_pb2.Layout(chunk_size=spec.chunk_size, stripe_size=stripe, chain_table_id=table.id,
                            chain_table_version=table.version, chain_base=base, seed=rng.getrandbits(64))
