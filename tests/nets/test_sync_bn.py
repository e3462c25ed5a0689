"""GlobalBatchNorm: plain BatchNorm in one process; the global statistics across processes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.helpers import free_port
from tribyol.nets.sync_bn import GlobalBatchNorm, convert_to_global_bn


def test_convert_keeps_state_and_frozen_flags() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(16))
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    net[3].weight.requires_grad_(False)
    converted = convert_to_global_bn(net)
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[3], GlobalBatchNorm)
    assert torch.equal(converted[1].running_mean, torch.full((4,), 0.5))
    assert not converted[3].weight.requires_grad


def _global_bn_worker(rank: int, port: int, x: torch.Tensor, queue: mp.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    bn = GlobalBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    local = x[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    y = bn(local)
    (y * torch.arange(y.numel()).view_as(y).float()).sum().backward()
    # numpy copies travel by value: torch tensors would be shared through file descriptors that
    # vanish when this process exits before the parent has read them (an EOFError, seen on CI).
    tensors = (y.detach(), local.grad, bn.running_mean, bn.running_var, bn.weight.grad)
    queue.put((rank, *(t.detach().numpy().copy() for t in tensors)))
    # both ranks done before either tears gloo down: a rank that leaves while the other is
    # still inside a collective aborts it (SIGABRT at exit, seen once on CI)
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_match_one_batchnorm_over_the_whole_batch() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    # Reference: one BatchNorm over all 8 samples, with the same weights and the same loss.
    ref = nn.BatchNorm2d(3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    xr = x.clone().requires_grad_(True)
    y_ref = ref(xr)
    weights = torch.cat([torch.arange(y_ref[:4].numel()).view_as(y_ref[:4]).float()] * 2)
    (y_ref * weights).sum().backward()

    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_global_bn_worker, args=(r, port, x, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = {item[0]: [torch.from_numpy(a) for a in item[1:]]
               for item in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    y = torch.cat([results[0][0], results[1][0]])
    grad = torch.cat([results[0][1], results[1][1]])
    torch.testing.assert_close(y, y_ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, xr.grad, atol=1e-4, rtol=1e-4)
    for r in (0, 1):  # both ranks keep the global running statistics
        torch.testing.assert_close(results[r][2], ref.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(results[r][3], ref.running_var, atol=1e-5, rtol=1e-5)
    # each rank's weight gradient is its half; DDP sums them into the full-batch gradient
    torch.testing.assert_close(results[0][4] + results[1][4], ref.weight.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_single_process_is_plain_batchnorm(training: bool) -> None:
    x = torch.randn(6, 4, 3, 3)
    ref, ours = nn.BatchNorm2d(4), GlobalBatchNorm(4)
    ref.train(training)
    ours.train(training)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
