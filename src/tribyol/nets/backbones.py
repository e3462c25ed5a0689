"""Encoders: torchvision ResNet-18/50 (optionally with a small-image stem) and a small ConvNet.

Each encoder maps ``[B, C, H, W]`` images to ``[B, out_dim]`` features. ResNets stay plain
torchvision ``ResNet`` instances (``fc`` replaced by ``Identity``) so that exported weights load
into ``torchvision.models.resnet*`` with the same keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    import torchvision

SMALL_STEM_MAX_SIZE = 64  # at or below this many pixels a 7x7/2 stem + max-pool throws away too much


def uses_small_stem(image_size: int, small_stem: bool | None = None) -> bool:
    """Whether to use the 3x3, stride-1, no-max-pool stem (CIFAR-style)."""
    return image_size <= SMALL_STEM_MAX_SIZE if small_stem is None else small_stem


def adapt_resnet_stem(net: torchvision.models.ResNet, in_channels: int, small_stem: bool) -> None:
    """Swap the first conv for ``in_channels`` inputs and, for small images, a 3x3 stem."""
    if small_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)


def _resnet(name: str) -> Callable[..., nn.Module]:
    """torchvision's ``name``, imported when first built (torchvision takes seconds to import)."""

    def build(in_channels: int, image_size: int, small_stem: bool | None = None, **_: object):
        net = getattr(importlib.import_module("torchvision.models"), name)(weights=None)
        adapt_resnet_stem(net, in_channels, uses_small_stem(image_size, small_stem))
        net.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        return net

    return build


class ConvNet(nn.Module):
    """A small 4-block ConvNet for CPU-scale runs: out_dim = 8 * width."""

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width, 1),
            block(width, 2 * width, 2),
            block(2 * width, 4 * width, 2),
            block(4 * width, 8 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 8 * width

    def forward(self, x):
        return self.features(x)


def _convnet(in_channels: int, image_size: int, width: int = 32, **_: object) -> nn.Module:
    return ConvNet(in_channels, width)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "convnet": _convnet,
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
}


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    small_stem: bool | None = None,
    width: int = 32,
) -> nn.Module:
    """Build an encoder by name; it has an ``out_dim`` attribute."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](
        in_channels=in_channels, image_size=image_size, small_stem=small_stem, width=width
    )
