"""SimSiam (Chen & He, CVPR 2021, "Exploring Simple Siamese Representation Learning").

An encoder-projector and a bottleneck predictor, no EMA target: the predictor's output on one
view regresses the stop-gradient projection of the other view with the negative cosine
``D(p, z) = -cos(p, sg(z))``, symmetrised: ``L = 1/2 D(p1, z2) + 1/2 D(p2, z1)`` (range [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tribyol.config.fields import at_least, option
from tribyol.methods.base import Method, MethodContext, MethodOptions, StepOutput, method_name
from tribyol.methods.losses import negative_cosine
from tribyol.methods.registry import register
from tribyol.nets.heads import byol_heads


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """The symmetric SimSiam loss ``1/2 D(p1, z2) + 1/2 D(p2, z1)``."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


@register
class SimSiam(Method):
    name = "simsiam"

    @dataclass
    class Options(MethodOptions):
        name: str = method_name("simsiam")
        # SimSiam's predictor is a bottleneck (2048 -> 512 -> 2048: a quarter of the output).
        pred_hidden_dim: int | None = option(None, "the predictor's hidden size", rule=at_least(1),
                                             default_text="a quarter of model.proj_dim, at least 1")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        hidden = options.pred_hidden_dim or max(1, ctx.proj_dim // 4)
        # BYOL's projector and a bottleneck predictor; no target (so no ``online`` attribute)
        self.projector, self.predictor, _, _ = byol_heads(ctx, num_targets=0, pred_hidden_dim=hidden)

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        v1, v2 = views
        y1 = self.backbone(v1)
        z1 = self.projector(y1)
        z2 = self.projector(self.backbone(v2))
        loss = simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)
        return StepOutput(loss=loss, features=y1.detach(), projections=z1.detach())
