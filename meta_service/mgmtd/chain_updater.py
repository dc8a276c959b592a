"""One round of chain recomputation, persisted: the store side of ``generate_new_chain``.

ClusterState calls ``update_chains`` inside its write transaction whenever
something that feeds the state machine may have moved (a heartbeat, a
registration, a node timing out, an admin command, the periodic tick). Each
round advances every chain by at most one step of the table, as 3FS's mgmtd
does once a second, so a restarted target is seen OFFLINE, then WAITING, then
SYNCING by everyone watching routing. Every changed chain gets version + 1,
its new order, its targets' new public states, and one log line per move with
the reason; the caller bumps the routing version when anything changed.
"""

from __future__ import annotations

import logging
from typing import Callable

from fireflyfs.proto import types_pb2

from fireflyfs.meta_service.store import Txn, u32_key, u64_key
from .target_states import LocalState, PublicState, TargetState, generate_new_chain

log = logging.getLogger(__name__)


def update_chains(txn: Txn, effective_local: Callable[[types_pb2.TargetInfo], LocalState],
                  why: str) -> list[int]:
    """Advance every chain one step; returns the ids of the chains that changed."""
    targets: dict[int, types_pb2.TargetInfo] = {}
    for key, value in txn.scan("targets"):
        record = types_pb2.TargetInfo()
        record.ParseFromString(value)
        targets[record.id] = record
    changed = []
    for _key, value in txn.scan("chains"):
        chain = types_pb2.ChainInfo()
        chain.ParseFromString(value)
        members = [targets[t] for t in chain.targets if t in targets]
        if len(members) != len(chain.targets):
            log.error("chain %d names unknown targets %s; left alone", chain.id,
                      sorted(set(chain.targets) - set(targets)))
            continue
        current = [TargetState(t.id, _public(t), effective_local(t)) for t in members]
        update = generate_new_chain(current)
        if not update.changed:
            continue
        old_order = list(chain.targets)
        chain.version += 1
        chain.targets[:] = update.order
        txn.put_msg("chains", u32_key(chain.id), chain)
        for move in update.moves:
            record = targets[move.target_id]
            record.public_state = int(move.new)
            txn.put_msg("targets", u64_key(record.id), record)
            log.warning("chain %d v%d: target %d %s -> %s (%s; local %s; %s)", chain.id, chain.version,
                        move.target_id, move.old.name, move.new.name, move.reason,
                        effective_local(record).name, why)
        if update.order != old_order:
            log.warning("chain %d v%d: order %s -> %s", chain.id, chain.version, old_order, update.order)
        changed.append(chain.id)
    return changed


def _public(record: types_pb2.TargetInfo) -> PublicState:
    """A target in a chain without a public state (never set) counts as serving, as at creation."""
    return PublicState(record.public_state) if record.public_state else PublicState.SERVING
