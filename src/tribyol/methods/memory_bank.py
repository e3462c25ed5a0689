"""PIRL's shared pieces: the InfoNCE invariance loss and a memory bank of negatives.

Why a FIFO queue and not PIRL's per-image bank: PIRL (Misra & van der Maaten 2020) keeps one
representation per training image, ``m_I <- 0.5 m_I + 0.5 f(v_I)``, which needs each batch's
dataset indices. The engine hands a method ``(views, labels)`` only, and threading indices
through every reader, loader and method for one baseline would change shared interfaces. So the
bank here is MoCo's (He et al. 2020): a FIFO queue of the most recent ``size`` keys, written by
a key network that follows the online network by EMA (``bank_momentum``). The EMA moves from
the bank's rows into the key network's weights, and the positive ``m_I`` is the key network's
representation of another view of the same image; both keep what PIRL's bank is for, a slowly
moving, cheap set of many negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tribyol.methods.base import Method, MethodContext, StepOutput, ema_update_, frozen_copy


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """``x`` from every rank, concatenated in rank order (no autograd); ``x`` when single-process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class MemoryBank(nn.Module):
    """A FIFO queue of ``size`` L2-normalised ``dim``-vectors, saved in checkpoints.

    Starts filled with random unit vectors (as MoCo does), so every step contrasts against a
    fixed number of negatives; real keys replace them within ``size / batch`` steps.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"memory bank size must be >= 1, got {size}")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    def negatives(self) -> Tensor:
        """A snapshot of the bank (a copy: ``push`` may run before the loss's backward)."""
        return self.queue.clone()

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Write ``keys`` (gathered from all ranks under DDP) over the oldest rows, wrapping."""
        keys = F.normalize(gather_no_grad(keys.detach()).to(self.queue.dtype), dim=1)
        if keys.shape[0] > self.size:  # more keys than rows: only the newest ones fit
            keys = keys[-self.size :]
        rows = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.size
        self.queue[rows] = keys
        self.ptr.copy_((self.ptr + keys.shape[0]) % self.size)


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """``-log exp(s(q, p)/t) / (exp(s(q, p)/t) + sum_n exp(s(q, n)/t))``, batch mean, fp32.

    ``s`` is cosine similarity; ``positive`` and ``negatives`` take no gradient (they come from
    the key network / the bank). This is the softmax form of the NCE loss that MoCo uses; PIRL's
    paper writes the binary NCE form with a noise prior N/|D|.
    """
    q = F.normalize(query.float(), dim=1)
    p = F.normalize(positive.detach().float(), dim=1)
    n = F.normalize(negatives.detach().float(), dim=1)
    pos = (q * p).sum(dim=1, keepdim=True)  # [B, 1]
    neg = q @ n.T  # [B, K]
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@dataclass
class PIRLOptions:
    """Options shared by PIRL-Jigsaw and PIRL-Rotation (defaults: PIRL's paper unless noted)."""

    bank_size: int = 4096  # negatives in the FIFO bank (PIRL: 32000 with ImageNet's 1.28M images)
    lam: float = 0.5  # PIRL's lambda: weight of the transformed term, 1 - lam on the plain one
    temperature: float = 0.07
    # EMA coefficient of the key network that writes the bank (MoCo's 0.999 is for 256-image
    # batches over long runs; 0.99 lets short, small-batch runs refresh the bank in time).
    bank_momentum: float = 0.99

    def __post_init__(self) -> None:
        if self.bank_size < 1:
            raise ValueError(f"bank_size must be >= 1, got {self.bank_size}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.bank_momentum <= 1.0:
            raise ValueError(f"bank_momentum must be in [0, 1], got {self.bank_momentum}")


class PIRLBase(Method):
    """PIRL's invariance objective; subclasses say how a view is transformed and embedded (g).

    With ``f`` = encoder -> linear head on a view v, ``g`` = the subclass's embedding of the
    transformed view t(v), and ``m`` = the key network's (EMA of encoder + f) embedding of a
    second view v' of the same image:
    ``L = lam * NCE(g(t(v)), m) + (1 - lam) * NCE(f(v), m)``, negatives from the bank; then
    ``m`` is pushed into the bank.
    """

    def __init__(self, ctx: MethodContext, options: PIRLOptions) -> None:
        super().__init__(ctx, options)
        self.head_f = nn.Linear(ctx.backbone.out_dim, ctx.proj_dim)  # PIRL: a linear projection
        self.online_f = nn.Sequential(self.backbone, self.head_f)
        self.key = frozen_copy(self.online_f)
        self.bank = MemoryBank(options.bank_size, ctx.proj_dim)

    def transformed_embedding(self, view: Tensor) -> Tensor:
        """``g(t(v))``: transform the batch (batched, no per-sample loop) and embed it."""
        raise NotImplementedError

    def forward_views(self, views: list[Tensor], labels: Tensor | None = None) -> StepOutput:
        o = self.options
        view, key_view = views
        y = self.backbone(view)
        f = self.head_f(y)
        g = self.transformed_embedding(view)
        with torch.no_grad():
            m = self.key(key_view)
        negatives = self.bank.negatives()
        loss_t = info_nce(g, m, negatives, o.temperature)
        loss_f = info_nce(f, m, negatives, o.temperature)
        loss = o.lam * loss_t + (1.0 - o.lam) * loss_f
        self.bank.push(m)
        logs = {"nce_transformed": loss_t.detach(), "nce_plain": loss_f.detach()}
        return StepOutput(loss=loss, features=y.detach(), projections=f.detach(), logs=logs)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        ema_update_(self.key, self.online_f, self.options.bank_momentum)
