"""Supervised baselines (the poster's "from scratch" and "ImageNet (supervised)" rows).

``L = CE(W E(v), y)`` on one view with the standard crop-and-flip augmentation: ``supervised``
from random weights, ``supervised-imagenet`` from torchvision's ImageNet weights, read offline
(stem adaptation, where the file is looked for: docs/methods.md#supervised).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tribyol.config import AugmentConfig
from tribyol.config.fields import option
from tribyol.errors import CheckpointError, ConfigError, torch_load_reason
from tribyol.methods.base import Method, MethodContext, MethodOptions, StepOutput, method_name
from tribyol.methods.losses import labelled_cross_entropy
from tribyol.methods.registry import register

log = logging.getLogger(__name__)

# torchvision's ImageNet weight files per backbone (IMAGENET1K_V1, then V2), in the order they
# are looked for. Plain URLs: importing torchvision here would slow down every config check.
IMAGENET_WEIGHTS = {
    "resnet18": ("https://download.pytorch.org/models/resnet18-f37072fd.pth",),
    "resnet50": (
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    ),
}


def backbone_name(encoder: nn.Module) -> str:
    """``resnet18`` / ``resnet50`` from the encoder's layout, for contexts built without
    ``backbone_name`` (a user's own ``MethodContext``)."""
    if type(encoder).__name__ == "ResNet":
        block = type(encoder.layer1[0]).__name__
        depth = sum(len(getattr(encoder, f"layer{i}")) for i in range(1, 5))
        if block == "BasicBlock" and depth == 8:
            return "resnet18"
        if block == "Bottleneck" and depth == 16:
            return "resnet50"
    return type(encoder).__name__.lower()


# What a run's encoder, export, record and report row say when ImageNet's 7x7 stem could not
# be loaded: at <= 64 px (or model.small_stem=true) conv1 is a random 3x3 conv, bn1 random
# too, the max-pool gone; only layer1 onward holds ImageNet's weights.
RANDOM_STEM = "random 3x3"


def imagenet_stem(method: str | None, backbone: str, small_stem: bool) -> str | None:
    """``RANDOM_STEM`` for a ``supervised-imagenet`` ResNet with the small stem, else None
    (ImageNet's own stem, or a method that loads no ImageNet weights)."""
    if method == "supervised-imagenet" and backbone in IMAGENET_WEIGHTS and small_stem:
        return RANDOM_STEM
    return None


def hub_weight_paths(backbone: str) -> list[Path]:
    """Where torchvision would have cached this backbone's ImageNet weights."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [folder / url.rsplit("/", 1)[-1] for url in IMAGENET_WEIGHTS.get(backbone, ())]


def find_imagenet_weights(backbone: str, weights: str | None = None) -> Path:
    """The weight file to use, or ``FileNotFoundError`` naming every path looked at and the fix."""
    if backbone not in IMAGENET_WEIGHTS:
        raise ConfigError(
            f"supervised-imagenet needs model.backbone resnet18 or resnet50 (torchvision's "
            f"ImageNet weights), got '{backbone}'"
        )
    candidates = [Path(weights).expanduser()] if weights else hub_weight_paths(backbone)
    for path in candidates:
        if path.is_file():
            return path
    urls = ", ".join(IMAGENET_WEIGHTS[backbone])
    raise FileNotFoundError(
        f"ImageNet weights for {backbone} not found; looked at: "
        f"{', '.join(str(p) for p in candidates)}. Copy the file there (download {urls} on a "
        f"machine with internet, e.g. torchvision.models.{backbone}(weights='DEFAULT') fills "
        f"the hub cache), or pass --weights PATH (--set method.weights=PATH)."
    )


def adapt_imagenet_state(state: dict[str, Tensor], encoder: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """ImageNet state dict -> one that loads into ``encoder``; returns it and the keys kept fresh."""
    own = encoder.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the encoder has no fc
    fresh: list[str] = []
    conv = state.get("conv1.weight")
    target = own.get("conv1.weight")
    if conv is not None and target is not None and conv.shape != target.shape:
        if conv.shape[2:] == target.shape[2:]:  # same kernel, other channel count
            channels = target.shape[1]
            state["conv1.weight"] = conv.sum(dim=1, keepdim=True).repeat(1, channels, 1, 1) / channels
        else:  # 3x3 small stem: no sensible mapping from a 7x7 kernel
            fresh = [k for k in own if k.startswith(("conv1.", "bn1."))]
            for key in fresh:
                state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the encoder: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return state, fresh


def load_imagenet_weights(encoder: nn.Module, path: Path) -> list[str]:
    """Load an ImageNet state dict (``weights_only``) into ``encoder``; returns the fresh keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = torch_load_reason(err)  # torch's reason, without its unsafe advice
        raise CheckpointError(
            f"cannot read ImageNet weights {path}: truncated, not a torch file, or it holds objects "
            f"other than tensors ({type(err).__name__}: {reason}). Pass torchvision's "
            "resnet*.pth file with --weights."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict; pass torchvision's resnet*.pth file")
    try:
        state, fresh = adapt_imagenet_state(state, encoder)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}; is it the ImageNet file for this backbone?") from None
    encoder.load_state_dict(state)
    return fresh


AUGMENTATIONS = ("crop-flip", "byol")


def crop_flip_views(views: AugmentConfig) -> AugmentConfig:
    """The standard supervised augmentation from the run's views: crop and flip as configured
    (dataset presets included), every colour, band, blur and solarise op off."""
    return views.geometric_only()


@register
class Supervised(Method):
    name = "supervised"
    needs_labels = True

    @dataclass
    class Options(MethodOptions):
        name: str = method_name("supervised")
        augment: str = option("crop-flip", "the augmentation: crop-flip, the standard "
                              "supervised one, or byol, view 0 of BYOL's", choices=AUGMENTATIONS)

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        if ctx.num_classes < 1:
            raise ConfigError(f"method '{self.name}' needs a labelled dataset (no classes found)")
        self.classifier = nn.Linear(ctx.backbone.out_dim, ctx.num_classes)

    @property
    def num_views(self) -> int:
        return 1

    def augment_config(self, views: AugmentConfig) -> AugmentConfig:
        return crop_flip_views(views) if self.options.augment == "crop-flip" else views

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        if labels is None:
            raise ValueError(f"method '{self.name}' needs labels")
        y = self.backbone(views[0])
        logits = self.classifier(y)
        # -1 marks unlabelled images (e.g. STL-10's unlabeled split)
        loss, acc = labelled_cross_entropy(logits, labels)
        return StepOutput(loss=loss, features=y.detach(), projections=y.detach(),
                          logs={"acc": acc.detach()})


@register
class SupervisedImageNet(Supervised):
    name = "supervised-imagenet"

    @dataclass
    class Options(Supervised.Options):
        name: str = method_name("supervised-imagenet")
        weights: str | None = option(None, "the ImageNet state-dict file",
                                     default_text="the torch hub cache")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        backbone = ctx.backbone_name or backbone_name(self.backbone)
        path = find_imagenet_weights(backbone, options.weights)
        fresh = load_imagenet_weights(self.backbone, path)
        log.info("supervised-imagenet: loaded %s into %s", path, backbone)
        # Recorded, not refused: the 3x3 stem is the usual CIFAR-size ResNet, and at <= 64 px
        # ImageNet's 7x7/2 stem + max-pool leave at most 2x2 after layer4; the checkpoint,
        # export, record and report row say "stem: random 3x3" (checkpoints.run_settings).
        self.stem = RANDOM_STEM if fresh else None
        if fresh:
            log.warning(
                "supervised-imagenet: the small 3x3 stem cannot take ImageNet's 7x7 conv1, so "
                "conv1 and bn1 start random (recorded as 'stem: %s' in the export, the results "
                "and the report); set model.small_stem=false to keep them", RANDOM_STEM
            )
