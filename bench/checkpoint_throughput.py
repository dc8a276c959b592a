"""Checkpoint save/load through FireflyFS next to torch.save/torch.load on local disk.

    python bench/checkpoint_throughput.py [--size 1GiB] [--repeats 2] [--url ffs://host:port] [--json]

The state dict mimics a model plus optimizer: float32 tensors of a few large,
several medium and many small sizes adding up to --size. Each run saves and
loads it with ``save_checkpoint``/``load_checkpoint`` on FireflyFS, with
``torch.save``/``torch.load`` to a local tmp dir (page cache, no fsync), with
``torch.save`` followed by ``os.fsync`` (durable when it returns, as a
FireflyFS save is by default: docs/durability.md), and with ``torch.save``/``torch.load`` through
``fsspec.open`` on FireflyFS (the plain interop path). The best of --repeats
runs is kept for each; the first load is checked equal to what was saved.
Also run by bench/loader_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

from fireflyfs.common.limits import MiB


def make_state(total_bytes: int) -> dict:
    """~total_bytes of float32: 4 tensors of 1/8, 8 of 1/32, the rest in 4 KiB-64 KiB ones."""
    import torch

    generator = torch.Generator().manual_seed(0)
    elements = total_bytes // 4
    sizes = [elements // 8] * 4 + [elements // 32] * 8
    rest = elements - sum(sizes)
    small = 0
    while rest > 0:
        size = min(rest, 1024 * (1 + small % 16))
        sizes.append(size)
        rest -= size
        small += 1
    model = {f"layer{n}.weight": torch.randn(size, generator=generator)
             for n, size in enumerate(sizes)}
    return {"model": model, "optimizer": {"step": 1000, "lr": 3e-4, "betas": (0.9, 0.95)}}


def _best(function, repeats: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def run_checkpoint(url: str, local_dir: str, total_bytes: int, repeats: int) -> dict:
    """MiB/s of each save and load path (best of repeats) for a state of total_bytes."""
    import fsspec
    import torch

    from fireflyfs.loaders import load_checkpoint, save_checkpoint

    print(f"checkpoint: building a {total_bytes / MiB:.0f} MiB state dict ...", file=sys.stderr)
    state = make_state(total_bytes)
    size_mib = sum(t.numel() * 4 for t in state["model"].values()) / MiB
    ffs_path, local_path = f"{url}/model.ckpt", os.path.join(local_dir, "model.pt")
    plain_path = f"{url}/model.pt"

    def torch_save_fsspec():
        with fsspec.open(plain_path, "wb") as file:
            torch.save(state, file)

    def torch_load_fsspec():
        with fsspec.open(plain_path, "rb") as file:
            return torch.load(file)

    seconds = {}
    seconds["ffs_save"], _ = _best(lambda: save_checkpoint(state, ffs_path), repeats)
    seconds["ffs_load"], loaded = _best(lambda: load_checkpoint(ffs_path), repeats)
    name = next(iter(state["model"]))
    if not torch.equal(loaded["model"][name], state["model"][name]):
        raise RuntimeError("loaded checkpoint differs from the saved one")
    del loaded
    seconds["local_torch_save"], _ = _best(lambda: torch.save(state, local_path), repeats)
    seconds["local_torch_load"], _ = _best(lambda: torch.load(local_path), repeats)

    def torch_save_durable():
        with open(local_path, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())

    seconds["local_torch_save_fsync"], _ = _best(torch_save_durable, repeats)
    seconds["ffs_torch_save_fsspec"], _ = _best(torch_save_fsspec, repeats)
    seconds["ffs_torch_load_fsspec"], _ = _best(torch_load_fsspec, repeats)
    result = {"state_mib": round(size_mib), "tensors": len(state["model"]), "repeats": repeats}
    for key, value in seconds.items():
        result[f"{key}_mib_per_s"] = round(size_mib / value)
    result["save_ratio_to_local_torch_save"] = round(seconds["local_torch_save"] /
                                                     seconds["ffs_save"], 3)
    result["save_ratio_to_local_torch_save_fsync"] = round(seconds["local_torch_save_fsync"] /
                                                          seconds["ffs_save"], 3)
    result["load_ratio_to_local_torch_load"] = round(seconds["local_torch_load"] /
                                                     seconds["ffs_load"], 3)
    print(f"checkpoint: {result}", file=sys.stderr)
    return result


def print_checkpoint(result: dict) -> None:
    print(f"checkpoint of {result['state_mib']} MiB in {result['tensors']} tensors "
          f"(best of {result['repeats']}), MiB/s:")
    for key in ("ffs_save", "local_torch_save", "local_torch_save_fsync", "ffs_torch_save_fsspec",
                "ffs_load", "local_torch_load", "ffs_torch_load_fsspec"):
        print(f"  {key:<24} {result[f'{key}_mib_per_s']:>8}")
    print(f"  save ratio to local torch.save: {result['save_ratio_to_local_torch_save']} "
          f"(to torch.save + fsync: {result['save_ratio_to_local_torch_save_fsync']}), "
          f"load ratio to local torch.load: {result['load_ratio_to_local_torch_load']}")


def main(argv: list[str] | None = None) -> int:
    from loader_throughput import parse_size, running_cluster, tune_malloc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="ffs://host:port of a running cluster (default: start one)")
    parser.add_argument("--size", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tune_malloc()
    local_dir = tempfile.mkdtemp(prefix="ffs-bench-ckpt-")
    try:
        with running_cluster(args.url) as (cluster_url, _replicas):
            url = f"{cluster_url}/bench-ckpt-{uuid.uuid4().hex[:8]}"
            result = run_checkpoint(url, local_dir, args.size, args.repeats)
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_checkpoint(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
