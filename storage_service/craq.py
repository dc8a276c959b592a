"""CRAQ chain replication as pure logic: what one replica does with one chunk update.

Nothing here does I/O. A driver (``chain_driver.py`` on a storage node, the
step-by-step simulation in ``tests/storage_service/craq_sim.py``) feeds events in and
performs the returned ``Action``: stage on disk, forward to the successor,
commit, answer upstream, or back off and retry with the routing of that time.
Both drivers run this same code, so the simulation tests the rules the node
serves with (etcd-raft style: the algorithm is a library, I/O is the user's).

The rules, after the 3FS design notes (deepseek-ai/3FS docs/design_notes.md)
with the names of 3FS's ChunkReplica checks:

* Chain write members are the targets whose public state is SERVING or
  SYNCING, in chain order; the head is the first one and must be SERVING.
  Every hop checks the request's chain version against its own.
* Head (client write): u = v + 1 under the per-chunk lock (the driver holds
  it for the whole op, which serializes a chunk's writes at the head). A chunk
  left pending by an earlier failure is first **rolled forward**: its staged
  content is pushed down the chain as a full replace at its update version and
  committed, then the new write gets the next version.
* Successor: u <= v is a duplicate (answered with the local state); u equal to
  a pending local u is re-applied (the predecessor resent it); u = v + 1 is
  staged; anything else is MissingUpdate, which makes the predecessor resend
  the whole chunk (a full replace is always acceptable).
* A full replace carries the whole chunk; the receiver takes it whatever its
  versions, except a stale one: a lower version than a commit it made in the
  same chain version (a late duplicate).
* The tail stages and commits at once; each predecessor commits when the ack
  arrives, after comparing the successor's chunk checksum with its own. A
  mismatch is answered by resending the whole chunk; a mismatch after a full
  replace is a broken invariant (Internal).
* To a SYNCING successor updates go as full replaces.
* Forwarding errors other than MissingUpdate wait for a routing change (the
  driver backs off, then calls ``retry`` with the routing it holds): a new
  successor gets the update again, no successor means this replica is now the
  tail and commits, and a replica that left the chain gives up (the chunk
  stays pending: resync or the next head write repairs it).

Staging keeps the chunk's chain version; commit sets it (as 3FS's chainVer),
so resync can tell a chunk committed in a newer chain from a stale pending one.
"""

from __future__ import annotations

import dataclasses
import enum
import logging

from fireflyfs.common.errors import (FfsError, Internal, MissingUpdate, NotHead, Retryable,
                                     StaleChainVersion, require)
from fireflyfs.meta_service.mgmtd.target_states import READABLE, WRITABLE
from fireflyfs.proto import types_pb2

log = logging.getLogger(__name__)

SERVING = types_pb2.SERVING
SYNCING = types_pb2.SYNCING


# ---------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, slots=True)
class ChainView:
    """One chain as a replica's routing shows it: version, order, public states."""

    chain_id: int
    version: int
    targets: tuple[int, ...]           # chain order, head first
    states: tuple[int, ...]            # PublicTargetState per target, same order

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.states):
            raise Internal(f"chain {self.chain_id}: {len(self.targets)} targets, "
                           f"{len(self.states)} states")

    def state_of(self, target_id: int) -> int | None:
        for target, state in zip(self.targets, self.states):
            if target == target_id:
                return state
        return None

    @property
    def members(self) -> tuple[int, ...]:
        """Targets that take writes (SERVING or SYNCING), in chain order."""
        return tuple(t for t, s in zip(self.targets, self.states) if s in WRITABLE)

    @property
    def head(self) -> int | None:
        members = self.members
        if members and self.state_of(members[0]) == SERVING:
            return members[0]
        return None

    @property
    def serving(self) -> tuple[int, ...]:
        return tuple(t for t, s in zip(self.targets, self.states) if s in READABLE)

    def successor(self, target_id: int) -> int | None:
        members = self.members
        if target_id not in members:
            return None
        index = members.index(target_id)
        return members[index + 1] if index + 1 < len(members) else None

    def predecessor(self, target_id: int) -> int | None:
        members = self.members
        if target_id not in members:
            return None
        index = members.index(target_id)
        return members[index - 1] if index > 0 else None


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkState:
    """What the protocol reads of a chunk on one replica (a ChunkMeta without the bytes)."""

    commit_version: int
    update_version: int
    chain_version: int
    length: int
    checksum: int

    @property
    def pending(self) -> bool:
        return self.update_version != self.commit_version


class UpdateKind(enum.Enum):
    WRITE = "write"          # bytes at an offset
    TRUNCATE = "truncate"    # set the length
    REPLACE = "replace"      # the whole chunk (full replace)


@dataclasses.dataclass(frozen=True, slots=True)
class Mutation:
    """What an update does to a chunk."""

    kind: UpdateKind
    chunk_size: int
    offset: int = 0
    data: bytes = b""        # WRITE: the bytes; REPLACE: the whole chunk
    length: int = 0          # TRUNCATE: the new length


# ---------------------------------------------------------------------------- outputs


class Do(enum.Enum):
    STAGE = "stage"          # apply the mutation at `version` (committed too when `commit`)
    FORWARD = "forward"      # send the update (whole chunk when `full_replace`) to `to_target`
    COMMIT = "commit"        # make `version` committed, at chain version `chain_version`
    REPLY = "reply"          # answer upstream: success, with `state`
    FAIL = "fail"            # answer upstream: `error`
    WAIT = "wait"            # back off, then call ChainOp.retry(current routing of the chain)


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    do: Do
    version: int = 0
    chain_version: int = 0
    to_target: int = 0
    full_replace: bool = False
    commit: bool = False
    state: ChunkState | None = None
    error: FfsError | None = None


class Phase(enum.Enum):
    ADMIT = "admit"
    ROLL_FORWARD = "roll-forward"   # pushing a pending leftover before the client's write
    MAIN = "main"
    DONE = "done"


class ChainOp:
    """One chunk update as one replica sees it, from admission to its answer.

    ``update_version`` None: a client request at the head (Write, TruncateChunk).
    ``push``: the predecessor of a syncing target pushes its chunk as it is
    (resync); ``mutation`` is then unused. Otherwise an Update from the
    predecessor ``from_target``.
    """

    def __init__(self, target_id: int, chain: ChainView, request_chain_version: int,
                 mutation: Mutation | None, *, update_version: int | None = None,
                 full_replace: bool = False, from_target: int = 0, push: bool = False) -> None:
        self.target_id = target_id
        self.chain = chain
        self.request_chain_version = request_chain_version
        self.mutation = mutation
        self.update_version = update_version
        self.full_replace_in = full_replace or (mutation is not None and mutation.kind is UpdateKind.REPLACE)
        self.from_target = from_target
        self.push = push
        self.phase = Phase.ADMIT
        self.version = 0                     # the version this op stages/commits now
        self.staged_state: ChunkState | None = None
        self.forward_full = False            # forward the whole chunk whatever the successor's state
        self.sent_full = False
        self.successor: int | None = None

    @property
    def is_client(self) -> bool:
        return self.update_version is None and not self.push

    # ------------------------------------------------------------------ events

    def admit(self, local: ChunkState | None) -> Action:
        """The first step, under the chunk lock, with the chunk's current state (None: absent)."""
        if self.phase is not Phase.ADMIT:
            raise Internal(f"admit in phase {self.phase}")
        chain = self.chain
        if self.request_chain_version != chain.version:
            return self._fail(StaleChainVersion(
                f"chain {chain.chain_id}: request has chain version {self.request_chain_version}, "
                f"target {self.target_id} has {chain.version}"))
        if self.target_id not in chain.members:
            return self._fail(StaleChainVersion(
                f"chain {chain.chain_id} version {chain.version}: target {self.target_id} is not a "
                f"write member (members {list(chain.members)})"))
        if self.is_client:
            if chain.head != self.target_id:
                return self._fail(NotHead(f"chain {chain.chain_id} version {chain.version}: head is "
                                          f"target {chain.head}, not {self.target_id}"))
            if local is not None and local.pending:
                log.info("target %d chain %d: rolling forward pending update %d before a new write",
                         self.target_id, chain.chain_id, local.update_version)
                return self._start_roll_forward(local)
            return self._stage_main((local.commit_version if local else 0) + 1)
        if self.push:
            if local is None:
                return self._fail(Internal("push of a chunk that does not exist"))
            if local.pending:
                return self._start_roll_forward(local)
            self.phase, self.version, self.forward_full = Phase.MAIN, local.commit_version, True
            self.staged_state = local
            return self._next_hop()
        if self.from_target and chain.predecessor(self.target_id) != self.from_target:
            return self._fail(StaleChainVersion(
                f"chain {chain.chain_id} version {chain.version}: update from target "
                f"{self.from_target}, but the predecessor of {self.target_id} is "
                f"{chain.predecessor(self.target_id)}"))
        return self._admit_update(local)

    def _admit_update(self, local: ChunkState | None) -> Action:
        u = require(self.update_version, "the update version of a chain update")
        if self.full_replace_in:
            if (local is not None and not local.pending and local.commit_version > u
                    and local.chain_version == self.chain.version):
                return self._duplicate(local)      # a late copy of an older full replace
            self.forward_full = True
            return self._stage_main(u)
        v = local.commit_version if local else 0
        if u <= v:
            return self._duplicate(local)
        if local is not None and local.pending:
            if u == local.update_version:
                return self._stage_main(u)         # the predecessor resent it: apply again
        elif u == v + 1:
            return self._stage_main(u)
        local_u = local.update_version if local else 0
        return self._fail(MissingUpdate(
            f"chain {self.chain.chain_id}: target {self.target_id} got update {u} but holds "
            f"commit {v} / update {local_u}"))

    def staged(self, state: ChunkState) -> Action:
        """The STAGE action is done; state is the chunk after it."""
        if self.phase is not Phase.MAIN or state.update_version != self.version:
            raise Internal(f"staged {state} in phase {self.phase} at version {self.version}")
        self.staged_state = state
        if not state.pending:
            return self._reply(state)              # staged as tail: committed in the same step
        return self._next_hop()

    def replied(self, commit_version: int, checksum: int) -> Action:
        """The successor answered success with its chunk's commit version and checksum."""
        staged = require(self.staged_state, "the staged state a successor's reply answers")
        if commit_version < self.version:
            log.warning("chain %d: successor %s answered commit %d for update %d; resending the chunk",
                        self.chain.chain_id, self.successor, commit_version, self.version)
            return self._resend_full(MissingUpdate("successor answered an older version"))
        if commit_version == self.version and checksum != staged.checksum:
            log.warning("chain %d: successor %s checksum %#010x != %#010x of target %d at version %d",
                        self.chain.chain_id, self.successor, checksum, staged.checksum,
                        self.target_id, self.version)
            return self._resend_full(Internal(
                f"chain {self.chain.chain_id}: successor {self.successor} checksum {checksum:#010x} "
                f"differs from {staged.checksum:#010x} of target {self.target_id} after a full replace"))
        return Action(Do.COMMIT, version=self.version, chain_version=self.chain.version)

    def failed(self, error: FfsError) -> Action:
        """The successor answered an error, or could not be reached (Unavailable)."""
        if isinstance(error, MissingUpdate):
            return self._resend_full(error)
        if isinstance(error, Retryable):
            return Action(Do.WAIT, error=error)
        return self._fail(error)

    def retry(self, chain: ChainView) -> Action:
        """After WAIT: go on with the routing the replica holds now."""
        self.chain = chain
        if self.target_id not in chain.members:
            return self._fail(StaleChainVersion(
                f"chain {chain.chain_id} version {chain.version}: target {self.target_id} left the "
                f"chain's write members during an update"))
        return self._next_hop()

    def committed(self, state: ChunkState) -> Action:
        """The COMMIT action is done."""
        if state.pending or state.commit_version != self.version:
            raise Internal(f"commit of {self.version} left {state}")
        if self.phase is Phase.ROLL_FORWARD and self.is_client:
            return self._stage_main(state.commit_version + 1)
        return self._reply(state)

    # ------------------------------------------------------------------ helpers

    def _start_roll_forward(self, local: ChunkState) -> Action:
        self.phase, self.version, self.forward_full = Phase.ROLL_FORWARD, local.update_version, True
        self.staged_state = local
        return self._next_hop()

    def _stage_main(self, version: int) -> Action:
        self.phase, self.version = Phase.MAIN, version
        if not self.full_replace_in:
            self.forward_full = False
        tail = self.chain.successor(self.target_id) is None
        return Action(Do.STAGE, version=version, chain_version=self.chain.version, commit=tail)

    def _next_hop(self) -> Action:
        successor = self.chain.successor(self.target_id)
        self.successor = successor
        if successor is None:
            return Action(Do.COMMIT, version=self.version, chain_version=self.chain.version)
        full = self.forward_full or self.chain.state_of(successor) == SYNCING
        self.sent_full = full
        return Action(Do.FORWARD, version=self.version, chain_version=self.chain.version,
                      to_target=successor, full_replace=full)

    def _resend_full(self, error: FfsError) -> Action:
        if self.sent_full:
            if isinstance(error, Retryable):
                return Action(Do.WAIT, error=error)
            return self._fail(error)
        self.forward_full = True
        return self._next_hop()

    def _duplicate(self, local: ChunkState | None) -> Action:
        self.phase = Phase.DONE
        return Action(Do.REPLY, state=local or ChunkState(0, 0, 0, 0, 0))

    def _reply(self, state: ChunkState) -> Action:
        self.phase = Phase.DONE
        return Action(Do.REPLY, state=state)

    def _fail(self, error: FfsError) -> Action:
        self.phase = Phase.DONE
        return Action(Do.FAIL, error=error)


# ---------------------------------------------------------------------------- resync


class SyncReason(enum.Enum):
    """Why resync sends or removes a chunk (the first four are the 3FS rules)."""

    LOCAL_ONLY = "local-only"                 # send
    REMOTE_ONLY = "remote-only"               # remove on the syncing target
    NEWER_CHAIN_VERSION = "newer-chain-version"   # local chainVer > remote: send
    VERSION_MISMATCH = "version-mismatch"     # same chainVer, local v != remote u: send
    PENDING = "pending"                       # either side has a pending update: send (roll forward)
    CONTENT_MISMATCH = "content-mismatch"     # anything else not byte-identical: send
    EQUAL = "equal"                           # nothing to do


def classify_for_sync(local: ChunkState | None, remote: ChunkState | None) -> SyncReason:
    """Compare one chunk of the predecessor (local) with the syncing target's (remote).

    The 3FS rules treat "remote chain version newer" as equal-or-in-flight; we
    send unless the two are provably identical (same committed version, length
    and checksum), since a full replace is idempotent and an extra copy is
    cheaper than a divergent replica.
    """
    if local is None and remote is None:
        return SyncReason.EQUAL
    if remote is None:
        return SyncReason.LOCAL_ONLY
    if local is None:
        return SyncReason.REMOTE_ONLY
    if local.chain_version > remote.chain_version:
        return SyncReason.NEWER_CHAIN_VERSION
    if local.chain_version == remote.chain_version and local.commit_version != remote.update_version:
        return SyncReason.VERSION_MISMATCH
    if local.pending or remote.pending:
        return SyncReason.PENDING
    if (local.commit_version, local.length, local.checksum) != \
            (remote.commit_version, remote.length, remote.checksum):
        return SyncReason.CONTENT_MISMATCH
    return SyncReason.EQUAL


def plan_sync(local: dict[bytes, ChunkState], remote: dict[bytes, ChunkState]
              ) -> tuple[list[tuple[bytes, SyncReason]], list[bytes]]:
    """(chunks to send with why, chunks to remove), each in key order."""
    send: list[tuple[bytes, SyncReason]] = []
    remove: list[bytes] = []
    for key in sorted(local.keys() | remote.keys()):
        reason = classify_for_sync(local.get(key), remote.get(key))
        if reason is SyncReason.REMOTE_ONLY:
            remove.append(key)
        elif reason is not SyncReason.EQUAL:
            send.append((key, reason))
    return send, remove
