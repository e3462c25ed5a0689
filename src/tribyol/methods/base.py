"""Method base classes: ``Method`` (networks + loss over a list of views) and ``MomentumMethod``
(adds EMA targets). A method says only what is specific to it; the engine does the rest."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tribyol.config import AugmentConfig, ModelConfig
from tribyol.config.fields import check_fields, option, within

if TYPE_CHECKING:  # a hint only: methods need not load the data readers
    from tribyol.data.pretrain import DataInfo


@dataclass
class MethodContext:
    """What a method may need to know to build its networks."""

    backbone: nn.Module  # the online encoder; has ``out_dim``
    hidden_dim: int = ModelConfig.hidden_dim  # the config's defaults, written once there
    proj_dim: int = ModelConfig.proj_dim
    num_classes: int = 10
    num_train_images: int = 0
    image_size: int = 32
    channels: int = 3
    norm: str = ModelConfig.norm  # the heads' normalisation follows the encoder's (bn, gn, gn-ws)
    backbone_name: str = ""  # the registry name of ``backbone`` (e.g. resnet18); "" if unknown
    # Builds another encoder the way ``backbone`` was built (the same builder, a new draw of
    # its random initialisation); the engine passes it. None: ``fresh_backbone`` re-initialises
    # a copy instead (exact for the ConvNet, see there for ResNets).
    new_backbone: Callable[[], nn.Module] | None = None

    @classmethod
    def for_data(cls, data: DataInfo, backbone: nn.Module, **heads: Any) -> MethodContext:
        """The context for pre-training on ``data``: its classes, image count, view size and
        channels taken from the one ``DataInfo``; ``heads``: the other fields."""
        return cls(backbone=backbone, num_classes=data.num_classes,
                   num_train_images=data.num_train_images, image_size=data.image_size,
                   channels=data.channels, **heads)

    def fresh_backbone(self) -> nn.Module:
        """A new encoder with the backbone's architecture and its constructor's initialisation."""
        if self.new_backbone is not None:
            return self.new_backbone()
        return reinitialize(copy.deepcopy(self.backbone))


@dataclass
class StepOutput:
    """The result of one training step's forward pass."""

    loss: Tensor
    features: Tensor | None = None  # online encoder features of the first view (for the probe)
    projections: Tensor | None = None  # online projections (for the collapse monitor)
    logs: dict[str, Tensor] = field(default_factory=dict)


def reinitialize(module: nn.Module) -> nn.Module:
    """Give every layer of ``module`` fresh random weights (uses the current torch RNG).

    Layers get PyTorch's default initialisation, except inside a torchvision ``ResNet``, whose
    constructor initialises convolutions Kaiming-normal (fan-out) and norm layers to 1 / 0: that
    init is redone, since PyTorch's default would start the convs about 2.4x narrower. (A ResNet
    stem replaced after construction, as ``adapt_resnet_stem`` does, got PyTorch's default from
    its builder; only ``MethodContext.new_backbone`` reproduces that exactly.)
    """
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for net in module.modules():
        if type(net).__name__ == "ResNet":  # torchvision's; not imported here (slow to import)
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
    return module


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- tau * target + (1 - tau) * online`` over parameters, in place.

    Buffers (BatchNorm running statistics) are not averaged: a target runs in train mode and
    keeps its own running estimates, as in BYOL.
    """
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("EMA pair has different parameter lists")
    torch._foreach_mul_(t_params, tau)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - tau)


def tau_at(step: int, total_steps: int, base: float, schedule: str, final: float = 1.0) -> float:
    """EMA coefficient at ``step``: constant, or BYOL's cosine rise from ``base`` to ``final``."""
    if schedule == "constant" or total_steps <= 0:
        return base
    progress = min(step / total_steps, 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def method_name(name: str) -> Any:
    """The ``name`` field of a method's ``Options``: its registry name, and only that."""
    return option(name, "the method", choices=(name,))


@dataclass
class MethodOptions:
    """What every method's ``Options`` holds: its name first (``method.name``), then option
    fields (``config.fields.option``) with their rules. A method whose options constrain each
    other extends ``validate`` with ``require``s."""

    name: str = method_name("")

    def validate(self) -> None:
        """Each option's rule; a bad value is a ``ConfigError`` naming ``method.<option>``."""
        check_fields(self, lambda option: f"method.{option}")


class Method(nn.Module):
    """Networks and a loss over ``num_views`` augmented views of a batch.

    Subclasses set ``name``, an ``Options`` dataclass, and implement ``forward_views``.
    ``self.backbone`` is the encoder that evaluation and export use.
    """

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    Options = MethodOptions  # each method's own: a MethodOptions dataclass

    def __init__(self, ctx: MethodContext, options: Any) -> None:
        super().__init__()
        self.options = options
        self.backbone = ctx.backbone

    @classmethod
    def check_state_keys(cls, keys: Iterable[str], prefix: str = "") -> None:
        """Refuse a state dict (its ``keys``; the method's under ``prefix``) that this version
        cannot load, with one ``CheckpointError`` that says why; the resume check calls it before
        comparing keys. Nothing to refuse by default."""

    @property
    def num_views(self) -> int:
        return 2

    @classmethod
    def passes(cls, options: Any) -> tuple[int, int] | None:
        """A step's counted passes of one view batch: (online forward+backward, target
        forwards) under ``options``; None where the method does not count them (then
        ``reproduce``'s ``equal_compute`` cannot match it). ``registry.step_cost`` weighs them."""
        return None

    def augment_config(self, views: AugmentConfig) -> AugmentConfig:
        """The augmentation this method trains on, given the run's ``views`` settings (the
        self-supervised recipe); the engine builds its views from what this returns."""
        return views

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        raise NotImplementedError

    def forward(
        self,
        views: list[Tensor],
        labels: Tensor | None = None,
        indices: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One step's loss. ``indices``: each image's dataset index (PIRL's memory bank);
        ``generator``: the step's random generator, for any random draw a method makes. Methods
        that need neither implement ``forward_views(views, labels)`` only."""
        return self.forward_views(views, labels)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called once per optimizer step (not per micro-batch) with the new step count."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)


@dataclass
class MomentumOptions(MethodOptions):
    """EMA options shared by every momentum method."""

    tau: float = option(0.996, "the targets' EMA coefficient", rule=within(0, 1, "[]"))  # poster
    tau_schedule: str = option("constant", "how tau moves: constant as the poster, or cosine "
                               "up to tau_final as BYOL", choices=("constant", "cosine"))
    tau_final: float = option(1.0, "tau at the last step under the cosine schedule",
                              rule=within(0, 1, "[]"))


@dataclass
class ConcatViewsOptions(MethodOptions):
    """Opt-in: run all views through a network as one batch (one pass instead of one per view).

    Faster (fewer, larger kernels), but BatchNorm then normalises over every view's samples
    together (statistics over ``N * B`` samples instead of ``B`` per view), which changes the
    training dynamics; off by default so that the default matches the separate passes of BYOL.
    """

    concat_views: bool = option(False, "all views through a network as one batch: faster, "
                                "but BatchNorm then sees every view's samples at once")


def forward_each(net: nn.Module, views: list[Tensor], concat: bool) -> list[Tensor]:
    """``[net(v) for v in views]``, or one pass over ``torch.cat(views)`` split back per view."""
    if not concat or len(views) == 1:
        return [net(v) for v in views]
    out = net(torch.cat(views))
    return list(out.split([len(v) for v in views]))


class MomentumMethod(Method):
    """A method with EMA target networks. Subclasses list ``(online, target)`` pairs.

    Options it reads: ``tau`` (base EMA coefficient), ``tau_schedule`` ("constant" or
    "cosine" towards ``tau_final``).
    """

    def momentum_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module]]:
        """The (online, target) pairs to update after optimizer step ``step``."""
        raise NotImplementedError

    def current_tau(self, step: int, total_steps: int) -> float:
        o = self.options
        return tau_at(step, total_steps, o.tau, o.tau_schedule, o.tau_final)

    def after_optimizer_step(self, step: int, total_steps: int,
                             ema: Callable[[nn.Module, nn.Module, float], None] = ema_update_) -> None:
        """The EMA step; ``ema``: the update (the engine's compiled one under train.compile)."""
        # The tau used for update number `step` is the one scheduled before that step.
        tau = self.current_tau(step - 1, total_steps)
        for online, target in self.momentum_pairs(step):
            ema(target, online, tau)
