"""HFReduce: Fire-Flyer's allreduce for CPU-side gradients, over TCP.

Ranks on one host sum their buffers through shared memory; host leaders then
allreduce along a double binary tree, each tree carrying half the data in
pipelined chunks, on sockets marked with the HFREDUCE traffic class ([FF] §IV;
design notes in the modules: trees, pipeline, group).

    from fireflyfs.fabric import hfreduce
    hfreduce.init_group()                 # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from env
    hfreduce.allreduce(array, op="mean")  # in place, bit-identical on every rank

``hfreduce_hook`` (fireflyfs.fabric.hfreduce.ddp) plugs it into PyTorch DDP.
"""

from __future__ import annotations

from .group import HFReduceError, HFReduceGroup

_default: HFReduceGroup | None = None


def init_group(**kwargs) -> HFReduceGroup:
    """Create the process's default group (arguments as HFReduceGroup)."""
    global _default
    if _default is not None:
        raise RuntimeError("the default HFReduce group exists already; destroy_group() first")
    _default = HFReduceGroup(**kwargs)
    return _default


def default_group() -> HFReduceGroup:
    if _default is None:
        raise RuntimeError("no HFReduce group: call fireflyfs.fabric.hfreduce.init_group() first")
    return _default


def destroy_group() -> None:
    global _default
    if _default is not None:
        _default.close()
        _default = None


def allreduce(array, op: str = "sum", group: HFReduceGroup | None = None):
    """Allreduce array in place over group (default: the process's group); returns array."""
    return (group or default_group()).allreduce(array, op)


def __getattr__(name: str):
    if name == "hfreduce_hook":          # imports torch: only when asked for
        from .ddp import hfreduce_hook
        return hfreduce_hook
    raise AttributeError(name)


__all__ = ["HFReduceError", "HFReduceGroup", "allreduce", "default_group", "destroy_group",
           "hfreduce_hook", "init_group"]
