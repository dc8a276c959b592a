"""The DDP communication hook and the rank worker CLI, as separate real processes.

Method: the DDP test runs tests/fabric/ddp_job.py per rank (DDP with the
HFReduce hook vs the same step reduced by gloo) and checks the gradients agree
with gloo's and are bit-identical across ranks. The worker test runs
``python -m fireflyfs.fabric.hfreduce`` per rank (2 hosts, one with two ranks)
and checks the saved results against numpy.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np

from fireflyfs.fabric.hfreduce.worker import make_input

from .ranks import free_port

HERE = pathlib.Path(__file__).parent


def _run_all(commands: list[list[str]], timeout_s: float = 120) -> None:
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in commands]
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout_s)
            assert process.returncode == 0, output.decode(errors="replace")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_ddp_hook_averages_gradients_like_gloo(tmp_path):
    world = 2
    gloo_port, hfreduce_port = free_port(), free_port()
    _run_all([[sys.executable, str(HERE / "ddp_job.py"), str(rank), str(world), str(gloo_port),
               str(hfreduce_port), str(tmp_path)] for rank in range(world)])
    saved = [np.load(tmp_path / f"rank-{rank}.npz") for rank in range(world)]
    names = [n for n in saved[0].files if n.startswith("hook")]
    assert len(names) == 4
    for name in names:
        for other in saved[1:]:
            assert np.array_equal(other[name], saved[0][name])          # bit-identical
        np.testing.assert_allclose(saved[0][name], saved[0]["gloo" + name[4:]], rtol=1e-5, atol=1e-6)
    assert any(np.abs(saved[0][n]).sum() > 0 for n in names)


def test_worker_cli_ranks_reduce_across_two_hosts(tmp_path):
    port = free_port()
    hosts = ["a", "a", "b"]
    _run_all([[sys.executable, "-m", "fireflyfs.fabric.hfreduce", "--rank", str(rank),
               "--world-size", "3", "--master", f"127.0.0.1:{port}", "--host-key", hosts[rank],
               "--count", "5000", "--op", "mean", "--dtype", "float16", "--out", str(tmp_path)]
              for rank in range(3)])
    results = [np.load(tmp_path / f"rank-{rank}.npy") for rank in range(3)]
    expected = (sum(make_input(0, r, 5000).astype(np.float64) for r in range(3)) / 3).astype(np.float16)
    for result in results:
        assert result.dtype == np.float16 and np.array_equal(result, expected)
