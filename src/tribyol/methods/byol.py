"""BYOL (Grill et al., NeurIPS 2020): an online encoder-projector-predictor regresses the
projection of an EMA target network on another view; the loss is symmetrised over the pair."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tribyol.config.fields import option
from tribyol.methods.base import (
    ConcatViewsOptions,
    MethodContext,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
    forward_each,
    method_name,
)
from tribyol.methods.losses import normalized_mse
from tribyol.methods.registry import register
from tribyol.nets.heads import byol_heads


@register
class BYOL(MomentumMethod):
    name = "byol"

    @dataclass
    class Options(MomentumOptions, ConcatViewsOptions):
        name: str = method_name("byol")
        # BYOL symmetrises: l(q(v), z'(v')) + l(q(v'), z'(v))
        symmetric: bool = option(True, "the symmetrised loss (both views through the online "
                                 "network)")
        # concat_views (default off): both views in one online and one target pass; changes BN.

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        self.projector, self.predictor, self.online, (self.target,) = byol_heads(ctx)

    def momentum_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.online, self.target)]

    @classmethod
    def passes(cls, options: Options) -> tuple[int, int]:
        # symmetric: both views through the online net and the target; else v1 online, v2 target
        return (2, 2) if options.symmetric else (1, 1)

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        if self.options.concat_views and self.options.symmetric:
            return self._forward_concat(views)
        v1, v2 = views
        y1 = self.backbone(v1)
        z1 = self.projector(y1)
        with torch.no_grad():
            t2 = self.target(v2)
        loss = normalized_mse(self.predictor(z1), t2)
        if self.options.symmetric:
            q2 = self.predictor(self.online(v2))
            with torch.no_grad():
                t1 = self.target(v1)
            loss = loss + normalized_mse(q2, t1)
        return StepOutput(loss=loss, features=y1.detach(), projections=z1.detach())

    def _forward_concat(self, views: list[Tensor]) -> StepOutput:
        """The symmetric loss with both views in one online and one target pass."""
        b = len(views[0])
        y = self.backbone(torch.cat(views))
        z = self.projector(y)
        q1, q2 = self.predictor(z).split(b)
        with torch.no_grad():
            t1, t2 = forward_each(self.target, views, concat=True)
        loss = normalized_mse(q1, t2) + normalized_mse(q2, t1)
        return StepOutput(loss=loss, features=y[:b].detach(), projections=z[:b].detach())
