"""Cross: the poster's teacher-student baseline, RECONSTRUCTED (the poster gives no formula).

The authors' earlier teacher-student method (Li et al., gastritis X-ray images; cited on the
TriBYOL poster as "Cross") is described only in words: an EMA teacher and a student with a
predictor, trained with a cross-view term and a cross-model term. This file is our
reconstruction of that description, not the authors' code or equations:

- student = encoder -> projector -> predictor (weights theta); teacher = encoder -> projector
  (weights xi), a stop-gradient EMA of the student, ``xi <- tau xi + (1 - tau) theta``;
- cross-view term: student(v) against teacher(v'), BYOL's ``l(q, z) = 2 - 2 cos(q, z)``;
- cross-model term: student(v) against teacher(v), the same view through the other model;
- ``L = [w_view * (l(q(v), z_t(v')) + l(q(v'), z_t(v))) + w_model * (l(q(v), z_t(v)) +
  l(q(v'), z_t(v')))] / (w_view + w_model)`` (one-directional: only the v terms): a weighted
  mean of the two terms, each on BYOL's scale, so the loss is on BYOL's scale too (as TriBYOL's
  1/2 per target pair keeps its loss on BYOL's). Summing the four terms unnormalised would
  double the loss, i.e. the effective learning rate, against BYOL.

With ``cross_model_weight = 0`` this is exactly BYOL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tribyol.methods.base import (
    MethodContext,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
)
from tribyol.methods.heads import byol_heads
from tribyol.methods.losses import normalized_mse
from tribyol.methods.registry import register


@register
class Cross(MomentumMethod):
    name = "cross"

    @dataclass
    class Options(MomentumOptions):
        cross_view_weight: float = 1.0  # student(v) vs teacher(v')
        cross_model_weight: float = 1.0  # student(v) vs teacher(v); 0 turns Cross into BYOL
        symmetric: bool = True  # also v' through the student against the teacher

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.cross_view_weight < 0 or self.cross_model_weight < 0:
                raise ValueError("cross_view_weight and cross_model_weight must be >= 0")
            if self.cross_view_weight + self.cross_model_weight <= 0:
                raise ValueError("cross_view_weight + cross_model_weight must be > 0")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        # student = the online encoder -> projector; teacher = its frozen EMA copy
        self.projector, self.predictor, self.student, (self.teacher,) = byol_heads(ctx)

    def momentum_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.student, self.teacher)]

    def _terms(self, q: Tensor, t_same: Tensor, t_other: Tensor) -> tuple[Tensor, Tensor]:
        return normalized_mse(q, t_other), normalized_mse(q, t_same)

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        o = self.options
        v1, v2 = views
        y1 = self.backbone(v1)
        z1 = self.projector(y1)
        q1 = self.predictor(z1)
        with torch.no_grad():
            t1, t2 = self.teacher(v1), self.teacher(v2)
        cross_view, cross_model = self._terms(q1, t1, t2)
        if o.symmetric:
            q2 = self.predictor(self.student(v2))
            view_2, model_2 = self._terms(q2, t2, t1)
            cross_view, cross_model = cross_view + view_2, cross_model + model_2
        # A weighted mean of the two terms: each is on BYOL's scale, so the loss is too.
        weight = o.cross_view_weight + o.cross_model_weight
        loss = (o.cross_view_weight * cross_view + o.cross_model_weight * cross_model) / weight
        logs = {"cross_view": cross_view.detach(), "cross_model": cross_model.detach()}
        return StepOutput(loss=loss, features=y1.detach(), projections=z1.detach(), logs=logs)
