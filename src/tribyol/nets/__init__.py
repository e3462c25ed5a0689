"""Backbones (encoders) and heads (the MLP; the BYOL family's projector, predictor, targets)."""

from tribyol.nets.backbones import BACKBONES, TIMM_PREFIX, build_backbone, is_backbone, uses_small_stem
from tribyol.nets.heads import BYOLHeads, MLPHead, byol_heads, frozen_copy, projection_head

__all__ = ["BACKBONES", "TIMM_PREFIX", "BYOLHeads", "MLPHead", "build_backbone", "byol_heads",
           "frozen_copy", "is_backbone", "projection_head", "uses_small_stem"]
