"""MLP heads: BYOL's projector/predictor shape, Linear -> BN -> ReLU -> Linear."""

from __future__ import annotations

from torch import nn


class MLPHead(nn.Sequential):
    """Two-layer MLP used as projector and predictor (poster: hidden 512, output 128)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
