"""The leader's reduce: local inputs summed chunk by chunk, up two trees, results back down.

The data is cut in two halves; half t travels tree t. Within a half, chunks
are pipelined: a rank's *up* worker sums chunk i of its host's inputs (in
local-rank order), adds what each child sent for chunk i (children in tree
order), and sends the partial sum to its parent, while its *down* worker is
still forwarding chunk i-1 of the result from the parent to the children. At
the root the sum is final: divided for a mean, rounded to the caller's dtype,
and sent down. Every rank therefore ends with the root's bits: the order of
every addition is fixed by the trees, and no rank reduces on its own.

Each direction of each link has exactly one reading worker, and the two
trees use separate links, so no cycle of blocking sends can form. A failing
worker shuts every link down so its peers fail too instead of hanging.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import socket
import struct

import numpy as np

from . import dtypes, transport
from .trees import TreeNode

HEADER = struct.Struct("!QQBB")      # call sequence, element count, dtype code, op code
OPS = {"sum": 1, "mean": 2}


@dataclasses.dataclass
class TreeLinks:
    """One tree's place and sockets at this host: parent link and child links in summation order."""

    node: TreeNode
    parent: socket.socket | None
    children: list[socket.socket]


@dataclasses.dataclass
class Call:
    """One allreduce at a leader."""

    inputs: list[np.ndarray]      # storage views of the host's inputs, local rank order
    out: np.ndarray               # storage view the result lands in
    total: np.ndarray             # accumulation scratch, same length
    element_type: dtypes.ElementType
    divisor: int                  # world size for a mean, 1 for a sum
    header: bytes
    chunk_elements: int
    copy_out: np.ndarray | None = None   # a second home for the result (members' shared region)


def split_halves(count: int, trees: int) -> list[tuple[int, int]]:
    """[lo, hi) of each tree's half (one tree: everything)."""
    if trees == 1:
        return [(0, count)]
    middle = count // 2
    return [(0, middle), (middle, count)]


def chunks(lo: int, hi: int, size: int):
    for start in range(lo, hi, size):
        yield start, min(hi, start + size)


def run(call: Call, links: list[TreeLinks], workers: concurrent.futures.Executor) -> None:
    """Reduce call over the given trees (one tree with no links: a single host).

    workers: an executor with a thread for each up and down worker (up to 4),
    kept by the group so a call does not pay for starting threads.
    """
    errors: list[BaseException] = []
    tasks: list[concurrent.futures.Future] = []

    def guarded(target, *args):
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)
            for tree in links:
                for sock in [tree.parent, *tree.children]:
                    if sock is not None:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass

    for (lo, hi), tree in zip(split_halves(len(call.out), len(links)), links):
        if tree.parent is not None:
            tasks.append(workers.submit(guarded, _down, call, tree, lo, hi))
        tasks.append(workers.submit(guarded, _up, call, tree, lo, hi))
    concurrent.futures.wait(tasks)
    if errors:
        raise errors[0]


def _up(call: Call, tree: TreeLinks, lo: int, hi: int) -> None:
    element_type = call.element_type
    for child in tree.children:
        _check_header(child, call.header)
    if tree.parent is not None:
        transport.send(tree.parent, call.header)
    received = np.empty(min(call.chunk_elements, max(hi - lo, 1)), dtype=element_type.accumulate)
    # One input already in the accumulation dtype (float32/float64, no local members): no scratch
    # copies. A leaf sends its input as its partial sum, an inner node sums into scratch, the root
    # sums into the result itself. The additions and their order are the general path's, so the
    # bits are the same; the general path moves each byte through memory two more times.
    direct = len(call.inputs) == 1 and element_type.storage == element_type.accumulate
    for a, b in chunks(lo, hi, call.chunk_elements):
        own = call.inputs[0][a:b]
        if direct and tree.parent is not None and not tree.children:
            transport.send(tree.parent, own)
            continue
        if direct and tree.children:
            total = call.total[a:b] if tree.parent is not None else call.out[a:b]
            for number, child in enumerate(tree.children):
                piece = received[: b - a]
                transport.recv_into(child, memoryview(piece))
                np.add(total if number else own, piece, out=total)
        else:
            total = call.total[a:b]
            rest = call.inputs[1:]
            if rest and element_type.storage == element_type.accumulate:
                np.add(own, rest[0][a:b], out=total)        # = copy, then add: one pass fewer
                rest = rest[1:]
            elif element_type.name == "bfloat16":
                np.copyto(total, dtypes.to_accumulate(own, element_type))
            else:
                np.copyto(total, own, casting="same_kind")
            for other in rest:
                dtypes.add_into(total, other[a:b], element_type)
            for child in tree.children:
                piece = received[: b - a]
                transport.recv_into(child, memoryview(piece))
                np.add(total, piece, out=total)
        if tree.parent is not None:
            transport.send(tree.parent, total)
            continue
        if call.divisor != 1:
            np.divide(total, call.divisor, out=total)
        if not (direct and tree.children):      # the direct root summed into the result already
            dtypes.round_into(call.out[a:b], total, element_type)
        if call.copy_out is not None:
            np.copyto(call.copy_out[a:b], call.out[a:b])     # while the chunk is still in cache
        for child in tree.children:
            transport.send(child, call.out[a:b])


def _down(call: Call, tree: TreeLinks, lo: int, hi: int) -> None:
    for a, b in chunks(lo, hi, call.chunk_elements):
        piece = call.out[a:b]
        transport.recv_into(tree.parent, memoryview(piece))
        if call.copy_out is not None:
            np.copyto(call.copy_out[a:b], piece)
        for child in tree.children:
            transport.send(child, piece)


def _check_header(sock: socket.socket, mine: bytes) -> None:
    theirs = bytearray(HEADER.size)
    transport.recv_into(sock, memoryview(theirs))
    if bytes(theirs) != mine:
        seq, count, code, op = HEADER.unpack(theirs)
        my_seq, my_count, my_code, my_op = HEADER.unpack(mine)
        raise transport.LinkError(
            f"HFReduce ranks disagree on call {my_seq}: a child sent (call {seq}, {count} elements, "
            f"dtype code {code}, op {op}), this host has ({my_count}, {my_code}, {my_op})")
