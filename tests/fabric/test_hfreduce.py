"""HFReduce across real processes on loopback, checked against numpy.

Method: each test forks one process per rank; each rank builds its input
from (seed, rank) (worker.make_input), allreduces it, and returns the bits it
got. The test recomputes the expected sum with numpy and checks every rank
holds exactly the same bits. Small integer inputs make the float32 sum exact
in any order, so equality with numpy is exact; normal inputs are checked to
a tolerance. Host keys decide which ranks share memory: one host per rank
tests the trees alone (1..9 ranks: both tree parities), shared keys the
intra-host stage and the mix of both. Tiny chunks force many pipelined chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

from fireflyfs.fabric.hfreduce import HFReduceError, HFReduceGroup
from fireflyfs.fabric.hfreduce.worker import as_dtype, make_input, to_numpy_bits

from .ranks import run_ranks


def _job(rank, world_size, port, *, count=1001, dtype="float32", op="sum", hosts=None, seed=7,
         chunk_bytes=256, use_torch=False, integers=True, repeats=1):
    host_key = f"h{hosts[rank]}" if hosts else f"h{rank}"
    with HFReduceGroup(rank, world_size, "127.0.0.1", port, host_key=host_key,
                       chunk_bytes=chunk_bytes, timeout_s=30) as group:
        results = []
        for repeat in range(repeats):
            data = as_dtype(make_input(seed + repeat, rank, count, integers), dtype, use_torch)
            returned = group.allreduce(data, op)
            assert returned is data                     # in place
            results.append(to_numpy_bits(returned).copy())
        return results


def _expected(world_size, count, seed=7, integers=True, op="sum"):
    total = sum(make_input(seed, r, count, integers).astype(np.float64) for r in range(world_size))
    return total / world_size if op == "mean" else total


def _identical(results):
    for other in results[1:]:
        assert other.dtype == results[0].dtype
        assert np.array_equal(other.view(np.uint8), results[0].view(np.uint8))
    return results[0]


@pytest.mark.parametrize("world_size", range(1, 10))
def test_trees_alone_sum_exactly_for_1_to_9_ranks(world_size):
    results = run_ranks(world_size, _job)
    got = _identical([r[0] for r in results])
    assert np.array_equal(got, _expected(world_size, 1001).astype(np.float32))


@pytest.mark.parametrize("hosts", [
    [0, 0, 0, 0],              # one host: shared memory only
    [0, 0, 1, 1, 2],           # three hosts, leaders 0, 2, 4
    [0, 1, 0, 1, 2, 2, 3],     # interleaved host membership, 4 hosts (even tree)
])
def test_shared_memory_and_trees_together(hosts):
    results = run_ranks(len(hosts), _job, hosts=hosts, repeats=2)
    for repeat in range(2):
        got = _identical([r[repeat] for r in results])
        assert np.array_equal(got, _expected(len(hosts), 1001, seed=7 + repeat).astype(np.float32))


def test_mean_of_normals_is_close_and_identical():
    results = run_ranks(5, _job, op="mean", integers=False, hosts=[0, 1, 1, 2, 3])
    got = _identical([r[0] for r in results])
    np.testing.assert_allclose(got, _expected(5, 1001, integers=False, op="mean"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, use_torch", [("float16", False), ("float16", True),
                                              ("bfloat16", True), ("float32", True),
                                              ("float64", False)])
def test_dtypes_sum_exactly_and_round_once(dtype, use_torch):
    # Integers in [-8, 8] over 6 ranks: |sum| <= 48, exact in every dtype once summed in float32.
    if use_torch:
        import torch  # noqa: F401 - imported once here, not in each forked rank
    results = run_ranks(6, _job, dtype=dtype, use_torch=use_torch, hosts=[0, 0, 1, 2, 3, 3])
    got = _identical([r[0] for r in results])
    expected = _expected(6, 1001)
    if dtype == "bfloat16":
        import torch
        expected_bits = torch.from_numpy(expected.astype(np.float32)).to(torch.bfloat16)
        assert np.array_equal(got, expected_bits.view(torch.int16).numpy().view(np.uint16))
    else:
        assert got.dtype == np.dtype(dtype)
        assert np.array_equal(got, expected.astype(dtype))


def test_bfloat16_normals_match_float32_sum_rounded_once():
    import torch

    results = run_ranks(3, _job, dtype="bfloat16", integers=False, op="mean")
    got = _identical([r[0] for r in results])
    # the same inputs as the ranks had: float32 -> bfloat16, summed in float32, mean, rounded once
    inputs = [torch.from_numpy(make_input(7, r, 1001, False)).to(torch.bfloat16).float() for r in range(3)]
    mean = torch.zeros(1001)
    for tensor in inputs:
        mean += tensor
    # the trees add in their own order: equal to within one float32 rounding before the bfloat16 one
    got_float = torch.from_numpy(got.view(np.int16).copy()).view(torch.bfloat16).float()
    torch.testing.assert_close(got_float, (mean / 3).to(torch.bfloat16).float(), rtol=8e-3, atol=1e-2)


def test_large_array_with_default_chunks():
    results = run_ranks(3, _job, count=3 * 1024 * 1024 + 5, chunk_bytes=None, hosts=[0, 1, 1])
    got = _identical([r[0] for r in results])
    assert np.array_equal(got, _expected(3, 3 * 1024 * 1024 + 5).astype(np.float32))


def _mismatch_job(rank, world_size, port):
    with HFReduceGroup(rank, world_size, "127.0.0.1", port, host_key=f"h{rank}", timeout_s=30) as group:
        data = np.ones(100 + (rank == world_size - 1), dtype=np.float32)
        try:
            group.allreduce(data)
        except HFReduceError as exc:
            with pytest.raises(HFReduceError, match="unusable"):
                group.allreduce(np.ones(100, dtype=np.float32))
            return str(exc)
        return None


def test_ranks_that_disagree_all_fail_clearly_instead_of_hanging():
    messages = run_ranks(4, _mismatch_job, timeout_s=60)
    assert all(messages), messages
    assert any("disagree" in message for message in messages), messages


def test_unsupported_inputs_are_refused_before_any_traffic():
    with _single() as group:
        with pytest.raises(TypeError, match="reduces"):
            group.allreduce(np.ones(4, dtype=np.int32))
        with pytest.raises(ValueError, match="contiguous"):
            group.allreduce(np.ones((4, 4), dtype=np.float32)[:, 1])
        with pytest.raises(ValueError, match="op must be"):
            group.allreduce(np.ones(4, dtype=np.float32), op="max")
        data = np.arange(4, dtype=np.float32)
        assert group.allreduce(data, "mean") is data and list(data) == [0, 1, 2, 3]


def _single() -> HFReduceGroup:
    from .ranks import free_port

    return HFReduceGroup(0, 1, "127.0.0.1", free_port(), timeout_s=10)


def _ring_job(rank, world_size, port, *, count, dtype):
    with HFReduceGroup(rank, world_size, "127.0.0.1", port, host_key=f"h{rank}", ring=True,
                       timeout_s=30) as group:
        data = as_dtype(make_input(3, rank, count), dtype, False)
        ring = group.ring_allreduce(data.copy(), "sum")
        tree = group.allreduce(data, "sum")
        return ring, tree


@pytest.mark.parametrize("world_size, count", [(2, 1001), (3, 7), (4, 100_000)])
def test_ring_baseline_agrees_with_hfreduce(world_size, count):
    results = run_ranks(world_size, _ring_job, count=count, dtype="float16")
    ring = _identical([r[0] for r in results])
    tree = _identical([r[1] for r in results])
    expected = sum(make_input(3, r, count).astype(np.float64) for r in range(world_size))
    assert np.array_equal(ring, expected.astype(np.float16)) and np.array_equal(tree, ring)


def _ports_job(rank, world_size, port):
    with HFReduceGroup(rank, world_size, "127.0.0.1", port, host_key=f"h{rank}", ring=True,
                       timeout_s=30) as group:
        data = np.ones(200_000, dtype=np.float32)
        group.allreduce(data)
        group.ring_allreduce(data)
        links = [*group._links.values(), *group._accepted.values()]
        return sorted(sock.getsockname()[1] for sock in links)


def test_every_hfreduce_link_is_marked_on_the_wire():
    from fireflyfs.common.traffic import TrafficClass, tos_of

    from tests.common.capture import LoopbackCapture, capture_available

    if not capture_available():
        pytest.skip("packet capture needs root (AF_PACKET)")
    with LoopbackCapture() as capture:
        ports = [p for ranks in run_ranks(3, _ports_job) for p in ranks]
        import time
        time.sleep(0.2)
    assert len(ports) >= 6
    for port in ports:
        assert capture.tos_from_port(port) == {tos_of(TrafficClass.HFREDUCE)}, port
