"""The projector / predictor heads and the frozen targets of the BYOL family, built in one place.

BYOL, TriBYOL and Cross: online ``E -> G``, predictor ``P``, EMA targets that start as frozen
copies of ``E -> G``; SimSiam takes ``G`` and ``P``, SimCLR ``G``. The attribute names a method
gives the parts are its state-dict keys (docs/methods.md).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from tribyol.methods.base import MethodContext, frozen_copy
from tribyol.nets import MLPHead


class BYOLHeads(NamedTuple):
    projector: MLPHead  # G: encoder features -> projection
    predictor: MLPHead  # P: projection -> prediction
    online: nn.Sequential  # E -> G, the online network (shares the context's backbone)
    targets: list[nn.Module]  # frozen copies of ``online`` (no gradients), for the EMA


def projection_head(ctx: MethodContext) -> MLPHead:
    """``G``: the shared two-layer MLP from the encoder's features to ``ctx.proj_dim``."""
    return MLPHead(ctx.backbone.out_dim, ctx.hidden_dim, ctx.proj_dim, ctx.norm)


def byol_heads(ctx: MethodContext, num_targets: int = 1, pred_hidden_dim: int | None = None) -> BYOLHeads:
    """Projector, predictor (hidden size ``pred_hidden_dim``, default ``ctx.hidden_dim``), the
    online ``backbone -> projector`` and ``num_targets`` frozen copies of it, built in that
    order (the projector's random initialisation is drawn before the predictor's)."""
    projector = projection_head(ctx)
    hidden = ctx.hidden_dim if pred_hidden_dim is None else pred_hidden_dim
    predictor = MLPHead(ctx.proj_dim, hidden, ctx.proj_dim, ctx.norm)
    online = nn.Sequential(ctx.backbone, projector)
    return BYOLHeads(projector, predictor, online, [frozen_copy(online) for _ in range(num_targets)])
