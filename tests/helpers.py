"""Helpers several test modules share (tests/conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


def scramble(net: nn.Module, seed: int) -> None:
    """Random weights *and* BatchNorm statistics, so a wrong key, stem or stale statistic shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def random_png_folder(root: Path, classes: int = 10, per_class: int = 10) -> Path:
    """``root/train/class<c>/<c>_<i>.png``: seeded random 8x8 RGB images, an ImageFolder."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{c}_{i:03d}.png")
    return root
