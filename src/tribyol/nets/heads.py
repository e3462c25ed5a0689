"""The heads: the MLP (BYOL's projector/predictor shape, Linear -> BN -> ReLU -> Linear), and
the projector, predictor and frozen targets of the BYOL family, built in one place.

BYOL, TriBYOL and Cross: online ``E -> G``, predictor ``P``, EMA targets that start as frozen
copies of ``E -> G``; SimSiam takes ``G`` and ``P``, SimCLR ``G``. The attribute names a method
gives the parts are its state-dict keys (docs/methods.md).

Under the batch-free norms (``gn``, ``gn-ws``) the hidden layer's BatchNorm1d becomes a
LayerNorm: a feature vector has no spatial extent, and LayerNorm (GroupNorm with one group)
needs no group count to divide the hidden width (docs/methods.md).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Protocol

from torch import nn


class MLPHead(nn.Sequential):
    """Two-layer MLP used as projector and predictor (poster: hidden 512, output 128)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128,
                 norm: str = "bn") -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim) if norm == "bn" else nn.LayerNorm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim


class HeadSizes(Protocol):
    """What the heads are built from (``methods.MethodContext`` has it)."""

    backbone: nn.Module  # has ``out_dim``
    hidden_dim: int
    proj_dim: int
    norm: str


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that takes no gradients (a target network)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


class BYOLHeads(NamedTuple):
    projector: MLPHead  # G: encoder features -> projection
    predictor: MLPHead  # P: projection -> prediction
    online: nn.Sequential  # E -> G, the online network (shares the context's backbone)
    targets: list[nn.Module]  # frozen copies of ``online`` (no gradients), for the EMA


def projection_head(ctx: HeadSizes) -> MLPHead:
    """``G``: the shared two-layer MLP from the encoder's features to ``ctx.proj_dim``."""
    return MLPHead(ctx.backbone.out_dim, ctx.hidden_dim, ctx.proj_dim, ctx.norm)


def byol_heads(ctx: HeadSizes, num_targets: int = 1, pred_hidden_dim: int | None = None) -> BYOLHeads:
    """Projector, predictor (hidden size ``pred_hidden_dim``, default ``ctx.hidden_dim``), the
    online ``backbone -> projector`` and ``num_targets`` frozen copies of it, built in that
    order (the projector's random initialisation is drawn before the predictor's)."""
    projector = projection_head(ctx)
    hidden = ctx.hidden_dim if pred_hidden_dim is None else pred_hidden_dim
    predictor = MLPHead(ctx.proj_dim, hidden, ctx.proj_dim, ctx.norm)
    online = nn.Sequential(ctx.backbone, projector)
    return BYOLHeads(projector, predictor, online, [frozen_copy(online) for _ in range(num_targets)])
