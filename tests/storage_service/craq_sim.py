"""A deterministic, step-by-step simulation of one CRAQ chain, driving the real protocol cores.

No sockets, no threads, no clock: every step is one choice among the enabled
events (deliver a message, perform a replica's next local action, retry a
waiting op, time out a request, a heartbeat, a chain update, a fail-stop),
made by a scheduler function so tests can enumerate "a failure between any two
steps" or draw steps from a seeded ``random.Random``. Everything observable
goes into ``Sim.events`` for the monitors in craq_monitors.py (as 3FS's P
specs observe events). Nothing of the protocol is re-implemented here: replicas
run ``storage_service.craq.ChainOp`` and ``plan_sync``, each target's local
state is the storage node's own ``LocalStateTracker``, and every chain change
is ``meta_service.mgmtd.target_states.generate_new_chain`` applied to the
public states and the local states mgmtd knows, WAITING included.

Model:
* Replicas keep their chunk store (the persisted state, pending updates
  included) across a fail-stop; ops in flight, lock queues, routing, the
  client-write dedup table and the local-state tracker are lost (a new process
  starts ONLINE). A dead replica's callers get Unavailable (a reset
  connection), and a message to a dead replica bounces as Unavailable.
* A replica performs ChainOp actions one per step: STAGE and COMMIT touch the
  store, FORWARD/REPLY/FAIL put a message on the network, WAIT parks the op
  until a retry step (with the replica's routing of that time). Retries and
  timeouts are offered with low priority: in the quiet phase only when nothing
  else can move, as a backoff or a deadline would let everything else happen
  first.
* A request for a chunk whose lock is held waits in that chunk's queue (the
  node's chunk lock), so a chunk's updates are serialized per replica.
* Writers: each sends one write at a time to the head of its routing, with its
  sequence number (one client channel), and retries the same sequence number
  (low priority, or after a timeout) until it is acknowledged. The head answers
  a retry of a write it already applied from its dedup table and refuses an
  older sequence number, as Target.deduplicated does.
* Mgmtd: heartbeats report each live target's tracker state; a dead target's
  silence is detected as LOCAL_OFFLINE; a restart registers a new incarnation,
  which forces the target's local state offline and runs one chain update
  before the node gets its routing (ClusterState.register_node). A chain update
  step applies generate_new_chain once (one step of the table, as the real
  ticker) and broadcasts the routing when the chain changed.
* Resync: the serving predecessor of a SYNCING target waits until no op of an
  older routing is in flight (such an op may still commit without forwarding
  to the syncing target), fetches its chunk states, plans with
  craq.plan_sync, and for each chunk, under its chunk lock, pushes the local
  chunk (ChainOp push) or removes the remote-only one, then sends SyncDone at
  the chain version it ran under (restarting when that is stale or a reply
  does not come).
* Network faults (``drop``, ``duplicate``, ``cut``/``heal``; the test drives
  them from its seeded rng like kills): a dropped message is lost, a
  duplicated one is delivered twice at independent times, a cut link loses
  every message across it until healed. Routing lost this way is recovered by
  a refresh step (the heartbeat reply or GetRoutingInfo of the real nodes).
  Links to mgmtd are not cut: mgmtd partitions and fencing are the subject of
  tests/meta_service/mgmtd/test_simulated_cluster.py.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
from typing import Callable

import crc32c

from fireflyfs.common.errors import FfsError, InvalidArgument, StaleChainVersion, Unavailable
from fireflyfs.meta_service.mgmtd.target_states import LocalState, PublicState, TargetState, generate_new_chain
from fireflyfs.proto import types_pb2
from fireflyfs.storage_service.craq import (Action, ChainOp, ChainView, ChunkState, Do, Mutation, UpdateKind,
                                            plan_sync)
from fireflyfs.storage_service.local_state import LocalStateTracker

SERVING, SYNCING = types_pb2.SERVING, types_pb2.SYNCING
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
    seq: int = 0               # a write's sequence number on its writer's channel
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
    writer: str = ""           # a client write: the writer whose dedup entry it settles


# ---------------------------------------------------------------------------- actors


class Replica:
    def __init__(self, sim: "Sim", target_id: int) -> None:
        self.sim = sim
        self.id = target_id
        self.name = f"r{target_id}"
        self.store = MemStore()
        self.alive = True
        self.incarnation = 1         # bumped by a restart; mgmtd takes a new one as "must resync"
        self._reset_volatile()

    def _reset_volatile(self) -> None:
        self.chain: ChainView | None = None
        self.tracker = LocalStateTracker(self.id)          # a new process starts ONLINE
        self.locks: dict[bytes, SimOp | str] = {}        # key -> op, or "sync" for a remove
        self.queues: dict[bytes, collections.deque] = collections.defaultdict(collections.deque)
        self.ops: dict[int, SimOp] = {}
        self.resync: Resync | None = None
        self.removes: dict[int, int] = {}                  # remove token -> resync job token
        self.dedup: dict[str, tuple[int, ChunkState]] = {}      # writer -> last applied (seq, result)
        self.dedup_running: dict[str, tuple[int, list[Msg]]] = {}  # writer -> (seq in progress, its retries)

    def install_routing(self, chain: ChainView) -> None:
        if self.chain is None or chain.version > self.chain.version:
            self.chain = chain
            self.tracker.observe(self.id in chain.targets, chain.state_of(self.id))

    def kill(self) -> None:
        """Fail-stop: callers of everything in progress or queued see a reset connection."""
        for op in list(self.ops.values()):
            if op.reply_to != self.name:
                self.sim.send(Msg("op-reply", self.name, op.reply_to, key=op.key, token=op.reply_token,
                                  ok=False, error=Unavailable(f"{self.name} died")))
        waiting = [msg for queue in self.queues.values() for msg in queue]
        waiting += [msg for _, retries in self.dedup_running.values() for msg in retries]
        for msg in waiting:
            if msg.src != self.name:
                self._answer(msg, Unavailable(f"{self.name} died"))
        self.alive = False
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
        if msg.kind == "write" and not self._admit_write(msg):
            return
        if msg.kind == "write":
            op = ChainOp(self.id, chain, msg.chain_version, msg.mutation)
        elif msg.kind == "push":
            op = ChainOp(self.id, chain, chain.version, None, push=True)
        else:
            op = ChainOp(self.id, chain, msg.chain_version, msg.mutation, update_version=msg.version,
                         full_replace=msg.full_replace, from_target=int(msg.src[1:]))
        token = next(self.sim.tokens)
        sim_op = SimOp(op, msg.key, msg.src, msg.token, None, token=token,
                       writer=msg.src if msg.kind == "write" else "")
        if msg.kind == "push":
            local = self.store.state(msg.key)
            if local is None:      # gone since the plan: remove it on the syncing target instead
                remove_token = next(self.sim.tokens)
                self.locks[msg.key] = f"sync:{remove_token}"
                self.removes[remove_token] = msg.token
                self.sim.send(Msg("remove", self.name, f"r{msg.version}", key=msg.key,
                                  chain_version=chain.version, token=remove_token))
                return
        self.locks[msg.key] = sim_op
        self.ops[token] = sim_op
        sim_op.next = op.admit(self.store.state(msg.key))

    def _admit_write(self, msg: Msg) -> bool:
        """Exactly-once per writer sequence number (Target.deduplicated): False when answered here."""
        running = self.dedup_running.get(msg.src)
        if running is not None:
            if msg.seq == running[0]:
                running[1].append(msg)          # a retry racing its original waits for its result
            else:
                self._answer(msg, InvalidArgument(f"seq {msg.seq} while {running[0]} is in progress"))
            return False
        done = self.dedup.get(msg.src)
        if done is not None and msg.seq < done[0]:
            self._answer(msg, InvalidArgument(f"seq {msg.seq} is older than {done[0]}"))
            return False
        if done is not None and msg.seq == done[0]:
            self.sim.send(Msg("op-reply", self.name, msg.src, key=msg.key, token=msg.token, state=done[1]))
            return False
        self.dedup_running[msg.src] = (msg.seq, [])
        return True

    def _write_finished(self, writer: str, ok: bool, state: ChunkState | None) -> None:
        seq, waiting = self.dedup_running.pop(writer)
        if ok:
            self.dedup[writer] = (seq, state)
        for msg in waiting:
            self.on_request(msg)               # answered from the table, or applied anew after a failure

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
            # A fresh token per attempt: a late answer to an earlier attempt is never taken for this one.
            del self.ops[sim_op.token]
            sim_op.token = next(self.sim.tokens)
            self.ops[sim_op.token] = sim_op
            self.sim.send(Msg("update", self.name, f"r{action.to_target}", key=key, mutation=mutation,
                              version=action.version, chain_version=action.chain_version,
                              full_replace=action.full_replace, token=sim_op.token))
            sim_op.next = None
        elif action.do in (Do.REPLY, Do.FAIL):
            self.sim.send(Msg("op-reply", self.name, sim_op.reply_to, key=key, token=sim_op.reply_token,
                              ok=action.do is Do.REPLY, state=action.state, error=action.error))
            del self.ops[sim_op.token]
            if sim_op.writer:
                self._write_finished(sim_op.writer, action.do is Do.REPLY, action.state)
            self._release(key)

    def step_retry(self, sim_op: SimOp) -> None:
        assert self.chain is not None
        sim_op.next = sim_op.op.retry(self.chain)

    def awaiting_reply(self) -> list[SimOp]:
        """Ops whose forwarded update has not been answered: a deadline may end the wait."""
        return [op for op in self.ops.values() if op.next is None]

    def step_timeout(self, sim_op: SimOp) -> None:
        sim_op.next = sim_op.op.failed(Unavailable(f"{self.name}: update timed out"))

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

    def __init__(self, replica: Replica, successor: int, chain_version: int, after_failure: bool = False) -> None:
        self.replica = replica
        self.successor = successor
        self.chain_version = chain_version
        self.after_failure = after_failure      # its start waits out a backoff (a retry-tier step)
        self.token = next(replica.sim.tokens)
        self.stage = "start"    # start -> dumping -> items -> done-sent -> succeeded | finished (failed)
        self.items: collections.deque[bytes] = collections.deque()
        self.outstanding = 0
        self.current: bytes | None = None      # the chunk being pushed or removed

    def awaiting(self) -> bool:
        """Waiting for an answer that may never come (lost, or its peer gone): a deadline ends it."""
        return self.stage in ("dumping", "done-sent") or (self.stage == "items" and self.outstanding > 0)

    def time_out(self) -> None:
        """The job gives up (as an RPC deadline would); the next one starts over. A remove it was
        waiting for releases its chunk lock, as the real push does when its RemoveChunk call fails."""
        replica = self.replica
        replica.sim.log("resync-timeout", replica.name, self.stage)
        if self.stage == "items" and self.current is not None:
            lock = replica.locks.get(self.current)
            if isinstance(lock, str) and lock.startswith("sync:"):
                replica.removes.pop(int(lock[5:]), None)
                replica._release(self.current)
        self.stage = "finished"

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
                self.current = key
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
                          chain_version=self.chain.version, token=self.token, seq=self.index + 1))

    def time_out(self) -> None:
        """No answer in time (lost, or still on its way): retry the same sequence number."""
        self.sim.log("timeout", self.name, self.index)
        self.in_flight = False
        self.retrying = True

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


@functools.lru_cache(maxsize=4096)
def _next_chain(chain: tuple[TargetState, ...]):
    """generate_new_chain, remembered: it is pure, and the sim asks the same question every step."""
    return generate_new_chain(chain)


class Mgmtd:
    """The cluster manager's view of one chain, moved only by the real state table.

    ``local`` is what mgmtd knows of each target's local state: the last heartbeat's report, or
    LOCAL_OFFLINE for a target whose node went silent or registered a new incarnation (as
    ClusterState does). ``targets``/``states`` are the chain order and public states of routing.
    """

    def __init__(self, sim: "Sim", targets: list[int]) -> None:
        self.sim = sim
        self.chain_id = 1
        self.version = 1
        self.targets = list(targets)
        self.states = {t: SERVING for t in targets}
        self.local = {t: LocalState.ONLINE for t in targets}      # registration's default
        self.incarnations = {t: 1 for t in targets}

    def view(self) -> ChainView:
        return ChainView(self.chain_id, self.version, tuple(self.targets),
                         tuple(self.states[t] for t in self.targets))

    def _proposal(self):
        chain = tuple(TargetState(t, PublicState(self.states[t]), self.local[t]) for t in self.targets)
        return _next_chain(chain)

    def moves(self) -> list[tuple[str, Callable[[], None]]]:
        moves: list[tuple[str, Callable[[], None]]] = []
        for t in self.targets:
            replica = self.sim.replicas[t]
            if not replica.alive:
                if self.local[t] is not LocalState.OFFLINE:
                    moves.append((f"mgmtd: r{t} silent", lambda t=t: self._report(t, LocalState.OFFLINE,
                                                                                  "heartbeat lost")))
            elif replica.incarnation == self.incarnations[t]:
                reported = LocalState(replica.tracker.state)
                if reported is not self.local[t]:
                    moves.append((f"mgmtd: r{t} heartbeat {reported.name}",
                                   lambda t=t, s=reported: self._report(t, s, "heartbeat")))
        if self._proposal().changed:
            moves.append(("mgmtd: chain update", lambda: self.update_chain("tick")))
        return moves

    def _report(self, target: int, local: LocalState, why: str) -> None:
        self.sim.log("local", f"r{target}", self.local[target].name, local.name, why)
        self.local[target] = local

    def register(self, target: int, incarnation: int) -> None:
        """A restarted node registers: its targets are offline until they resync, and the chain
        moves one step before the node gets its routing (ClusterState.register_node)."""
        self.incarnations[target] = incarnation
        self._report(target, LocalState.OFFLINE, f"restarted (incarnation {incarnation})")
        self.update_chain("registration")

    def update_chain(self, why: str) -> None:
        """One step of the table over the whole chain; broadcast when anything changed."""
        update = self._proposal()
        if not update.changed:
            return
        self.version += 1
        self.targets = update.order
        for target in update.targets:
            self.states[target.target_id] = int(target.public)
        self.sim.log("chain", self.version, tuple(self.targets), tuple(self.states[t] for t in self.targets),
                     f"{why}: " + "; ".join(f"r{m.target_id} {m.old.name}->{m.new.name} ({m.reason})"
                                            for m in update.moves))
        self.sim.broadcast_routing()


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
        self.cut_links: set[frozenset[str]] = set()
        for replica in self.replicas.values():   # fresh, empty targets seen before the chain table
            replica.tracker.observe(False, SERVING)
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
        if isinstance(actor, Replica):
            actor.install_routing(msg.chain)
        elif actor.chain is None or msg.chain.version > actor.chain.version:
            actor.chain = msg.chain

    def refresh_routing(self, name: str) -> None:
        """A node or client fetches routing it missed (heartbeat reply / GetRoutingInfo)."""
        self._deliver_routing(Msg("routing", "m", name, chain=self.mgmtd.view()))
        actor = self.actor(name)
        if isinstance(actor, Replica):
            self._maybe_start_resync(actor)

    # ---- network faults (driven by the test's rng, like kills)

    def drop(self, msg: Msg) -> None:
        self.log("drop", msg.kind, msg.src, msg.dst)
        self.network.remove(msg)

    def duplicate(self, msg: Msg) -> None:
        self.log("duplicate", msg.kind, msg.src, msg.dst)
        self.network.append(dataclasses.replace(msg))

    def cut(self, a: str, b: str) -> None:
        """Partition: every message between a and b is lost until heal()."""
        self.log("cut", a, b)
        self.cut_links.add(frozenset((a, b)))

    def heal(self) -> None:
        if self.cut_links:
            self.log("heal", sorted(tuple(sorted(link)) for link in self.cut_links))
        self.cut_links.clear()

    # ---- delivery

    def deliver(self, msg: Msg) -> None:
        self.network.remove(msg)
        if frozenset((msg.src, msg.dst)) in self.cut_links:
            self.log("lost", msg.kind, msg.src, msg.dst)
            return
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
            job_token = replica.removes.pop(msg.token, None)
            if replica.locks.get(msg.key) == f"sync:{msg.token}":
                replica._release(msg.key)
            if job_token is not None:
                msg.token = job_token
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
                replica.tracker.sync_done()
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
            replica.resync = Resync(replica, successor, chain.version,
                                    after_failure=job is not None and job.stage == "finished")

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
                job = replica.resync
                if job and job.ready() and not (job.stage == "start" and job.after_failure):
                    events.append((f"{replica.name} resync {job.stage}", job.step))
        for writer in self.writers:
            if writer.ready():
                events.append((f"{writer.name} write #{writer.index}", writer.step))
        events += self.mgmtd.moves()
        return events

    def retries(self) -> list[tuple[str, Callable[[], None]]]:
        """Backoffs and routing refreshes: what a node does when waiting got it nowhere."""
        events = []
        version = self.mgmtd.version
        for replica in self.replicas.values():
            if replica.alive:
                for op in replica.retryable_ops():
                    events.append((f"{replica.name} retry", lambda r=replica, o=op: r.step_retry(o)))
                if replica.chain is None or replica.chain.version < version:
                    events.append((f"{replica.name} refresh", lambda n=replica.name: self.refresh_routing(n)))
        for writer in self.writers:
            if writer.can_retry():
                events.append((f"{writer.name} retry #{writer.index}", writer.step))
            if writer.chain is None or writer.chain.version < version:
                events.append((f"{writer.name} refresh", lambda n=writer.name: self.refresh_routing(n)))
        for replica in self.replicas.values():
            job = replica.resync
            if replica.alive and job and job.after_failure and job.stage == "start" and job.ready():
                events.append((f"{replica.name} resync again", job.step))
        return events

    def timeouts(self) -> list[tuple[str, Callable[[], None]]]:
        """Deadlines of requests still unanswered (lost, or slow); longer than any backoff."""
        events = []
        for replica in self.replicas.values():
            if replica.alive:
                for op in replica.awaiting_reply():
                    events.append((f"{replica.name} timeout", lambda r=replica, o=op: r.step_timeout(o)))
                if replica.resync and replica.resync.awaiting():
                    events.append((f"{replica.name} resync timeout", replica.resync.time_out))
        for writer in self.writers:
            if writer.in_flight:
                events.append((f"{writer.name} timeout #{writer.index}", writer.time_out))
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
        # Registration: mgmtd takes the new incarnation offline, moves the chain one step, answers with routing.
        self.mgmtd.register(target, replica.incarnation)
        replica.install_routing(self.mgmtd.view())
        self.network = [m for m in self.network if not (m.dst == replica.name and m.kind == "routing")]

    def step(self, choose: Callable[[list[tuple[str, Callable[[], None]]]], int]) -> bool:
        """One step; False when nothing is enabled (quiescent)."""
        events = self.enabled() + self.retries() + self.timeouts()
        if not events:
            return False
        name, run = events[choose(events)]
        self.steps += 1
        if self.trace:
            self.log("step", name)
        run()
        return True

    def quiesce(self, steps_max: int, choose: Callable[[list], int]) -> None:
        """Heal every partition, then run without faults, retries only when nothing else can move;
        raise if it does not converge."""
        self.heal()
        for _ in range(steps_max):
            events = self.enabled() or self.retries() or self.timeouts()
            if not events:
                return
            name, run = events[choose(events)]
            self.steps += 1
            if self.trace:
                self.log("step", name)
            run()
        raise AssertionError(f"no quiescence after {steps_max} quiet steps (liveness)")
