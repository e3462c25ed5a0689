"""SimCLR (Chen et al., ICML 2020, "A Simple Framework for Contrastive Learning of Visual
Representations").

NT-Xent over the 2B projections ``z = G(E(v))`` of a batch's two views, ``l_i = -log exp(s_ip / t)
/ sum_{k != i} exp(s_ik / t)``; under DDP the negatives come from every rank (docs/methods.md#simclr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from tribyol.config.fields import option, positive
from tribyol.methods.base import Method, MethodContext, MethodOptions, StepOutput, method_name
from tribyol.methods.losses import nt_xent
from tribyol.methods.registry import register
from tribyol.nets.heads import projection_head


def distributed_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each rank the summed gradient of its slice.

    Backward is an all-reduce (supported by every backend, gloo included) followed by taking
    this rank's slice; ``torch.distributed.nn``'s version needs all-to-all on non-NCCL backends.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        rank, world = distributed_world()
        ctx.rank, ctx.size = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every rank's slice
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_with_grad(x: Tensor) -> Tensor:
    """``x`` from every rank, concatenated in rank order; ``x`` itself when not distributed."""
    return _GatherWithGrad.apply(x) if distributed_world()[1] > 1 else x


def simclr_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """``losses.nt_xent`` of this rank's anchors against the global batch: the keys go through
    ``gather_with_grad`` (looked up here at call time; the identity when not distributed)."""
    return nt_xent(z1, z2, temperature, gather=gather_with_grad, rank=distributed_world()[0])


@register
class SimCLR(Method):
    name = "simclr"

    @dataclass
    class Options(MethodOptions):
        name: str = method_name("simclr")
        # 0.5: SimCLR's CIFAR-10 setting (0.1 suits very large batches)
        temperature: float = option(0.5, "NT-Xent's temperature", rule=positive())

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        self.projector = projection_head(ctx)

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        v1, v2 = views
        y1 = self.backbone(v1)
        z1 = self.projector(y1)
        z2 = self.projector(self.backbone(v2))
        loss = simclr_loss(z1, z2, self.options.temperature)
        return StepOutput(loss=loss, features=y1.detach(), projections=z1.detach())
