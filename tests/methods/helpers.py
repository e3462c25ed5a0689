"""Helpers shared by the method tests: tiny methods built from one seed, and fixed views."""

from __future__ import annotations

import torch

from tribyol.methods import Method, MethodContext, resolve_options
from tribyol.nets import build_backbone

NUM_IMAGES = 20  # training images a tiny PIRL's memory bank has rows for


def make(name: str = "byol", backbone: str = "convnet", channels: int = 1, image_size: int = 16,
         small_stem: bool | None = None, num_images: int = NUM_IMAGES, **options) -> Method:
    """Method ``name`` with ``options`` on a tiny encoder (width 4, hidden 16, projection 8),
    built after ``torch.manual_seed(0)``: two calls give identical weights."""
    torch.manual_seed(0)
    cls, opts = resolve_options({"name": name, **options})
    net = build_backbone(backbone, channels, image_size, small_stem, width=4)
    ctx = MethodContext(net, hidden_dim=16, proj_dim=8, num_classes=10,
                        num_train_images=num_images, image_size=image_size, channels=channels)
    return cls(ctx, opts)


def make_pirl(name: str = "pirl-rotation", **options) -> Method:
    """``make`` with PIRL-Rotation as the default method."""
    return make(name, **options)


def make_supervised(name: str = "supervised", backbone: str = "convnet", **options) -> Method:
    """``make`` with the supervised baseline as the default method."""
    return make(name, backbone, **options)


def views(n: int, b: int = 6) -> list[torch.Tensor]:
    """``n`` fixed random 1-channel 16 px views of a batch of ``b``."""
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, 1, 16, 16, generator=g) for _ in range(n)]
