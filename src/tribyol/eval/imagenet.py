"""ImageNet weights as a SOURCE: ``imagenet:resnet18`` / ``imagenet:resnet50``.

torchvision's supervised ImageNet ResNets, the poster's "supervised transfer from ImageNet" row.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tribyol.checkpoints import EncoderInfo
from tribyol.data.registry import IMAGENET_MEAN, IMAGENET_STD
from tribyol.errors import ConfigError
from tribyol.methods.supervised import IMAGENET_WEIGHTS, find_imagenet_weights, load_imagenet_weights

IMAGENET_PREFIX = "imagenet:"
IMAGENET_IMAGE_SIZE = 224  # the size torchvision's ImageNet weights were trained and scored at
MIN_IMAGENET_IMAGE_SIZE = 32  # the 7x7/2 stem, max-pool and four stages divide the input by 32
IMAGENET_LABELS = "imagenet labels"


def is_imagenet_source(source: str | Path) -> bool:
    return str(source).startswith(IMAGENET_PREFIX)


def imagenet_metadata(backbone: str, image_size: int = IMAGENET_IMAGE_SIZE,
                      weights: Path | None = None) -> dict[str, str]:
    """Export-style metadata of torchvision's ImageNet ResNet: RGB, the standard 7x7 stem,
    ImageNet's mean/std. No pre-training batch is stated: the run is torchvision's, not ours."""
    meta = EncoderInfo(
        backbone=backbone, in_channels=3, image_size=image_size, small_stem=False,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, method="supervised-imagenet", dataset="imagenet",
        labels_seen=IMAGENET_LABELS,
    ).to_metadata()
    if weights is not None:
        meta["weights"] = str(weights)
    return meta


def load_imagenet(source: str, random_init: bool = False, seed: int = 0,
                  weights: str | None = None,
                  image_size: int | None = None) -> tuple[nn.Module, dict[str, str], str, Path]:
    """``imagenet:resnet18`` -> (encoder, metadata, run id, path): torchvision's ResNet-18 with
    the ImageNet weights of ``weights`` (a path) or the torch hub cache; ``random_init``: the
    same network, untrained (``eval.sources.load_source`` makes it a ``Source``)."""
    backbone = str(source)[len(IMAGENET_PREFIX):]
    if backbone not in IMAGENET_WEIGHTS:
        raise ConfigError(
            f"SOURCE {source}: ImageNet weights are known for "
            f"{', '.join(IMAGENET_PREFIX + b for b in IMAGENET_WEIGHTS)}, not '{backbone}'"
        )
    size = image_size or IMAGENET_IMAGE_SIZE
    suffix = "" if size == IMAGENET_IMAGE_SIZE else f"-{size}px"
    if random_init:
        torch.manual_seed(seed)
        meta = {**imagenet_metadata(backbone, size), "labels_seen": "none"}
        encoder = EncoderInfo.from_metadata(meta).build_encoder()
        return encoder, meta, f"imagenet-{backbone}{suffix}+random-init", Path(str(source))
    path = find_imagenet_weights(backbone, weights)
    meta = imagenet_metadata(backbone, size, path)
    encoder = EncoderInfo.from_metadata(meta).build_encoder()
    fresh = load_imagenet_weights(encoder, path)
    assert not fresh, fresh  # the standard stem takes every ImageNet weight
    stem = path.name.split(".")[0]
    name = stem if stem.startswith(backbone) else f"{backbone}-{stem}"
    return encoder, meta, f"imagenet-{name}{suffix}", path
