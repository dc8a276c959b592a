"""HFReduceGroup: rendezvous, links, and the allreduce call of one rank.

A rank is either its host's leader or a member. A member hands its buffer to
the leader through shared memory and waits; the leader sums the host's
buffers chunk by chunk straight into the inter-node pipeline (pipeline.py)
and hands the result back the same way, as HFReduce does with D2H copies,
a CPU reduce, and H2D copies ([FF] §IV). Small control messages between a
member and its leader travel over a loopback-cheap TCP link of the same class.

Call protocol on a member's LOCAL link, per allreduce:
member -> HEADER; leader -> REPLY(status, shared-buffer path or "" if unchanged);
member copies in, -> READY; leader reduces, -> DONE(status); member copies out.
A member only writes its region after the leader's reply, and the leader
only overwrites region 0 after every READY of the next call, so a region is
never written while another rank reads it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import struct
import threading
import time

import numpy as np

from . import dtypes, pipeline, rendezvous, transport
from .shm import SharedBuffer
from .topology import Topology
from .transport import LinkKind

log = logging.getLogger(__name__)

REPLY = struct.Struct("!BH")      # status (0 ok), length of the path that follows
STATUS = struct.Struct("!BI")     # status (0 ok), length of the message that follows
chunk_bytes_default = 512 * 1024
setup_timeout_s_default = 120.0
master_port_default = 29600


class HFReduceError(RuntimeError):
    """An allreduce failed (a peer left, ranks disagree on the call); the group is unusable after."""


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class HFReduceGroup:
    """One rank of an HFReduce group; ``allreduce`` must be called by every rank in the same order.

    Arguments left as None come from the torch.distributed-style environment
    (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and FFS_HFREDUCE_HOST (the
    host key; default: this rank's address toward the master, so ranks in one
    network namespace or machine share a host), FFS_HFREDUCE_CHUNK_BYTES.
    ``ring=True`` also links the ranks in a ring for ``ring_allreduce`` (the
    benchmark's baseline).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None,
                 master_addr: str | None = None, master_port: int | None = None,
                 host_key: str | None = None, listen_host: str | None = None,
                 chunk_bytes: int | None = None, timeout_s: float = setup_timeout_s_default,
                 ring: bool = False) -> None:
        self.rank = int(rank if rank is not None else _env_int("RANK", 0))
        self.world_size = int(world_size if world_size is not None else _env_int("WORLD_SIZE", 1))
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside 0..{self.world_size - 1}")
        master = (master_addr or os.environ.get("MASTER_ADDR") or "127.0.0.1",
                  int(master_port if master_port is not None
                      else _env_int("MASTER_PORT", master_port_default)))
        self.chunk_bytes = int(chunk_bytes or _env_int("FFS_HFREDUCE_CHUNK_BYTES", chunk_bytes_default))
        if self.chunk_bytes < 8:
            raise ValueError("chunk_bytes must be at least 8")
        self._seq = 0
        self._broken: str | None = None
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Up and down workers of both trees (4 at most), reused by every call.
        self._workers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="hfreduce-worker")
        self._buffer: SharedBuffer | None = None
        self._member_paths: dict[int, str] = {}
        self._scratch = np.empty(0, dtype=np.float32)
        self._links: dict[tuple[LinkKind, int], socket.socket] = {}

        store = (rendezvous.Store(master[0], master[1], self.world_size, timeout_s)
                 if self.rank == 0 else None)
        connected = rendezvous.connect_store(master, timeout_s)
        local_ip = connected.getsockname()[0]
        self._listener = transport.listen(listen_host or local_ip)
        address = self._listener.getsockname()[:2]
        host = host_key or os.environ.get("FFS_HFREDUCE_HOST") or local_ip
        table = rendezvous.exchange(master, self.rank, self.world_size,
                                    {"host": host, "address": list(address)}, timeout_s, connected)
        if store is not None:
            store.join()
            if store.error is not None:
                raise store.error
        self.topology = Topology.from_table(table, self.rank)
        self._open_links(timeout_s, ring)
        log.info("hfreduce rank %d/%d: host %d of %d (local rank %d of %d)", self.rank,
                 self.world_size, self.topology.node, self.topology.node_count,
                 self.topology.local_rank, len(self.topology.local_ranks))

    # ---- setup ----------------------------------------------------------------------------

    def _open_links(self, timeout_s: float, ring: bool) -> None:
        """Connect to everyone we know we need, then accept everyone who needs us (no deadlock:
        a connect completes against the peer's listen backlog)."""
        topo = self.topology
        expected: set[tuple[LinkKind, int]] = set()
        if topo.is_leader:
            if topo.node_count > 1:
                for kind, tree in zip((LinkKind.TREE0, LinkKind.TREE1), topo.trees()):
                    if tree.parent is not None:
                        address = topo.addresses[topo.leader_of(tree.parent)]
                        self._links[(kind, tree.parent)] = transport.connect(
                            address, kind, topo.node, timeout_s)
                    expected.update((kind, child) for child in tree.children)
            expected.update((LinkKind.LOCAL, r) for r in topo.local_ranks[1:])
        else:
            self._links[(LinkKind.LOCAL, topo.leader)] = transport.connect(
                topo.addresses[topo.leader], LinkKind.LOCAL, self.rank, timeout_s)
        if ring and self.world_size > 1:
            right = (self.rank + 1) % self.world_size
            self._links[(LinkKind.RING, right)] = transport.connect(
                topo.addresses[right], LinkKind.RING, self.rank, timeout_s)
            expected.add((LinkKind.RING, (self.rank - 1) % self.world_size))
        self._accepted: dict[tuple[LinkKind, int], socket.socket] = {}
        deadline = time.monotonic() + timeout_s
        while expected - set(self._accepted):
            kind, peer, sock = transport.accept(self._listener, deadline)
            if (kind, peer) not in expected or (kind, peer) in self._accepted:
                sock.close()
                raise HFReduceError(f"unexpected HFReduce link {kind.name} from {peer}")
            self._accepted[(kind, peer)] = sock

    def _tree_links(self) -> list[pipeline.TreeLinks]:
        topo = self.topology
        if topo.node_count == 1:
            # No trees, but still two halves: two workers sum in parallel (numpy drops the GIL).
            return [pipeline.TreeLinks(topo.trees()[0], None, []) for _ in range(2)]
        links = []
        for kind, tree in zip((LinkKind.TREE0, LinkKind.TREE1), topo.trees()):
            links.append(pipeline.TreeLinks(
                tree, self._links.get((kind, tree.parent)) if tree.parent is not None else None,
                [self._accepted[(kind, child)] for child in tree.children]))
        return links

    # ---- the call -------------------------------------------------------------------------

    def allreduce(self, array, op: str = "sum"):
        """Sum (or average) array across all ranks, in place; returns array.

        array: a C-contiguous numpy array or CPU torch tensor of float32,
        float64, float16 or bfloat16, the same shape and dtype on every rank.
        16-bit types are summed in float32 and rounded once; every rank gets
        bit-identical values.
        """
        if op not in pipeline.OPS:
            raise ValueError(f"op must be one of {sorted(pipeline.OPS)}, not {op!r}")
        view, element_type, original = dtypes.storage_view(array)
        with self._lock:
            if self._broken:
                raise HFReduceError(f"HFReduce group is unusable after an earlier failure: {self._broken}")
            self._seq += 1
            header = pipeline.HEADER.pack(self._seq, len(view), element_type.code, pipeline.OPS[op])
            try:
                if self.world_size > 1:
                    if self.topology.is_leader:
                        self._lead(view, element_type, op, header)
                    else:
                        self._follow(view, header)
            except Exception as exc:
                self._broken = f"{type(exc).__name__}: {exc}"
                raise HFReduceError(f"allreduce {self._seq} failed on rank {self.rank}: {exc}") from exc
        return original

    def _follow(self, view: np.ndarray, header: bytes) -> None:
        link = self._links[(LinkKind.LOCAL, self.topology.leader)]
        transport.send(link, header)
        status, path_length = self._recv_struct(link, REPLY)
        path = self._recv_bytes(link, path_length).decode()
        if status:
            raise HFReduceError(f"leader refused the call: {path}")
        if path:
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = SharedBuffer.attach(path, os.stat(path).st_size)
        np.copyto(self._buffer.region(self.topology.local_rank, view.dtype, len(view)), view)
        link.sendall(b"R")
        status, length = self._recv_struct(link, STATUS)
        if status:
            raise HFReduceError(self._recv_bytes(link, length).decode())
        np.copyto(view, self._buffer.region(0, view.dtype, len(view)))

    def _lead(self, view: np.ndarray, element_type: dtypes.ElementType, op: str, header: bytes) -> None:
        topo = self.topology
        members = topo.local_ranks[1:]
        member_links = [self._accepted[(LinkKind.LOCAL, r)] for r in members]
        disagreement = None
        for rank, link in zip(members, member_links):
            theirs = self._recv_bytes(link, pipeline.HEADER.size)
            if theirs != header and disagreement is None:
                disagreement = (f"local ranks disagree on allreduce {self._seq}: rank {rank} sent "
                                f"{pipeline.HEADER.unpack(theirs)}, leader {pipeline.HEADER.unpack(header)}")
        if disagreement:
            message = disagreement.encode()
            for link in member_links:
                link.sendall(REPLY.pack(1, len(message)) + message)
            raise HFReduceError(disagreement)
        inputs = [view]
        if members:
            self._ensure_buffer(len(topo.local_ranks) * view.nbytes)
            for rank, link in zip(members, member_links):
                path = str(self._buffer.path)
                fresh = self._member_paths.get(rank) != path
                self._member_paths[rank] = path
                encoded = path.encode() if fresh else b""
                link.sendall(REPLY.pack(0, len(encoded)) + encoded)
            for link in member_links:
                if self._recv_bytes(link, 1) != b"R":
                    raise transport.LinkError("local member sent garbage instead of READY")
            self._buffer.unlink()     # every member has it mapped now
            inputs += [self._buffer.region(i, view.dtype, len(view)) for i in range(1, len(topo.local_ranks))]
        if len(self._scratch) < len(view) or self._scratch.dtype != element_type.accumulate:
            self._scratch = np.empty(len(view), dtype=element_type.accumulate)
        call = pipeline.Call(inputs=inputs, out=view, total=self._scratch[:len(view)], element_type=element_type,
                             divisor=self.world_size if op == "mean" else 1, header=header,
                             chunk_elements=max(1, self.chunk_bytes // element_type.accumulate.itemsize),
                             copy_out=self._buffer.region(0, view.dtype, len(view)) if members else None)
        try:
            pipeline.run(call, self._tree_links(), self._workers)
        except BaseException as exc:
            message = f"allreduce {self._seq} failed at leader {self.rank}: {exc}".encode()
            for link in member_links:
                try:
                    link.sendall(STATUS.pack(1, len(message)) + message)
                except OSError:
                    pass
            raise
        if members:
            for link in member_links:
                link.sendall(STATUS.pack(0, 0))

    def _ensure_buffer(self, size: int) -> None:
        if self._buffer is None or self._buffer.size < size:
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = SharedBuffer.create(max(size, 4096))

    @staticmethod
    def _recv_bytes(sock: socket.socket, size: int) -> bytes:
        data = bytearray(size)
        transport.recv_into(sock, memoryview(data))
        return bytes(data)

    @classmethod
    def _recv_struct(cls, sock: socket.socket, layout: struct.Struct) -> tuple:
        return layout.unpack(cls._recv_bytes(sock, layout.size))

    # ---- extras ---------------------------------------------------------------------------

    def ring_allreduce(self, array, op: str = "sum"):
        """The naive ring allreduce over the same transport (needs ``ring=True``); in place."""
        from .ring import ring_allreduce

        if self.world_size == 1:
            return array
        right = self._links[(LinkKind.RING, (self.rank + 1) % self.world_size)]
        left = self._accepted[(LinkKind.RING, (self.rank - 1) % self.world_size)]
        with self._lock:
            return ring_allreduce(array, op, self.rank, self.world_size, left, right, self._workers)

    def submit(self, array, op: str = "sum") -> concurrent.futures.Future:
        """allreduce on the group's one background thread (calls keep their submission order)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hfreduce")
        return self._executor.submit(self.allreduce, array, op)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._workers.shutdown(wait=False)
        for sock in [*self._links.values(), *getattr(self, "_accepted", {}).values(), self._listener]:
            try:
                sock.close()
            except OSError:
                pass
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def __enter__(self) -> "HFReduceGroup":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
