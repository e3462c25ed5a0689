"""Backbones (encoders) and MLP heads."""

from tribyol.nets.backbones import BACKBONES, build_backbone, uses_small_stem
from tribyol.nets.heads import MLPHead

__all__ = ["BACKBONES", "MLPHead", "build_backbone", "uses_small_stem"]
