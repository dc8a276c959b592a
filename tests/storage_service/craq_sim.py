"""A deterministic, step-by-step simulation of one CRAQ chain, driving storage_service.craq.

No sockets, no threads, no clock: every step is one choice among the enabled
events (deliver a message, perform a replica's next local action, retry a
waiting op, a mgmtd move, a fail-stop), made by a scheduler function so tests
can enumerate "a failure between any two steps" or draw steps from a seeded
``random.Random``. Everything observable goes into ``Sim.events`` for the
monitors in craq_monitors.py (as 3FS's P specs observe events).

Model:
* Replicas keep their chunk store (the persisted state, pending updates
  included) across a fail-stop; ops in flight, lock queues and routing are
  lost. A dead replica's callers get Unavailable (a reset connection), and a
  message to a dead replica bounces as Unavailable.
* A replica performs ChainOp actions one per step: STAGE and COMMIT touch the
  store, FORWARD/REPLY/FAIL put a message on the network, WAIT parks the op
  until a retry step (with the replica's routing of that time). Retries are
  offered with low priority: in the quiet phase only when nothing else can
  move, as a backoff would let everything else happen first.
* A request for a chunk whose lock is held waits in that chunk's queue (the
  node's chunk lock), so a chunk's updates are serialized per replica.
* Writers: each sends one write at a time to the head of its routing and
  retries (low priority, like replicas) until it is acknowledged.
* Mgmtd: detects a dead serving/syncing target (OFFLINE, moved to the chain
  end; LASTSRV when it was the last SERVING one), takes a restarted one to
  SYNCING behind the serving ones, or to SERVING when it is the LASTSRV (and
  then only it), demotes a LASTSRV to OFFLINE once another target serves again
  (else two "last servers" could each come back serving), promotes SYNCING to
  SERVING once the target reports SyncDone; each change bumps the chain
  version and is broadcast as routing messages.
* Resync: the serving predecessor of a SYNCING target waits until no op of an
  older routing is in flight (such an op may still commit without forwarding
  to the syncing target), fetches its chunk states,
  plans with craq.plan_sync, and for each chunk, under its chunk lock, pushes
  the local chunk (ChainOp push) or removes the remote-only one, then sends
  SyncDone at the chain version it ran under (restarting when that is stale).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Callable

import crc32c

from fireflyfs.common.errors import FfsError, StaleChainVersion, Unavailable
from fireflyfs.proto import types_pb2
from fireflyfs.storage_service.craq import (Action, ChainOp, ChainView, ChunkState, Do, UpdateKind,
                                            Mutation, plan_sync)

SERVING, SYNCING, LASTSRV, OFFLINE = types_pb2.SERVING, types_pb2.SYNCING, types_pb2.LASTSRV, types_pb2.OFFLINE
CHUNK_SIZE = 1 << 16


# ---------------------------------------------------------------------------- store


@dataclasses.dataclass
class MemChunk:
    commit_version: int
    update_version: int
    chain_version: int
    content: bytes

    def state(self) -> ChunkState:
        return ChunkState(self.commit_version, self.update_version, self.chain_version,
                          len(self.content), crc32c.crc32c(self.content))


def apply_mutation(content: bytes, mutation: Mutation) -> bytes:
    if mutation.kind is UpdateKind.REPLACE:
        return mutation.data
    if mutation.kind is UpdateKind.TRUNCATE:
        return content[:mutation.length].ljust(mutation.length, b"\0")
    buf = bytearray(content)
    end = mutation.offset + len(mutation.data)
    if len(buf) < end:
        buf.extend(bytes(end - len(buf)))
    buf[mutation.offset:end] = mutation.data
    return bytes(buf)


class MemStore:
    """The persisted part of a replica: chunk -> versions + current (maybe staged) bytes."""

    def __init__(self) -> None:
        self.chunks: dict[bytes, MemChunk] = {}

    def state(self, key: bytes) -> ChunkState | None:
        chunk = self.chunks.get(key)
        return chunk.state() if chunk else None

    def stage(self, key: bytes, mutation: Mutation, version: int, chain_version: int,
              commit: bool) -> ChunkState:
        old = self.chunks.get(key)
        content = apply_mutation(old.content if old else b"", mutation)
        commit_version = version if commit else (old.commit_version if old else 0)
        cv = chain_version if commit else (old.chain_version if old else 0)
        self.chunks[key] = MemChunk(commit_version, version, cv, content)
        return self.chunks[key].state()

    def commit(self, key: bytes, version: int, chain_version: int) -> ChunkState:
        chunk = self.chunks[key]
        assert chunk.update_version == version, (chunk, version)
        chunk.commit_version, chunk.chain_version = version, chain_version
        return chunk.state()


# ---------------------------------------------------------------------------- messages


@dataclasses.dataclass
class Msg:
    kind: str                  # write, update, push, op-reply, routing, sync-start, sync-dump,
                               # remove, remove-ack, sync-done, sync-done-ack
    src: str                   # "r<target>", "w<writer>", "m"
    dst: str
    key: bytes = b""
    mutation: Mutation | None = None
    version: int = 0
    chain_version: int = 0
    full_replace: bool = False
    token: int = 0             # which op/request of the receiver this answers
    ok: bool = True
    error: FfsError | None = None
    state: ChunkState | None = None
    chain: ChainView | None = None
    dump: dict | None = None


@dataclasses.dataclass
class SimOp:
    op: ChainOp
    key: bytes
    reply_to: str
    reply_token: int
    next: Action | None
    token: int = 0


# ---------------------------------------------------------------------------- actors


class Replica:
    def __init__(self, sim: "Sim", target_id: int) -> None:
        self.sim = sim
        self.id = target_id
        self.name = f"r{target_id}"
        self.store = MemStore()
        self.alive = True
        self.incarnation = 1         # bumped by a restart; mgmtd takes a new one as "must resync"
        self.synced = False          # got SyncDone in this life
        self._reset_volatile()

    def _reset_volatile(self) -> None:
        self.chain: ChainView | None = None
        self.locks: dict[bytes, SimOp | str] = {}        # key -> op, or "sync" for a remove
        self.queues: dict[bytes, collections.deque] = collections.defaultdict(collections.deque)
        self.ops: dict[int, SimOp] = {}
        self.resync: Resync | None = None

    def kill(self) -> None:
        """Fail-stop: callers of everything in progress or queued see a reset connection."""
        for op in list(self.ops.values()):
            if op.reply_to != self.name:
                self.sim.send(Msg("op-reply", self.name, op.reply_to, key=op.key, token=op.reply_token,
                                  ok=False, error=Unavailable(f"{self.name} died")))
        for queue in self.queues.values():
            for msg in queue:
                if msg.src != self.name:
                    self._answer(msg, Unavailable(f"{self.name} died"))
        self.alive = False
        self.synced = False
        self._reset_volatile()

    # ---- requests

    def on_request(self, msg: Msg) -> None:
        if msg.key in self.locks:
            self.queues[msg.key].append(msg)
        else:
            self._start(msg)

    def _start(self, msg: Msg) -> None:
        chain = self.chain
        if chain is None:
            self._answer(msg, Unavailable(f"{self.name} has no routing"))
            return
        if msg.kind == "remove":
            self._remove_remote(msg)
            return
        if msg.kind == "write":
            op = ChainOp(self.id, chain, msg.chain_version, msg.mutation)
        elif msg.kind == "push":
            op = ChainOp(self.id, chain, chain.version, None, push=True)
        else:
            op = ChainOp(self.id, chain, msg.chain_version, msg.mutation, update_version=msg.version,
                         full_replace=msg.full_replace, from_target=int(msg.src[1:]))
        token = next(self.sim.tokens)
        sim_op = SimOp(op, msg.key, msg.src, msg.token, None, token=token)
        if msg.kind == "push":
            local = self.store.state(msg.key)
            if local is None:      # gone since the plan: remove it on the syncing target instead
                self.locks[msg.key] = "sync"
                self.sim.send(Msg("remove", self.name, f"r{msg.version}", key=msg.key,
                                  chain_version=chain.version, token=msg.token))
                return
        self.locks[msg.key] = sim_op
        self.ops[token] = sim_op
        sim_op.next = op.admit(self.store.state(msg.key))

    def _remove_remote(self, msg: Msg) -> None:
        chain = self.chain
        if chain is None or msg.chain_version != chain.version or chain.state_of(self.id) != SYNCING:
            self._answer(msg, StaleChainVersion("remove for a target not syncing at this version"))
            return
        if self.store.chunks.pop(msg.key, None) is not None:
            self.sim.log("remove", self.name, msg.key)
        self.sim.send(Msg("remove-ack", self.name, msg.src, key=msg.key, token=msg.token))

    def _answer(self, msg: Msg, error: FfsError) -> None:
        kind = "remove-ack" if msg.kind == "remove" else "op-reply"
        self.sim.send(Msg(kind, self.name, msg.src, key=msg.key, token=msg.token, ok=False, error=error))

    def _release(self, key: bytes) -> None:
        del self.locks[key]
        queue = self.queues.get(key)
        while queue and key not in self.locks:
            self._start(queue.popleft())

    # ---- local steps

    def ready_ops(self) -> list[SimOp]:
        return [op for op in self.ops.values() if op.next is not None and op.next.do is not Do.WAIT]

    def retryable_ops(self) -> list[SimOp]:
        """Ops backing off; the node retries them with backoff, routing changed or not."""
        return [op for op in self.ops.values() if op.next is not None and op.next.do is Do.WAIT]

    def step_op(self, sim_op: SimOp) -> None:
        action, op, key = sim_op.next, sim_op.op, sim_op.key
        assert action is not None
        if action.do is Do.STAGE:
            mutation = op.mutation
            assert mutation is not None
            before = self.store.state(key)
            state = self.store.stage(key, mutation, action.version, action.chain_version, action.commit)
            self.sim.log("stage", self.name, key, action.version, mutation.kind is UpdateKind.REPLACE,
                         before, state, self.store.chunks[key].content)
            if action.commit:
                self.sim.log("commit", self.name, key, action.version, self.store.chunks[key].content)
            sim_op.next = op.staged(state)
        elif action.do is Do.COMMIT:
            state = self.store.commit(key, action.version, action.chain_version)
            self.sim.log("commit", self.name, key, action.version, self.store.chunks[key].content)
            sim_op.next = op.committed(state)
        elif action.do is Do.FORWARD:
            if action.full_replace:
                mutation = Mutation(UpdateKind.REPLACE, CHUNK_SIZE, data=self.store.chunks[key].content)
            else:
                mutation = op.mutation
            self.sim.send(Msg("update", self.name, f"r{action.to_target}", key=key, mutation=mutation,
                              version=action.version, chain_version=action.chain_version,
                              full_replace=action.full_replace, token=sim_op.token))
            sim_op.next = None
        elif action.do in (Do.REPLY, Do.FAIL):
            self.sim.send(Msg("op-reply", self.name, sim_op.reply_to, key=key, token=sim_op.reply_token,
                              ok=action.do is Do.REPLY, state=action.state, error=action.error))
            del self.ops[sim_op.token]
            self._release(key)

    def step_retry(self, sim_op: SimOp) -> None:
        assert self.chain is not None
        sim_op.next = sim_op.op.retry(self.chain)

    def on_op_reply(self, msg: Msg) -> None:
        sim_op = self.ops.get(msg.token)
        if sim_op is None or sim_op.next is not None:
            return                     # a stale answer to an op already moved on
        if msg.ok:
            assert msg.state is not None
            sim_op.next = sim_op.op.replied(msg.state.commit_version, msg.state.checksum)
        else:
            assert msg.error is not None
            sim_op.next = sim_op.op.failed(msg.error)


class Resync:
    """The predecessor's resync job for its SYNCING successor (one per chain version tried)."""

    def __init__(self, replica: Replica, successor: int, chain_version: int) -> None:
        self.replica = replica
        self.successor = successor
        self.chain_version = chain_version
        self.token = next(replica.sim.tokens)
        self.stage = "start"    # start -> dumping -> items -> done-sent -> succeeded | finished (failed)
        self.items: collections.deque[bytes] = collections.deque()
        self.outstanding = 0

    def ready(self) -> bool:
        if self.stage == "start":
            # Drain: an op admitted under an older routing may still commit here without
            # forwarding to the syncing target; the comparison must come after it.
            return all(op.op.chain.version >= self.chain_version for op in self.replica.ops.values())
        return self.stage == "items" and self.outstanding == 0

    def step(self) -> None:
        replica, sim = self.replica, self.replica.sim
        if self.stage == "start":
            self.stage = "dumping"
            sim.send(Msg("sync-start", replica.name, f"r{self.successor}", chain_version=self.chain_version,
                         token=self.token))
        elif self.stage == "items":
            if self.items:
                key = self.items.popleft()
                self.outstanding = 1
                replica.on_request(Msg("push", replica.name, replica.name, key=key, token=self.token,
                                       version=self.successor))
            else:
                self.stage = "done-sent"
                sim.send(Msg("sync-done", replica.name, f"r{self.successor}",
                             chain_version=self.chain_version, token=self.token))

    def on_dump(self, msg: Msg) -> None:
        if not msg.ok:
            self.stage = "finished"
            return
        local = {key: chunk.state() for key, chunk in self.replica.store.chunks.items()}
        send, remove = plan_sync(local, msg.dump or {})
        self.items = collections.deque(sorted({key for key, _ in send} | set(remove)))
        self.stage = "items"

    def on_item_done(self, msg: Msg) -> None:
        self.outstanding = 0
        if not msg.ok:
            self.stage = "finished"       # routing moved on; a new job starts if still needed


# ---------------------------------------------------------------------------- writer and mgmtd


@dataclasses.dataclass
class WriteSpec:
    key: bytes
    slot: int
    data: bytes


class Writer:
    def __init__(self, sim: "Sim", writer_id: int, plan: list[WriteSpec]) -> None:
        self.sim = sim
        self.id = writer_id
        self.name = f"w{writer_id}"
        self.plan = plan
        self.index = 0
        self.chain: ChainView | None = None
        self.in_flight = False
        self.token = 0
        self.retrying = False             # the last attempt failed: resend with backoff

    def done(self) -> bool:
        return self.index >= len(self.plan)

    def ready(self) -> bool:
        """A first attempt can go (retries are offered separately, with low priority)."""
        if self.done() or self.in_flight or self.chain is None or self.chain.head is None:
            return False
        return not self.retrying

    def can_retry(self) -> bool:
        return (self.retrying and not self.in_flight and self.chain is not None
                and self.chain.head is not None)

    def step(self) -> None:
        assert self.chain is not None and self.chain.head is not None
        spec = self.plan[self.index]
        self.in_flight = True
        self.token = next(self.sim.tokens)
        self.sim.log("issue", self.name, spec.key, spec.slot, spec.data)
        mutation = Mutation(UpdateKind.WRITE, CHUNK_SIZE, offset=spec.slot * self.sim.slot_bytes, data=spec.data)
        self.sim.send(Msg("write", self.name, f"r{self.chain.head}", key=spec.key, mutation=mutation,
                          chain_version=self.chain.version, token=self.token))

    def on_reply(self, msg: Msg) -> None:
        if not self.in_flight or msg.token != self.token:
            return
        self.in_flight = False
        if msg.ok:
            assert msg.state is not None
            spec = self.plan[self.index]
            self.sim.log("ack", self.name, spec.key, spec.slot, spec.data, msg.state.commit_version)
            self.index += 1
            self.retrying = False
        else:
            self.retrying = True


class Mgmtd:
    def __init__(self, sim: "Sim", targets: list[int]) -> None:
        self.sim = sim
        self.chain_id = 1
        self.version = 1
        self.targets = list(targets)
        self.states = {t: SERVING for t in targets}
        self.incarnations = {t: 1 for t in targets}

    def view(self) -> ChainView:
        return ChainView(self.chain_id, self.version, tuple(self.targets),
                         tuple(self.states[t] for t in self.targets))

    def _reorder(self) -> None:
        rank = {SERVING: 0, LASTSRV: 1, SYNCING: 2, OFFLINE: 3}
        self.targets.sort(key=lambda t: rank[self.states[t]])   # stable: keeps order within a class

    def _bump(self, why: str) -> None:
        self.version += 1
        self._reorder()
        self.sim.log("chain", self.version, tuple(self.targets), tuple(self.states[t] for t in self.targets),
                     why)
        self.sim.broadcast_routing()

    def moves(self) -> list[Callable[[], None]]:
        moves: list[Callable[[], None]] = []
        for t in self.targets:
            replica = self.sim.replicas[t]
            state = self.states[t]
            if replica.alive and replica.incarnation != self.incarnations[t]:
                moves.append(lambda t=t: self._new_incarnation(t))
            elif not replica.alive and state in (SERVING, SYNCING):
                moves.append(lambda t=t: self._set(t, self._down_state(t), "heartbeat lost"))
            elif replica.alive and state == LASTSRV:
                moves.append(lambda t=t: self._set(t, SERVING, "last server back"))
            elif replica.alive and state == OFFLINE:
                if any(s == SERVING for s in self.states.values()) and \
                        not any(s == SYNCING for s in self.states.values()):
                    moves.append(lambda t=t: self._set(t, SYNCING, "back online"))
            elif replica.alive and state == SYNCING and replica.synced:
                moves.append(lambda t=t: self._set(t, SERVING, "sync done"))
        return moves

    def _down_state(self, target: int) -> int:
        """The last SERVING target to fail is LASTSRV: only it may serve again without a sync."""
        others = [t for t, s in self.states.items() if s == SERVING and t != target]
        return OFFLINE if others or self.states[target] != SERVING else LASTSRV

    def _new_incarnation(self, target: int) -> None:
        """A restarted target must resync: it never resumes serving with what it may have missed."""
        self.incarnations[target] = self.sim.replicas[target].incarnation
        if self.states[target] in (SERVING, SYNCING):
            self._set(target, self._down_state(target), "restarted (new incarnation)")

    def _set(self, target: int, state: int, why: str) -> None:
        if state in (OFFLINE, LASTSRV):   # a failed target moves to the chain end
            self.targets.remove(target)
            self.targets.append(target)
        if state == SERVING:   # someone serves again: the old last server is no longer the last one
            for other, other_state in self.states.items():
                if other_state == LASTSRV and other != target:
                    self.states[other] = OFFLINE
        self.states[target] = state
        self._bump(f"target {target}: {why}")


# ---------------------------------------------------------------------------- the simulation


class Sim:
    def __init__(self, replicas: int, plans: list[list[WriteSpec]], slot_bytes: int = 4) -> None:
        self.tokens = itertools.count(1)
        self.slot_bytes = slot_bytes
        self.events: list[tuple] = []
        self.network: list[Msg] = []
        self.replicas = {101 + i * 100: Replica(self, 101 + i * 100) for i in range(replicas)}
        self.writers = [Writer(self, i + 1, plan) for i, plan in enumerate(plans)]
        self.mgmtd = Mgmtd(self, list(self.replicas))
        self.steps = 0
        self.trace = False                       # log every step's name too (debugging a seed)
        self.broadcast_routing()
        for msg in self.network:                 # start with routing installed everywhere
            self._deliver_routing(msg)
        self.network.clear()

    # ---- plumbing

    def log(self, *event) -> None:
        self.events.append((self.steps,) + event)

    def send(self, msg: Msg) -> None:
        self.network.append(msg)

    def broadcast_routing(self) -> None:
        view = self.mgmtd.view()
        for replica in self.replicas.values():
            if replica.alive:
                self.send(Msg("routing", "m", replica.name, chain=view))
        for writer in self.writers:
            self.send(Msg("routing", "m", writer.name, chain=view))

    def actor(self, name: str):
        if name.startswith("r"):
            return self.replicas[int(name[1:])]
        if name.startswith("w"):
            return self.writers[int(name[1:]) - 1]
        return None

    def _deliver_routing(self, msg: Msg) -> None:
        actor = self.actor(msg.dst)
        assert msg.chain is not None
        if actor.chain is None or msg.chain.version > actor.chain.version:
            actor.chain = msg.chain

    # ---- delivery

    def deliver(self, msg: Msg) -> None:
        self.network.remove(msg)
        target = self.actor(msg.dst)
        if isinstance(target, Replica) and not target.alive:
            if msg.kind in ("write", "update", "sync-start", "remove", "sync-done"):
                kind = {"sync-start": "sync-dump", "remove": "remove-ack", "sync-done": "sync-done-ack"}.get(
                    msg.kind, "op-reply")
                self.send(Msg(kind, msg.dst, msg.src, key=msg.key, token=msg.token, ok=False,
                              error=Unavailable(f"{msg.dst} is down")))
            return
        if msg.kind == "routing":
            self._deliver_routing(msg)
            if isinstance(target, Replica):
                self._maybe_start_resync(target)
            return
        if isinstance(target, Writer):
            target.on_reply(msg)
            return
        replica: Replica = target
        if msg.kind in ("write", "update", "remove"):
            replica.on_request(msg)
        elif msg.kind == "op-reply":
            if msg.dst == msg.src:           # a resync push answering its own job
                self._resync_item_done(replica, msg)
            else:
                replica.on_op_reply(msg)
        elif msg.kind == "remove-ack":
            if msg.key in replica.locks and replica.locks[msg.key] == "sync":
                replica._release(msg.key)
            self._resync_item_done(replica, msg)
        elif msg.kind == "sync-start":
            chain = replica.chain
            if chain is None or chain.version != msg.chain_version or chain.state_of(replica.id) != SYNCING:
                self.send(Msg("sync-dump", replica.name, msg.src, token=msg.token, ok=False,
                              error=StaleChainVersion("not syncing at this version")))
            else:
                dump = {key: chunk.state() for key, chunk in replica.store.chunks.items()}
                self.send(Msg("sync-dump", replica.name, msg.src, token=msg.token, dump=dump))
        elif msg.kind == "sync-dump":
            if replica.resync and replica.resync.token == msg.token:
                replica.resync.on_dump(msg)
        elif msg.kind == "sync-done":
            chain = replica.chain
            ok = chain is not None and chain.version == msg.chain_version and \
                chain.state_of(replica.id) == SYNCING
            if ok:
                replica.synced = True
                self.log("sync-done", replica.name, msg.chain_version)
            self.send(Msg("sync-done-ack", replica.name, msg.src, token=msg.token, ok=ok))
        elif msg.kind == "sync-done-ack":
            if replica.resync and replica.resync.token == msg.token:
                replica.resync.stage = "succeeded" if msg.ok else "finished"

    def _resync_item_done(self, replica: Replica, msg: Msg) -> None:
        if replica.resync and replica.resync.token == msg.token:
            replica.resync.on_item_done(msg)

    def _maybe_start_resync(self, replica: Replica) -> None:
        chain = replica.chain
        if chain is None or chain.state_of(replica.id) != SERVING:
            return
        successor = chain.successor(replica.id)
        if successor is None or chain.state_of(successor) != SYNCING:
            return
        job = replica.resync
        if (job is None or job.stage == "finished" or job.successor != successor
                or (job.stage == "succeeded" and job.chain_version != chain.version)):
            replica.resync = Resync(replica, successor, chain.version)

    # ---- stepping

    def enabled(self) -> list[tuple[str, Callable[[], None]]]:
        events: list[tuple[str, Callable[[], None]]] = []
        for msg in self.network:
            events.append((f"deliver {msg.kind} {msg.src}->{msg.dst}", lambda m=msg: self.deliver(m)))
        for replica in self.replicas.values():
            if not replica.alive:
                continue
            for op in replica.ready_ops():
                assert op.next is not None
                events.append((f"{replica.name} {op.next.do.value} v{op.next.version}",
                               lambda r=replica, o=op: r.step_op(o)))
            if replica.resync or replica.chain is not None:
                self._maybe_start_resync(replica)
                if replica.resync and replica.resync.ready():
                    events.append((f"{replica.name} resync {replica.resync.stage}",
                                   replica.resync.step))
        for writer in self.writers:
            if writer.ready():
                events.append((f"{writer.name} write #{writer.index}", writer.step))
        for move in self.mgmtd.moves():
            events.append(("mgmtd", move))
        return events

    def retries(self) -> list[tuple[str, Callable[[], None]]]:
        events = []
        for replica in self.replicas.values():
            if replica.alive:
                for op in replica.retryable_ops():
                    events.append((f"{replica.name} retry", lambda r=replica, o=op: r.step_retry(o)))
        for writer in self.writers:
            if writer.can_retry():
                events.append((f"{writer.name} retry #{writer.index}", writer.step))
        return events

    def kill(self, target: int) -> None:
        """Fail-stop. Messages on their way to it are lost (requests bounce as Unavailable)."""
        self.log("kill", f"r{target}")
        self.replicas[target].kill()
        name = f"r{target}"
        for msg in [m for m in self.network if m.dst == name]:
            self.deliver(msg)

    def restart(self, target: int) -> None:
        replica = self.replicas[target]
        assert not replica.alive
        replica.alive = True
        replica.incarnation += 1
        self.log("restart", replica.name)
        # Registration: mgmtd sees the new incarnation and answers with routing that has it offline.
        self.mgmtd._new_incarnation(target)
        replica.chain = self.mgmtd.view()
        self.network = [m for m in self.network if not (m.dst == replica.name and m.kind == "routing")]

    def step(self, choose: Callable[[list[tuple[str, Callable[[], None]]]], int]) -> bool:
        """One step; False when nothing is enabled (quiescent)."""
        events = self.enabled() + self.retries()
        if not events:
            return False
        name, run = events[choose(events)]
        self.steps += 1
        if self.trace:
            self.log("step", name)
        run()
        return True

    def quiesce(self, steps_max: int, choose: Callable[[list], int]) -> None:
        """Run without faults, retries only when nothing else can move; raise if it does not converge."""
        for _ in range(steps_max):
            events = self.enabled() or self.retries()
            if not events:
                return
            name, run = events[choose(events)]
            self.steps += 1
            if self.trace:
                self.log("step", name)
            run()
        raise AssertionError(f"no quiescence after {steps_max} quiet steps (liveness)")
