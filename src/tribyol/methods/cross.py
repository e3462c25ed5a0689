"""Cross, the poster's teacher-student baseline, as we RECONSTRUCT it (the poster gives no formula).

The poster's student is ``online`` (E -> G, predictor P) and its EMA teacher is ``target``:
``L = [w_view (l(q(v), t(v')) + l(q(v'), t(v))) + w_model (l(q(v), t(v)) + l(q(v'), t(v')))]
/ (w_view + w_model)``, ``l = 2 - 2 cos``; ``cross_model_weight = 0`` gives BYOL. The
reconstruction and why the loss is normalised: docs/methods.md#cross.
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
    # Checkpoints from before the rename hold the poster's names.
    renamed_state_keys = {"student.": "online.", "teacher.": "target."}

    @dataclass
    class Options(MomentumOptions):
        cross_view_weight: float = 1.0  # online(v) vs target(v')
        cross_model_weight: float = 1.0  # online(v) vs target(v); 0 turns Cross into BYOL
        symmetric: bool = True  # also v' through the online network against the target

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.cross_view_weight < 0 or self.cross_model_weight < 0:
                raise ValueError("cross_view_weight and cross_model_weight must be >= 0")
            if self.cross_view_weight + self.cross_model_weight <= 0:
                raise ValueError("cross_view_weight + cross_model_weight must be > 0")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        self.projector, self.predictor, self.online, (self.target,) = byol_heads(ctx)

    def momentum_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.online, self.target)]

    def _terms(self, q: Tensor, t_same: Tensor, t_other: Tensor) -> tuple[Tensor, Tensor]:
        return normalized_mse(q, t_other), normalized_mse(q, t_same)

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        o = self.options
        v1, v2 = views
        y1 = self.backbone(v1)
        z1 = self.projector(y1)
        q1 = self.predictor(z1)
        with torch.no_grad():
            t1, t2 = self.target(v1), self.target(v2)
        cross_view, cross_model = self._terms(q1, t1, t2)
        if o.symmetric:
            q2 = self.predictor(self.online(v2))
            view_2, model_2 = self._terms(q2, t2, t1)
            cross_view, cross_model = cross_view + view_2, cross_model + model_2
        # A weighted mean of the two terms: each is on BYOL's scale, so the loss is too.
        weight = o.cross_view_weight + o.cross_model_weight
        loss = (o.cross_view_weight * cross_view + o.cross_model_weight * cross_model) / weight
        logs = {"cross_view": cross_view.detach(), "cross_model": cross_model.detach()}
        return StepOutput(loss=loss, features=y1.detach(), projections=z1.detach(), logs=logs)
