"""Run an HFReduce job as real processes (forked, so no re-import cost) and collect results."""

from __future__ import annotations

import multiprocessing
import queue
import socket
import traceback


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(results, target, rank, world_size, port, kwargs) -> None:
    try:
        results.put((rank, "ok", target(rank, world_size, port, **kwargs)))
    except BaseException:  # noqa: BLE001 - sent to the parent, which fails the test
        results.put((rank, "error", traceback.format_exc()))


def run_ranks(world_size: int, target, timeout_s: float = 60.0, **kwargs) -> list:
    """target(rank, world_size, master_port, **kwargs) in world_size processes; results by rank."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=_child, args=(results, target, rank, world_size, port, kwargs),
                                 daemon=True) for rank in range(world_size)]
    for process in processes:
        process.start()
    collected: dict[int, object] = {}
    errors: list[str] = []
    try:
        for _ in range(world_size):
            rank, status, value = results.get(timeout=timeout_s)
            if status == "ok":
                collected[rank] = value
            else:
                errors.append(f"rank {rank}:\n{value}")
    except queue.Empty:
        errors.append(f"timed out after {timeout_s}s; finished ranks: {sorted(collected)}")
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    if errors:
        raise AssertionError("\n".join(errors))
    return [collected[rank] for rank in range(world_size)]
