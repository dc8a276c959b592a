"""One rank of the DDP hook test (run as a script: argv rank world gloo_port hfreduce_port out_dir).

Trains one step of a small model under DDP with the HFReduce hook, and
computes the reference gradients with plain gloo all_reduce on a copy of the
model; saves both so the test can compare them and check ranks agree.
"""

import copy
import pathlib
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fireflyfs.fabric.hfreduce import HFReduceGroup
from fireflyfs.fabric.hfreduce.ddp import hfreduce_hook

rank, world, gloo_port, hfreduce_port = (int(a) for a in sys.argv[1:5])
out = pathlib.Path(sys.argv[5])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{gloo_port}", rank=rank, world_size=world)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
reference = copy.deepcopy(model)
group = HFReduceGroup(rank, world, "127.0.0.1", hfreduce_port, host_key=f"h{rank}", timeout_s=60)
ddp = DistributedDataParallel(model, bucket_cap_mb=0.002)      # several buckets
ddp.register_comm_hook(group, hfreduce_hook)

torch.manual_seed(100 + rank)
inputs = torch.randn(8, 16)
ddp(inputs).pow(2).sum().backward()
reference(inputs).pow(2).sum().backward()
for parameter in reference.parameters():
    dist.all_reduce(parameter.grad)
    parameter.grad /= world

np.savez(out / f"rank-{rank}.npz",
         **{f"hook{i}": p.grad.numpy() for i, p in enumerate(model.parameters())},
         **{f"gloo{i}": p.grad.numpy() for i, p in enumerate(reference.parameters())})
group.close()
dist.destroy_process_group()
