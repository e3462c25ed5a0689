"""MLP heads: BYOL's projector/predictor shape, Linear -> BN -> ReLU -> Linear.

Under the batch-free norms (``gn``, ``gn-ws``) the hidden layer's BatchNorm1d becomes a
LayerNorm: a feature vector has no spatial extent, and LayerNorm (GroupNorm with one group)
needs no group count to divide the hidden width (docs/methods.md).
"""

from __future__ import annotations

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
