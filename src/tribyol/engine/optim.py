"""Optimizers (SGD, AdamW, LARS) and the per-step learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from tribyol.config import OptimConfig


class LARS(torch.optim.Optimizer):
    """SGD with layer-wise adaptive rate scaling (You et al. 2017), as BYOL uses.

    Biases and normalisation weights (1-D tensors) take neither weight decay nor adaptation.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * p_norm / g_norm,
                        torch.ones_like(p_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-float(group["lr"]))  # a CPU tensor too
        return loss


def build_optimizer(
    cfg: OptimConfig, params: Iterable[nn.Parameter], batch_size: int, extra_groups=(),
    fused: bool = False,
) -> torch.optim.Optimizer:
    """``fused`` (train.compile): SGD / AdamW as one fused kernel per device and dtype, the
    learning rate a CPU float64 tensor that the schedule fills in place (a value, not a
    constant of any compiled code; read on the host, so no device sync)."""
    lr: float | torch.Tensor = cfg.lr * batch_size / 256 if cfg.scale_lr else cfg.lr
    groups = [{"params": list(params)}, *extra_groups]
    kernel = {}
    if fused:
        lr, kernel = torch.tensor(lr, dtype=torch.float64), {"fused": True}  # LARS: not fused
        for group in extra_groups:  # each group its own tensor: the schedule fills each
            group.setdefault("lr", lr.clone())
    if cfg.name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay, **kernel)
    elif cfg.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay, **kernel)
    elif cfg.name == "lars":
        optimizer = LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer '{cfg.name}'")
    _keep_kernel_on_load(optimizer)
    return optimizer


def _lr_as(value: float | Tensor, tensor: bool) -> float | Tensor:
    """A learning rate as a CPU float64 tensor (the fused kernel's form) or as a float."""
    if not tensor:
        return float(value)
    return value if isinstance(value, Tensor) else torch.tensor(float(value), dtype=torch.float64)


def _keep_kernel_on_load(optimizer: torch.optim.Optimizer) -> None:
    """A checkpoint's param groups carry the kernel they were saved with (``fused``, the
    learning rate a tensor or a float), and loading them would replace this run's: a resume
    across a ``train.compile`` change keeps the kernel this run built."""
    built = [({k: g[k] for k in ("fused", "foreach") if k in g}, isinstance(g["lr"], Tensor))
             for g in optimizer.param_groups]

    def restore(loaded: torch.optim.Optimizer) -> None:
        for group, (kernel, tensor) in zip(loaded.param_groups, built, strict=True):
            group.update(kernel)
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] = _lr_as(group[key], tensor)

    optimizer.register_load_state_dict_post_hook(restore)


class Schedule(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` whose saved base learning rates take this run's form on load (a tensor
    under the fused kernel, else a float; ``_keep_kernel_on_load``)."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.base_lrs = [_lr_as(lr, isinstance(group["lr"], Tensor))
                         for lr, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True)]


def lr_lambda(cfg: OptimConfig, total_steps: int, steps_per_epoch: int):
    """Linear warm-up for ``warmup_epochs``, then constant or cosine decay to zero."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor
