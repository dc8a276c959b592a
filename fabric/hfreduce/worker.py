"""One HFReduce rank as a process: ``python -m fireflyfs.fabric.hfreduce ...``.

Used by tests (correctness across processes), by the testbed (ranks inside
network namespaces) and by benchmarks (iteration latency). Inputs are derived
from (seed, rank), so a checker can recompute every rank's input.

    --mode check     one allreduce; the result goes to OUT/rank-<r>.npy (bfloat16 as its bits)
    --mode latency   --iterations allreduces; prints one JSON line {"rank", "latencies_ms": [...]}
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from .group import HFReduceGroup


def make_input(seed: int, rank: int, count: int, integers: bool = True) -> np.ndarray:
    """Rank's float32 input: small integers (exact sums in any order) or normals."""
    rng = np.random.default_rng([seed, rank])
    if integers:
        return rng.integers(-8, 9, size=count).astype(np.float32)
    return rng.standard_normal(count).astype(np.float32)


def as_dtype(values: np.ndarray, dtype: str, use_torch: bool):
    """values (float32) as the requested dtype, a numpy array or a torch tensor."""
    if use_torch or dtype == "bfloat16":
        import torch

        return torch.from_numpy(values.copy()).to(getattr(torch, dtype))
    return values.astype(dtype)


def to_numpy_bits(result) -> np.ndarray:
    """A result as numpy (bfloat16 as uint16 bits, so checks compare exact bits)."""
    if isinstance(result, np.ndarray):
        return result
    import torch

    if result.dtype == torch.bfloat16:
        return result.view(torch.int16).numpy().view(np.uint16)
    return result.numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.fabric.hfreduce")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--master", default="127.0.0.1:29600", help="HOST:PORT of rank 0's store")
    parser.add_argument("--host-key", default=None, help="ranks with the same key share memory")
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--op", default="sum", choices=["sum", "mean"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normal", action="store_true", help="normal inputs, not small integers")
    parser.add_argument("--torch", action="store_true", help="pass a torch tensor")
    parser.add_argument("--chunk-bytes", type=int, default=None)
    parser.add_argument("--mode", choices=["check", "latency"], default="check")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    host, port = args.master.rsplit(":", 1)
    with HFReduceGroup(args.rank, args.world_size, host, int(port), host_key=args.host_key,
                       chunk_bytes=args.chunk_bytes) as group:
        values = make_input(args.seed, args.rank, args.count, integers=not args.normal)
        if args.mode == "check":
            result = group.allreduce(as_dtype(values, args.dtype, args.torch), args.op)
            if args.out is not None:
                np.save(args.out / f"rank-{args.rank}.npy", to_numpy_bits(result))
            return 0
        data = as_dtype(values, args.dtype, args.torch)
        latencies_ms = []
        for _ in range(args.iterations):
            started = time.perf_counter()
            group.allreduce(data, args.op)
            latencies_ms.append((time.perf_counter() - started) * 1000)
        print(json.dumps({"rank": args.rank, "latencies_ms": latencies_ms}))
        sys.stdout.flush()
    return 0
