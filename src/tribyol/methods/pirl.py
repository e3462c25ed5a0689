"""PIRL (Misra & van der Maaten, CVPR 2020): the invariance objective and its per-image memory
bank, shared by PIRL-Jigsaw and PIRL-Rotation (``pirl_jigsaw.py``, ``pirl_rotation.py``).

``L = lam * NCE(m_I, g(t(v'))) + (1 - lam) * NCE(m_I, f(v))``, ``m_I`` image I's bank row, then
``m_I <- 0.5 m_I + 0.5 f(v)``. The bank, its indices and generator: docs/methods.md#pirl.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tribyol.config.fields import at_least, option, positive, within
from tribyol.methods.base import Method, MethodContext, MethodOptions, StepOutput
from tribyol.methods.losses import info_nce


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """``x`` from every rank, concatenated in rank order (no autograd); ``x`` when single-process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class MemoryBank(nn.Module):
    """One L2-normalised ``dim``-vector per training image, updated by a moving average.

    ``update(indices, values)`` sets ``m_i <- normalize(momentum * m_i + (1 - momentum) *
    normalize(v_i))`` (PIRL: momentum 0.5); under DDP the rows of every rank are gathered first,
    so each rank's bank stays the same. Starts with random unit rows; saved in checkpoints.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"a per-image memory bank needs >= 2 training images, got {size}")
        self.momentum = momentum
        self.register_buffer("memory", F.normalize(torch.randn(size, dim), dim=1))

    @property
    def size(self) -> int:
        return self.memory.shape[0]

    def rows(self, indices: Tensor) -> Tensor:
        """A copy of the rows ``indices`` (``update`` may run before the loss's backward)."""
        return self.memory[indices]

    @torch.no_grad()
    def update(self, indices: Tensor, values: Tensor) -> None:
        indices = gather_no_grad(indices.to(self.memory.device))
        values = F.normalize(gather_no_grad(values.detach()).to(self.memory.dtype), dim=1)
        mixed = self.momentum * self.memory[indices] + (1.0 - self.momentum) * values
        self.memory[indices] = F.normalize(mixed, dim=1)


@dataclass
class PIRLOptions(MethodOptions):
    """Options shared by PIRL-Jigsaw and PIRL-Rotation (defaults: PIRL's paper unless noted)."""

    # PIRL: 32000 of ImageNet's 1.28M images
    num_negatives: int = option(4096, "negatives drawn from the bank per step (at most the "
                                "training images)", rule=at_least(1))
    lam: float = option(0.5, "PIRL's lambda: the weight of the transformed term (1 - lam on "
                        "the plain one)", rule=within(0, 1, "[]"))
    temperature: float = option(0.07, "the NCE temperature", rule=positive())
    memory_momentum: float = option(0.5, "the bank rows' moving average: m_I <- momentum m_I + "
                                    "(1 - momentum) f(v_I)", rule=within(0, 1, "[)"))


class PIRLBase(Method):
    """PIRL's objective; subclasses say how a view is transformed and embedded (``g``)."""

    def __init__(self, ctx: MethodContext, options: PIRLOptions) -> None:
        super().__init__(ctx, options)
        self.head_f = nn.Linear(ctx.backbone.out_dim, ctx.proj_dim)  # PIRL: a linear projection
        self.bank = MemoryBank(ctx.num_train_images, ctx.proj_dim, options.memory_momentum)

    def transformed_embedding(self, view: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``g(t(v))``: transform the batch (batched, random draws from ``generator``) and embed it."""
        raise NotImplementedError

    def negative_rows(self, count: int, device: torch.device,
                      generator: torch.Generator | None) -> Tensor:
        """``count`` bank rows drawn uniformly (with replacement), shared by the batch."""
        if generator is not None:
            device = generator.device
        return torch.randint(0, self.bank.size, (count,), generator=generator, device=device)

    def forward(
        self,
        views: list[Tensor],
        labels: Tensor | None = None,
        indices: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """PIRL needs what ``Method.forward`` offers beyond the views: each image's bank row
        (``indices``) and the step's generator, so it overrides ``forward`` itself."""
        if indices is None:
            raise ValueError(f"method '{self.name}' needs each image's dataset index (its bank row)")
        o = self.options
        view, transformed_view = views
        indices = indices.to(self.bank.memory.device).long()
        y = self.backbone(view)
        f = self.head_f(y)
        g = self.transformed_embedding(transformed_view, generator)
        positives = self.bank.rows(indices)  # m_I, as it was before this batch
        drawn = self.negative_rows(min(o.num_negatives, self.bank.size), view.device, generator)
        drawn = drawn.to(indices.device)
        negatives = self.bank.rows(drawn)
        own = indices.view(-1, 1) == drawn.view(1, -1)  # an image is never its own negative
        loss_t = info_nce(g, positives, negatives, o.temperature, own)
        loss_f = info_nce(f, positives, negatives, o.temperature, own)
        loss = o.lam * loss_t + (1.0 - o.lam) * loss_f
        self.bank.update(indices, f)
        logs = {"nce_transformed": loss_t.detach(), "nce_plain": loss_f.detach()}
        return StepOutput(loss=loss, features=y.detach(), projections=f.detach(), logs=logs)
