"""The 3FS target-state machine: the design-note table as data, applied by pure functions.

Why pure: every public-state decision of the cluster manager goes through
``generate_new_chain``, which takes a chain (targets in order, each with its
current public state and the local state mgmtd believes) and returns the new
order, the new public states and whether the chain version must be bumped.
No clock, no store, no logging of its own: tests enumerate every input and a
simulated cluster drives it; ClusterState persists the result and logs each
move with the reason returned here.

The table (3FS docs/design_notes.md), one row per (local, current public):

    up-to-date | serving, syncing, lastsrv   -> serving
    up-to-date | waiting                     -> waiting
    up-to-date | offline                     -> waiting
    online     | serving, lastsrv            -> serving
    online     | offline                     -> waiting
    online     | waiting, syncing            -> syncing if the predecessor is serving, else waiting
    offline    | serving                     -> lastsrv if it has no predecessor, else offline
    offline    | lastsrv                     -> lastsrv (offline if another target stays serving)
    offline    | syncing, waiting, offline   -> offline

Chain-wide rules on top of the rows (what "predecessor" means here):
  * order after every update: serving, lastsrv, syncing, waiting, offline;
    within a class, targets already in it keep their order and come before
    targets that just entered it (so a failed target moves to the very end,
    and a target that finished syncing becomes the tail);
  * LASTSRV iff no other target of the chain stays SERVING: of the serving
    targets that fail together with none left, the first in chain order is
    the last server (an existing last server keeps the title); there is
    never more than one LASTSRV, and never one next to a SERVING target;
  * at most one SYNCING: the first candidate (an ongoing sync before a waiting
    target, then chain order) syncs when the target before it in the new
    order is SERVING; every other candidate waits behind it;
  * the version is bumped exactly when the order or some public state changes.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Sequence

from fireflyfs.proto import types_pb2


class PublicState(enum.IntEnum):
    """Routing's view of a target (values are the wire enum's)."""

    SERVING = types_pb2.SERVING
    SYNCING = types_pb2.SYNCING
    WAITING = types_pb2.WAITING
    LASTSRV = types_pb2.LASTSRV
    OFFLINE = types_pb2.OFFLINE


class LocalState(enum.IntEnum):
    """What the storage node reports (or mgmtd infers) about a target (wire values)."""

    UPTODATE = types_pb2.UPTODATE
    ONLINE = types_pb2.ONLINE
    OFFLINE = types_pb2.LOCAL_OFFLINE


class Condition(enum.Enum):
    """The two rows whose outcome depends on the rest of the chain."""

    PREDECESSOR_SERVING = "predecessor serving"   # then `next`, else `otherwise`
    NO_OTHER_SERVING = "no other target stays serving"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    next: PublicState
    reason: str
    condition: Condition | None = None
    otherwise: PublicState | None = None


P, L = PublicState, LocalState
_SYNC = Rule(P.SYNCING, "online, predecessor serving: start syncing", Condition.PREDECESSOR_SERVING,
             P.WAITING)

# The design-note table, complete over LocalState x PublicState (15 rows).
TRANSITIONS: dict[tuple[LocalState, PublicState], Rule] = {
    (L.UPTODATE, P.SERVING): Rule(P.SERVING, "up to date"),
    (L.UPTODATE, P.SYNCING): Rule(P.SERVING, "sync done, up to date"),
    (L.UPTODATE, P.LASTSRV): Rule(P.SERVING, "the last server is back up to date"),
    (L.UPTODATE, P.WAITING): Rule(P.WAITING, "up to date but not synced in this chain: keep waiting"),
    (L.UPTODATE, P.OFFLINE): Rule(P.WAITING, "back from offline: must resync"),
    (L.ONLINE, P.SERVING): Rule(P.SERVING, "online and serving"),
    (L.ONLINE, P.LASTSRV): Rule(P.SERVING, "the last server is back online"),
    (L.ONLINE, P.OFFLINE): Rule(P.WAITING, "back online: must resync"),
    (L.ONLINE, P.WAITING): _SYNC,
    (L.ONLINE, P.SYNCING): _SYNC,
    (L.OFFLINE, P.SERVING): Rule(P.LASTSRV, "offline, no other target stays serving: last server",
                                 Condition.NO_OTHER_SERVING, P.OFFLINE),
    (L.OFFLINE, P.LASTSRV): Rule(P.LASTSRV, "offline last server", Condition.NO_OTHER_SERVING, P.OFFLINE),
    (L.OFFLINE, P.SYNCING): Rule(P.OFFLINE, "offline"),
    (L.OFFLINE, P.WAITING): Rule(P.OFFLINE, "offline"),
    (L.OFFLINE, P.OFFLINE): Rule(P.OFFLINE, "offline"),
}
if len(TRANSITIONS) != len(LocalState) * len(PublicState):   # not an assert: must hold under -O too
    raise AssertionError("TRANSITIONS must cover every (local, public) state pair")

# Chain order: the head is the first SERVING target; offline targets sit at the end.
ORDER_RANK = {P.SERVING: 0, P.LASTSRV: 1, P.SYNCING: 2, P.WAITING: 3, P.OFFLINE: 4}
# Which public states take part in CRAQ writes / serve reads (the design-note table).
WRITABLE = frozenset({P.SERVING, P.SYNCING})
READABLE = frozenset({P.SERVING})


def next_public_state(local: LocalState, public: PublicState, *, predecessor_serving: bool,
                      other_serving: bool) -> tuple[PublicState, str]:
    """One row of the table: (next public state, reason)."""
    rule = TRANSITIONS[(LocalState(local), PublicState(public))]
    if rule.condition is Condition.PREDECESSOR_SERVING and not predecessor_serving:
        return rule.otherwise, "online, predecessor not serving: wait"
    if rule.condition is Condition.NO_OTHER_SERVING and other_serving:
        return rule.otherwise, "offline, another target stays serving or is the last server"
    return rule.next, rule.reason


@dataclasses.dataclass(frozen=True, slots=True)
class TargetState:
    target_id: int
    public: PublicState
    local: LocalState


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    target_id: int
    old: PublicState
    new: PublicState
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class ChainUpdate:
    targets: tuple[TargetState, ...]   # the new order with the new public states
    moves: tuple[Move, ...]            # public-state changes, with reasons
    changed: bool                      # order or a public state changed: bump the chain version

    @property
    def order(self) -> list[int]:
        return [t.target_id for t in self.targets]


def generate_new_chain(chain: Sequence[TargetState]) -> ChainUpdate:
    """Apply the table to every target of one chain (current order, head first)."""
    ids = [t.target_id for t in chain]
    if not chain or len(set(ids)) != len(ids):
        raise ValueError(f"a chain needs distinct targets, got {ids}")
    decided: dict[int, tuple[PublicState, str]] = {}
    # 1. Rows without a condition.
    for t in chain:
        rule = TRANSITIONS[(t.local, t.public)]
        if rule.condition is None:
            decided[t.target_id] = (rule.next, rule.reason)
    # 2. Offline servers: the first (an existing last server, else chain order) is the last
    #    server when nobody stays serving; every other one is plain offline.
    position = {t.target_id: index for index, t in enumerate(chain)}
    staying = any(state is P.SERVING for state, _ in decided.values())
    offline_servers = sorted((t for t in chain if (t.local, t.public) in ((L.OFFLINE, P.LASTSRV),
                                                                          (L.OFFLINE, P.SERVING))),
                             key=lambda t: (t.public is not P.LASTSRV, position[t.target_id]))
    for rank, t in enumerate(offline_servers):
        decided[t.target_id] = next_public_state(t.local, t.public, predecessor_serving=False,
                                                 other_serving=staying or rank > 0)
    # 3. Sync candidates: the first syncs when the target before it in the new order serves.
    has_serving = any(state is P.SERVING for state, _ in decided.values())
    has_lastsrv = any(state is P.LASTSRV for state, _ in decided.values())
    candidates = sorted((t for t in chain if t.target_id not in decided),
                        key=lambda t: (t.public is not P.SYNCING, position[t.target_id]))
    for rank, t in enumerate(candidates):
        predecessor_serving = rank == 0 and has_serving and not has_lastsrv
        state, reason = next_public_state(t.local, t.public, predecessor_serving=predecessor_serving,
                                          other_serving=has_serving)
        if rank > 0:
            reason = "online, another target syncs first: wait"
        decided[t.target_id] = (state, reason)
    # 4. Order: by class; within a class the old members first, then newcomers; stable otherwise.
    new_order = sorted(chain, key=lambda t: (ORDER_RANK[decided[t.target_id][0]],
                                             decided[t.target_id][0] is not t.public,
                                             position[t.target_id]))
    targets = tuple(TargetState(t.target_id, decided[t.target_id][0], t.local) for t in new_order)
    moves = tuple(Move(t.target_id, t.public, decided[t.target_id][0], decided[t.target_id][1])
                  for t in chain if decided[t.target_id][0] is not t.public)
    changed = bool(moves) or [t.target_id for t in targets] != ids
    return ChainUpdate(targets, moves, changed)
