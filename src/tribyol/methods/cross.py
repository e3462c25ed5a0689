"""Cross, the poster's teacher-student baseline, as we RECONSTRUCT it (the poster gives no formula).

The poster's student is ``online`` (E -> G, predictor P) and its EMA teacher is ``target``:
``L = [w_view (l(q(v), t(v')) + l(q(v'), t(v))) + w_model (l(q(v), t(v)) + l(q(v'), t(v')))]
/ (w_view + w_model)``, ``l = 2 - 2 cos``; ``cross_model_weight = 0`` gives BYOL. The
reconstruction and why the loss is normalised: docs/methods.md#cross.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tribyol.config import require
from tribyol.config.fields import non_negative, option
from tribyol.errors import CheckpointError
from tribyol.methods.base import (
    MethodContext,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
    method_name,
)
from tribyol.methods.losses import normalized_mse
from tribyol.methods.registry import register
from tribyol.nets.heads import byol_heads


def _check_loaded_keys(module: Cross, state_dict: dict[str, Tensor], prefix: str, *_: object) -> None:
    """``load_state_dict`` pre-hook: a checkpoint from before the rename is refused as it loads."""
    module.check_state_keys(state_dict, prefix)


@register
class Cross(MomentumMethod):
    name = "cross"

    @dataclass
    class Options(MomentumOptions):
        name: str = method_name("cross")
        cross_view_weight: float = option(1.0, "weight of online(v) vs target(v')",
                                          rule=non_negative())
        cross_model_weight: float = option(1.0, "weight of online(v) vs target(v); 0 turns "
                                           "Cross into BYOL", rule=non_negative())
        symmetric: bool = option(True, "also v' through the online network against the target")

        def validate(self) -> None:
            super().validate()
            total = self.cross_view_weight + self.cross_model_weight
            require(total > 0, "method.cross_view_weight + method.cross_model_weight must be "
                               f"> 0, got {total:g}; give either term a weight (default 1 each)")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        self.projector, self.predictor, self.online, (self.target,) = byol_heads(ctx)
        self.register_load_state_dict_pre_hook(_check_loaded_keys)

    @classmethod
    def check_state_keys(cls, keys: Iterable[str], prefix: str = "") -> None:
        """The poster's ``student`` / ``teacher`` names, which issue 12 renamed ``online`` /
        ``target``, are refused: such a checkpoint came from an older tribyol."""
        old = next((k for k in keys if k.startswith((f"{prefix}student.", f"{prefix}teacher."))), None)
        if old is not None:
            raise CheckpointError(
                f"this Cross checkpoint was written by tribyol before the issue-12 rename (it "
                f"holds {old}, now online./target.); re-run its pre-training with this version")

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
