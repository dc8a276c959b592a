"""Replica moves, persisted and advanced by every chain round: the store side of rebalance.py.

A move of chain C from target F to target T goes through the chain as any
recovering replica does, so it needs no protocol of its own:
  1. QUEUED until fewer than ``moves_in_flight`` moves are syncing (the bound
     on the resync traffic a rebalance adds);
  2. T joins C as its last member, public WAITING (chain version + 1); the
     state machine takes it to SYNCING behind a SERVING predecessor, the
     predecessor's resync copies the chain's chunks, and live writes reach T
     as full-chunk replaces meanwhile;
  3. once T is SERVING, F leaves C (chain version + 1) and is marked retired:
     its node deletes its chunks, and once it reports none it is free again.
Until step 3 the chain holds every replica it had plus T, so a node dying
mid-move (F's, T's or another member's) costs no more than it would without
the move; a move whose T never comes back is taken back by ``cancel``.
Draining is an intent kept until the node is removed: when a move ends,
chains still holding a replica there get their moves.
"""

from __future__ import annotations

import collections
import logging
from typing import Callable

from fireflyfs.common.errors import InvalidArgument
from fireflyfs.proto import types_pb2

from fireflyfs.meta_service.store import Txn, u32_key, u64_key
from .rebalance import Placement, PlannedMove, plan_drain

log = logging.getLogger(__name__)

MOVES_IN_FLIGHT_DEFAULT = 1
IN_FLIGHT_COUNTER = "mgmtd.moves_in_flight"
DRAINING_PREFIX = "mgmtd.draining."


def _move_key(move: types_pb2.ChainMove) -> bytes:
    """Chain id, then the target leaving: a chain's moves run one after another, in key order."""
    return u32_key(move.chain_id) + u64_key(move.from_target)


def pending(txn: Txn) -> list[types_pb2.ChainMove]:
    moves = []
    for _key, value in txn.scan("moves"):
        move = types_pb2.ChainMove()
        move.ParseFromString(value)
        moves.append(move)
    return moves


def draining(txn: Txn) -> set[int]:
    return {int(key.decode()[len(DRAINING_PREFIX):]) for key, _ in txn.scan("counters", DRAINING_PREFIX.encode())}


def set_draining(txn: Txn, node_id: int, on: bool) -> None:
    if on:
        txn.set_counter(DRAINING_PREFIX + str(node_id), 1)
    else:
        txn.delete("counters", (DRAINING_PREFIX + str(node_id)).encode())


def set_in_flight(txn: Txn, moves_in_flight: int) -> None:
    if moves_in_flight:
        txn.set_counter(IN_FLIGHT_COUNTER, moves_in_flight)


def placement(txn: Txn, usable: Callable[[types_pb2.TargetInfo], bool]) -> Placement:
    """The chains as they will be once every pending move is done, and the free targets."""
    targets = {}
    for _key, value in txn.scan("targets"):
        record = types_pb2.TargetInfo()
        record.ParseFromString(value)
        targets[record.id] = record
    chains = {}
    for _key, value in txn.scan("chains"):
        chain = types_pb2.ChainInfo()
        chain.ParseFromString(value)
        chains[chain.id] = list(chain.targets)
    moves = pending(txn)
    for move in moves:
        members = chains.get(move.chain_id, [])
        if move.to_target in members:
            if move.from_target in members:
                members.remove(move.from_target)
        elif move.from_target in members:
            members[members.index(move.from_target)] = move.to_target
    incoming = {move.to_target for move in moves}
    free: dict[int, list[int]] = {}
    for record in targets.values():
        if not (record.chain_id or record.retired or record.id in incoming) and usable(record):
            free.setdefault(record.node_id, []).append(record.id)
    return Placement(chains=chains, node_of={t.id: t.node_id for t in targets.values()},
                     free={node: sorted(ids) for node, ids in free.items()},
                     arriving=incoming, draining=draining(txn),
                     moves_per_chain=collections.Counter(move.chain_id for move in moves))


def queue(txn: Txn, planned: list[PlannedMove], reason: str) -> list[types_pb2.ChainMove]:
    moves = []
    for plan in planned:
        move = types_pb2.ChainMove(chain_id=plan.chain_id, from_target=plan.from_target,
                                   to_target=plan.to_target, phase=types_pb2.ChainMove.QUEUED, reason=reason)
        txn.put_msg("moves", _move_key(move), move)
        log.info("chain %d: move of target %d to target %d queued (%s)", move.chain_id, move.from_target,
                 move.to_target, reason)
        moves.append(move)
    return moves


def cancel(txn: Txn) -> list[types_pb2.ChainMove]:
    """Drop every move; a syncing new replica leaves its chain again (retired: it holds a part)."""
    moves = pending(txn)
    for move in moves:
        chain = txn.get_msg("chains", u32_key(move.chain_id), types_pb2.ChainInfo)
        if move.phase == types_pb2.ChainMove.SYNCING and chain is not None and move.to_target in chain.targets:
            _leave(txn, chain, move.to_target, "the move to it was cancelled")
        txn.delete("moves", _move_key(move))
    for node_id in draining(txn):
        set_draining(txn, node_id, False)
    return moves


def advance(txn: Txn, chunk_counts: dict[int, int],
            usable: Callable[[types_pb2.TargetInfo], bool]) -> tuple[bool, bool]:
    """One step of every move; (something changed, moves or retired targets still active).

    chunk_counts: each target's chunks as its last heartbeat said (a retired target is free
    again once it reports 0).
    """
    changed = active = False
    for _key, value in list(txn.scan("targets")):
        record = types_pb2.TargetInfo()
        record.ParseFromString(value)
        if record.retired and not record.chain_id:
            if chunk_counts.get(record.id) == 0:
                record.retired = False
                txn.put_msg("targets", u64_key(record.id), record)
                log.info("target %d: retired replica deleted by its node; free again", record.id)
                changed = True
            elif usable(record):
                active = True
    finished = False
    remaining = []               # the moves table is read once per round (on etcd, a round trip)
    for move in pending(txn):
        if move.phase != types_pb2.ChainMove.SYNCING:
            remaining.append(move)
            continue
        chain = txn.get_msg("chains", u32_key(move.chain_id), types_pb2.ChainInfo)
        incoming = txn.get_msg("targets", u64_key(move.to_target), types_pb2.TargetInfo)
        if chain is None or incoming is None or move.to_target not in chain.targets:
            log.warning("chain %d: move to target %d dropped (it left the chain)", move.chain_id, move.to_target)
        elif incoming.public_state == types_pb2.SERVING:
            if move.from_target in chain.targets:
                _leave(txn, chain, move.from_target, f"moved to target {move.to_target}, {move.reason}")
        else:
            active = True
            remaining.append(move)
            continue
        txn.delete("moves", _move_key(move))
        changed = finished = True
    syncing = {move.chain_id for move in remaining if move.phase == types_pb2.ChainMove.SYNCING}
    limit = txn.get_counter(IN_FLIGHT_COUNTER, MOVES_IN_FLIGHT_DEFAULT)
    for move in remaining:
        if move.phase != types_pb2.ChainMove.QUEUED:
            continue
        active = True
        if len(syncing) >= limit:
            break
        if move.chain_id in syncing:
            continue
        if _start(txn, move):
            syncing.add(move.chain_id)
        else:
            txn.delete("moves", _move_key(move))
        changed = True
    if finished and draining(txn):
        for node_id in sorted(draining(txn)):
            try:
                planned = plan_drain(placement(txn, usable), node_id)
            except InvalidArgument as exc:
                log.warning("%s", exc)
                continue
            if planned:
                queue(txn, planned, f"drain node {node_id}")
                active = changed = True
    return changed, active


def _start(txn: Txn, move: types_pb2.ChainMove) -> bool:
    chain = txn.get_msg("chains", u32_key(move.chain_id), types_pb2.ChainInfo)
    incoming = txn.get_msg("targets", u64_key(move.to_target), types_pb2.TargetInfo)
    if (chain is None or move.from_target not in chain.targets or incoming is None
            or incoming.chain_id or incoming.retired):
        log.warning("chain %d: move of target %d to target %d dropped: the chain or the target changed "
                    "since it was planned", move.chain_id, move.from_target, move.to_target)
        return False
    chain.version += 1
    chain.targets.append(move.to_target)
    txn.put_msg("chains", u32_key(chain.id), chain)
    incoming.chain_id = chain.id
    incoming.public_state = types_pb2.WAITING
    txn.put_msg("targets", u64_key(incoming.id), incoming)
    move.phase = types_pb2.ChainMove.SYNCING
    txn.put_msg("moves", _move_key(move), move)
    log.warning("chain %d v%d: target %d joins to take the replica of target %d (%s)", chain.id,
                chain.version, move.to_target, move.from_target, move.reason)
    return True


def _leave(txn: Txn, chain: types_pb2.ChainInfo, target_id: int, why: str) -> None:
    chain.version += 1
    chain.targets.remove(target_id)
    txn.put_msg("chains", u32_key(chain.id), chain)
    record = txn.get_msg("targets", u64_key(target_id), types_pb2.TargetInfo)
    if record is not None:
        record.chain_id = 0
        record.public_state = types_pb2.OFFLINE
        record.retired = True
        txn.put_msg("targets", u64_key(target_id), record)
    log.warning("chain %d v%d: target %d leaves (%s); its chunks are deleted", chain.id, chain.version,
                target_id, why)
