"""TriBYOL (Li et al., ICASSP 2022): one online network and EMA targets over three views.

``L = 1/2 [l(q(v0), z1(v1)) + l(q(v1), z1(v0))] + 1/2 [l(q(v0), z2(v2)) + l(q(v2), z2(v0))]``,
``l = 2 - 2 cos``; ``num_views = N > 3`` pairs the anchor v0 with each other view, scaled by
2 / (N - 1). The N-view form and the target policies: docs/methods.md#tribyol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tribyol.config.fields import Rule, option
from tribyol.methods.base import (
    ConcatViewsOptions,
    MethodContext,
    MomentumMethod,
    MomentumOptions,
    StepOutput,
    forward_each,
    method_name,
    reinitialize,
)
from tribyol.methods.losses import normalized_mse
from tribyol.methods.registry import register
from tribyol.nets.heads import byol_heads

TARGET_POLICIES = ("shared", "independent-init", "alternating-ema")
MAX_VIEWS = 64


@register
class TriBYOL(MomentumMethod):
    name = "tribyol"

    @dataclass
    class Options(MomentumOptions, ConcatViewsOptions):
        name: str = method_name("tribyol")
        target_policy: str = option("shared", "the targets: one shared, or one per other view "
                                    "(independent-init, alternating-ema)", choices=TARGET_POLICIES)
        symmetric: bool = option(True, "the poster's symmetrised loss, as BYOL's")
        # each view is a forward pass (and maybe a target): at most MAX_VIEWS
        num_views: int = option(3, "views per image; more than 3 generalises the triple-view "
                                "loss", rule=Rule(lambda v: 3 <= v <= MAX_VIEWS,
                                                  f">= 3 for TriBYOL, and at most {MAX_VIEWS}"))
        # concat_views (default off): all views in one online pass and one pass per target
        # network (BN then sees N * B samples at once).

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        num_targets = 1 if options.target_policy == "shared" else options.num_views - 1
        self.projector, self.predictor, self.online, targets = byol_heads(ctx, num_targets)
        if options.target_policy == "independent-init":
            for target in targets[1:]:
                # The encoder as its builder initialises one (torchvision's ResNet init for
                # ResNets), the projector as MLPHead's constructor does (PyTorch's default).
                target[0].load_state_dict(ctx.fresh_backbone().state_dict())
                reinitialize(target[1])
        self.targets = nn.ModuleList(targets)

    @property
    def num_views(self) -> int:
        return self.options.num_views

    @classmethod
    def passes(cls, options: Options) -> tuple[int, int]:
        """As ``forward_views`` runs them: symmetric, every view online, else the anchor only;
        the shared target sees each view it needs once (all N, or the N - 1 others), each of
        the N - 1 separate targets (independent-init, alternating-ema) its view and, when
        symmetric, the anchor again."""
        n, symmetric = options.num_views, options.symmetric
        online = n if symmetric else 1
        if options.target_policy == "shared":
            return online, n if symmetric else n - 1
        return online, (n - 1) * (2 if symmetric else 1)

    def momentum_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module]]:
        if self.options.target_policy == "alternating-ema":
            # step counts from 1: target 0 takes step 1, target 1 step 2, ...
            return [(self.online, self.targets[(step - 1) % len(self.targets)])]
        return [(self.online, target) for target in self.targets]

    def _target(self, pair: int) -> nn.Module:
        return self.targets[0 if len(self.targets) == 1 else pair]

    def _target_projections(
        self, anchor: Tensor, others: list[Tensor], concat: bool
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Target projections of each non-anchor view, and of the anchor for each pair
        (empty when one-directional). The shared target sees each view once, not once per pair."""
        symmetric = self.options.symmetric
        if len(self.targets) == 1:
            outs = forward_each(self.targets[0], [anchor, *others] if symmetric else others, concat)
            return (outs[1:], [outs[0]] * len(others)) if symmetric else (outs, [])
        t_views, t_anchors = [], []
        for j, view in enumerate(others):
            outs = forward_each(self._target(j), [view, anchor] if symmetric else [view], concat)
            t_views.append(outs[0])
            t_anchors.extend(outs[1:])
        return t_views, t_anchors

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        anchor, others = views[0], views[1:]
        symmetric, concat = self.options.symmetric, self.options.concat_views
        b = len(anchor)
        if concat:
            y = self.backbone(torch.cat(views if symmetric else [anchor]))
            z = self.projector(y)
            q = list(self.predictor(z).split(b))
            y0, z0 = y[:b], z[:b]
        else:
            y0 = self.backbone(anchor)
            z0 = self.projector(y0)
            q = [self.predictor(z0)]
            if symmetric:
                q += [self.predictor(self.online(view)) for view in others]
        with torch.no_grad():
            t_views, t_anchors = self._target_projections(anchor, others, concat)
        pair_losses = []
        for j in range(len(others)):
            pair = normalized_mse(q[0], t_views[j])
            if symmetric:
                pair = 0.5 * (pair + normalized_mse(q[j + 1], t_anchors[j]))
            pair_losses.append(pair)
        scale = 2.0 / len(others)  # keeps the scale of the 3-view loss for any N
        loss = scale * torch.stack(pair_losses).sum()
        return StepOutput(loss=loss, features=y0.detach(), projections=z0.detach())
