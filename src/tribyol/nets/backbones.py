"""Encoders: torchvision ResNet-18/50 (optionally with a small-image stem) and a small ConvNet.

Each encoder maps ``[B, C, H, W]`` images to ``[B, out_dim]`` features. ResNets stay plain
torchvision ``ResNet`` instances (``fc`` replaced by ``Identity``) so that exported weights load
into ``torchvision.models.resnet*`` with the same keys.

``activation_checkpointing`` recomputes each stage (ResNet ``layer1..4``, the ConvNet's four
blocks) in the backward pass instead of keeping its activations: less memory, about one more
forward of compute, the same loss, gradients and BatchNorm running statistics.

``norm``: ``bn`` (BatchNorm), ``gn`` (GroupNorm with ``norm_groups`` groups) or ``gn-ws``
(GroupNorm, every convolution a ``WSConv2d``), as in Richemond et al. 2020, "BYOL works even
without batch statistics". With gn/gn-ws a sample's features do not depend on the rest of
its batch. The parameter names stay torchvision's, so exports still load there.

``timm:NAME`` is any timm architecture (``tribyol.nets.timm_backbone``): timm's own model for
the data's bands, optionally from a local ``weights`` file. It takes neither ``norm`` nor
``small_stem`` (``timm_options_problem``); activation checkpointing works where the model has
four ``nn.Sequential`` stages ``layer1..4`` (timm's ResNet family).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tribyol.config import NORMS  # the config's one list of norms
from tribyol.errors import ConfigError
from tribyol.nets.timm_backbone import PREFIX as TIMM_PREFIX
from tribyol.nets.timm_backbone import check_name as check_timm_name
from tribyol.nets.timm_backbone import timm_encoder

if TYPE_CHECKING:
    import torchvision

SMALL_STEM_MAX_SIZE = 64  # at or below this many pixels a 7x7/2 stem + max-pool throws away too much

WS_EPS = 1e-5


class WSConv2d(nn.Conv2d):
    """A convolution whose weight is standardised in every forward: per output channel, zero
    mean and unit variance over ``in x kh x kw`` (eps 1e-5). No parameters of its own, so its
    state-dict keys are ``nn.Conv2d``'s (``weight``, ``bias``)."""

    def standardized_weight(self) -> Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) * torch.rsqrt(var + WS_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


def norm_layer(norm: str, groups: int = 32) -> Callable[[int], nn.Module]:
    """``channels -> module`` for a 2-D normalisation; GroupNorm refuses groups that do not
    divide the channels (``ValueError``)."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")

    def group_norm(channels: int) -> nn.GroupNorm:
        if channels % groups:
            raise ValueError(f"model.norm_groups={groups} does not divide a layer's {channels} "
                             "channels")
        return nn.GroupNorm(groups, channels)

    return group_norm


_RESNET_CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet50": (64, 128, 256, 512, 1024, 2048)}


def norm_channels(name: str, width: int = 32) -> tuple[int, ...]:
    """The channel counts of the encoder's normalised layers (to check GroupNorm's groups
    before anything is built)."""
    if name == "convnet":
        return (width, 2 * width, 4 * width, 8 * width)
    return _RESNET_CHANNELS.get(name, ())


def standardize_convs(net: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv2d`` in ``net`` a ``WSConv2d``, in place (the same
    parameters and names)."""
    for m in net.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = WSConv2d
    return net


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

    def build(in_channels: int, image_size: int, small_stem: bool | None = None,
              norm: str = "bn", norm_groups: int = 32, **_: object):
        net = getattr(importlib.import_module("torchvision.models"), name)(
            weights=None, norm_layer=norm_layer(norm, norm_groups))
        adapt_resnet_stem(net, in_channels, uses_small_stem(image_size, small_stem))
        net.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        return net

    return build


class ConvNet(nn.Module):
    """A small 4-block ConvNet for CPU-scale runs: out_dim = 8 * width."""

    def __init__(self, in_channels: int = 3, width: int = 32,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                norm(cout),
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


def _convnet(in_channels: int, image_size: int, width: int = 32, norm: str = "bn",
             norm_groups: int = 32, **_: object) -> nn.Module:
    return ConvNet(in_channels, width, norm_layer(norm, norm_groups))


class _KeepBatchNormStats(contextlib.AbstractContextManager):
    """Undo what a recomputed forward does to BatchNorm buffers.

    The recomputation runs the stage again in training mode, so without this every BatchNorm
    would update its running mean/var (and ``num_batches_tracked``) a second time per step.
    The buffers are restored to their values before the recomputation, which are those the
    original forward left (torch's checkpoint has no option for this).
    """

    def __init__(self, stage: nn.Module) -> None:
        self.bns = [m for m in stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and m.track_running_stats]
        self.saved: list[tuple[Tensor, ...]] = []

    def __enter__(self) -> _KeepBatchNormStats:
        self.saved = [tuple(b.clone() for b in (m.running_mean, m.running_var,
                                                  m.num_batches_tracked)) for m in self.bns]
        return self

    def __exit__(self, *exc: object) -> None:
        # Also on torch's early stop of the recomputation (it raises through this context).
        with torch.no_grad():
            for m, saved in zip(self.bns, self.saved, strict=True):
                for buf, old in zip((m.running_mean, m.running_var, m.num_batches_tracked),
                                    saved, strict=True):
                    buf.copy_(old)
        self.saved = []


class _CheckpointedStage(nn.Sequential):
    """An ``nn.Sequential`` stage whose training forward is recomputed in the backward pass.

    Swapped in as the stage's class (not a wrapping parent), so parameter and buffer names,
    hence checkpoints and exports, are those of the plain network.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        return checkpoint(
            super().forward, x, use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _KeepBatchNormStats(self)),
        )


def stages(net: nn.Module) -> list[nn.Sequential]:
    """The encoder's stages: ResNet ``layer1..layer4``, or the ConvNet's four blocks."""
    if isinstance(net, ConvNet):
        found = [m for m in net.features if isinstance(m, nn.Sequential)]
    else:
        found = [getattr(net, f"layer{i}", None) for i in range(1, 5)]
    if len(found) != 4 or not all(isinstance(m, nn.Sequential) for m in found):
        raise ValueError(f"{type(net).__name__} has no four nn.Sequential stages to checkpoint")
    return found


def enable_activation_checkpointing(net: nn.Module) -> nn.Module:
    """Recompute each stage of ``net`` in the backward pass (training with grad only); in place."""
    for stage in stages(net):
        stage.__class__ = _CheckpointedStage
    return net


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "convnet": _convnet,
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
}


def timm_options_problem(norm: str = "bn", small_stem: bool | None = None) -> str | None:
    """Why these model options cannot go with a timm backbone (None: they can): timm builds its
    own normalisation and stem."""
    if norm != "bn":
        return (f"model.norm={norm} applies to tribyol's own backbones only (timm models keep "
                "their own normalisation); set model.norm=bn")
    if small_stem:
        return ("model.small_stem=true applies to tribyol's ResNets only (a timm model keeps its "
                "own stem); leave model.small_stem unset, or pick a timm model made for small "
                "images")
    return None


def _timm_backbone(name: str, in_channels: int, image_size: int, small_stem: bool | None,
                   activation_checkpointing: bool, norm: str, weights: str | None) -> nn.Module:
    problem = timm_options_problem(norm, small_stem)
    if problem:
        raise ConfigError(problem)
    net = timm_encoder(name, in_channels, weights=weights, image_size=image_size)
    if not activation_checkpointing:
        return net
    try:
        return enable_activation_checkpointing(net)
    except ValueError:
        raise ConfigError(f"model.activation_checkpointing=true needs four nn.Sequential stages "
                          f"layer1..layer4 (timm's ResNets have them), and {name} has not; set "
                          "model.activation_checkpointing=false") from None


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    small_stem: bool | None = None,
    width: int = 32,
    activation_checkpointing: bool = False,
    norm: str = "bn",
    norm_groups: int = 32,
    weights: str | None = None,
) -> nn.Module:
    """Build an encoder by name (``BACKBONES``, or ``timm:NAME``); it has an ``out_dim`` attribute.

    ``activation_checkpointing``: recompute each stage in the backward pass (less memory).
    ``norm``: bn, gn or gn-ws (GroupNorm with ``norm_groups`` groups; gn-ws also standardises
    every convolution's weight). ``weights``: timm only, a local file to start from (the first
    conv adapted to ``in_channels``).
    """
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name, in_channels, image_size, small_stem, activation_checkpointing,
                              norm, weights)
    if weights is not None:
        raise ConfigError(f"model.weights is for timm backbones, not {name}; drop model.weights "
                          "or use --backbone timm:NAME")
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(sorted(BACKBONES))}")
    net = BACKBONES[name](
        in_channels=in_channels, image_size=image_size, small_stem=small_stem, width=width,
        norm=norm, norm_groups=norm_groups,
    )
    if norm == "gn-ws":
        standardize_convs(net)  # after the stem swap, so conv1 is standardised too
    return enable_activation_checkpointing(net) if activation_checkpointing else net


def is_backbone(name: str) -> bool:
    """Whether ``name`` is a backbone: a ``BACKBONES`` key, or ``timm:`` and a timm architecture."""
    if name.startswith(TIMM_PREFIX):
        try:
            check_timm_name(name)
        except ConfigError:
            return False
        return True
    return name in BACKBONES
