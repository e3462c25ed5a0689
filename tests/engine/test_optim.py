"""The optimizer and schedule: a resume across a ``train.compile`` change (fused kernel, the
learning rate a tensor; or the plain one, a float) keeps the kernel the resumed run built, and
continues the schedule where it stopped."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from tribyol.config import OptimConfig
from tribyol.engine.optim import Schedule, build_optimizer, lr_lambda


def built(fused: bool, name: str = "sgd") -> tuple[nn.Linear, torch.optim.Optimizer, Schedule]:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    cfg = OptimConfig(name=name, lr=0.4, scale_lr=False)
    optimizer = build_optimizer(cfg, net.parameters(), 256, fused=fused)
    return net, optimizer, Schedule(optimizer, lr_lambda(cfg, total_steps=10, steps_per_epoch=10))


def steps(net: nn.Linear, optimizer: torch.optim.Optimizer, schedule: Schedule, n: int) -> None:
    for _ in range(n):
        net(torch.ones(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()


@pytest.mark.parametrize("name", ["sgd", "adamw"])
@pytest.mark.parametrize("saved_fused", [True, False])
def test_resume_keeps_the_kernel_it_built(saved_fused, name) -> None:
    net, optimizer, schedule = built(saved_fused, name)
    steps(net, optimizer, schedule, 3)
    expected_lr = float(optimizer.param_groups[0]["lr"])
    saved = copy.deepcopy((net.state_dict(), optimizer.state_dict(), schedule.state_dict()))

    fused = not saved_fused
    net2, optimizer2, schedule2 = built(fused, name)
    net2.load_state_dict(saved[0])
    optimizer2.load_state_dict(saved[1])
    schedule2.load_state_dict(saved[2])
    group = optimizer2.param_groups[0]
    assert bool(group["fused"]) is fused
    assert isinstance(group["lr"], Tensor) is fused
    assert isinstance(group["initial_lr"], Tensor) is fused
    assert all(isinstance(lr, Tensor) is fused for lr in schedule2.base_lrs)
    assert float(group["lr"]) == pytest.approx(expected_lr)
    # it goes on: the next learning rate is the schedule's, as the uninterrupted run's
    steps(net, optimizer, schedule, 1)
    steps(net2, optimizer2, schedule2, 1)
    assert float(optimizer2.param_groups[0]["lr"]) == pytest.approx(
        float(optimizer.param_groups[0]["lr"]))
    assert isinstance(optimizer2.param_groups[0]["lr"], Tensor) is fused
    torch.testing.assert_close(net2.weight, net.weight, rtol=1e-6, atol=1e-6)
