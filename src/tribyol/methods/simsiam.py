"""SimSiam (Chen & He, CVPR 2021, "Exploring Simple Siamese Representation Learning").

An encoder-projector and a bottleneck predictor, no EMA target: the predictor's output on one
view regresses the stop-gradient projection of the other view with the negative cosine
``D(p, z) = -cos(p, sg(z))``, symmetrised: ``L = 1/2 D(p1, z2) + 1/2 D(p2, z1)`` (range [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tribyol.methods.base import Method, MethodContext, StepOutput
from tribyol.methods.heads import byol_heads
from tribyol.methods.losses import negative_cosine
from tribyol.methods.registry import register


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """The symmetric SimSiam loss ``1/2 D(p1, z2) + 1/2 D(p2, z1)``."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


@register
class SimSiam(Method):
    name = "simsiam"

    @dataclass
    class Options:
        # SimSiam's predictor is a bottleneck (2048 -> 512 -> 2048: a quarter of the output).
        # None: model.proj_dim // 4 (at least 1); an int sets the hidden size directly.
        pred_hidden_dim: int | None = None

        def __post_init__(self) -> None:
            if self.pred_hidden_dim is not None and self.pred_hidden_dim < 1:
                raise ValueError(f"pred_hidden_dim must be >= 1, got {self.pred_hidden_dim}")

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
