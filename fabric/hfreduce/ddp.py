"""A PyTorch DDP communication hook that averages gradient buckets with HFReduce.

    model = DistributedDataParallel(module)        # gloo process group for DDP's own setup
    model.register_comm_hook(group, hfreduce_hook) # gradients now go through HFReduce

DDP calls the hook once per gradient bucket, in the same bucket order on
every rank, and expects a Future of the averaged flat tensor. The allreduce
runs on the group's single background thread, so backward computation of the
next buckets overlaps it (as HaiScale DDP overlaps HFReduce with backward)
while every rank still issues the calls in the same order.
"""

# No `from __future__ import annotations`: DDP checks the hook's return annotation object.
from typing import Optional

import torch

from .group import HFReduceGroup


def hfreduce_hook(state: Optional[HFReduceGroup], bucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: the bucket's gradients averaged over all ranks (state: the group or None
    for the default group)."""
    from . import default_group

    group = state if state is not None else default_group()
    tensor = bucket.buffer()
    future: torch.futures.Future = torch.futures.Future()

    def finish(done) -> None:
        error = done.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(tensor)

    group.submit(tensor, "mean").add_done_callback(finish)
    return future
