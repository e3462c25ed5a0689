"""PIRL-Rotation (Misra & van der Maaten, CVPR 2020, "Self-Supervised Learning of
Pretext-Invariant Representations"), with rotation as the transform.

Each image's view is rotated by 0, 90, 180 or 270 degrees (drawn per image), encoded by the
shared encoder and mapped by its own linear head to ``g``. The loss is PIRL's (see
``pirl.PIRLBase``): ``L = lam * NCE(m_I, g(rot(v'))) + (1 - lam) * NCE(m_I, f(v))``. The
quarter turns are drawn from the step's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tribyol.methods.base import MethodContext, method_name
from tribyol.methods.pirl import PIRLBase, PIRLOptions
from tribyol.methods.registry import register


def rotate_batch(x: Tensor, quarter_turns: Tensor) -> Tensor:
    """Rotate image ``b`` of a square batch by ``90 * quarter_turns[b]`` degrees (counter-clockwise,
    as ``torch.rot90``). Four whole-batch rotations and one gather, no per-sample loop."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(x.shape[-2:])}")
    all_turns = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # [4, B, ...]
    return all_turns[quarter_turns.long() % 4, torch.arange(x.shape[0], device=x.device)]


@register
class PIRLRotation(PIRLBase):
    name = "pirl-rotation"

    @dataclass
    class Options(PIRLOptions):
        name: str = method_name("pirl-rotation")

    def __init__(self, ctx: MethodContext, options: Options) -> None:
        super().__init__(ctx, options)
        self.head_g = nn.Linear(ctx.backbone.out_dim, ctx.proj_dim)

    def transformed_embedding(self, view: Tensor, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else view.device
        turns = torch.randint(0, 4, (view.shape[0],), device=device, generator=generator)
        turns = turns.to(view.device)
        return self.head_g(self.backbone(rotate_batch(view, turns)))
