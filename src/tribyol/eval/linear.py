"""Linear evaluation on frozen features: a multinomial logistic regression fitted with L-BFGS.

Features are standardised with statistics of the training items only. The L2 penalty is chosen
from a grid on a seeded, stratified validation split carved from the training features (never
on the test set); the classifier is then refitted on all training features with that penalty
and scored once on the test set. Full-batch L-BFGS on a convex loss from a zero start is
deterministic and needs no learning rate or epoch count to tune.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tribyol.data.sampling import stratified_split
from tribyol.eval.options import LinearOptions

# L2 penalties tried (on the mean cross-entropy, weights only): 1e-6 is near unregularised,
# 1e-2 is strong for standardised features of a few hundred dimensions.


@dataclass
class LinearResult:
    top1: float  # test top-1 accuracy, percent
    val_top1: float | None  # validation top-1 of the chosen penalty, percent; None: no search
    weight_decay: float  # the chosen L2 penalty
    max_iter: int
    num_train: int  # training items used for the final fit (train + validation)
    num_val: int  # validation items that scored the penalties (0: no search)
    num_test: int
    val_scores: dict[str, float] = field(default_factory=dict)  # penalty -> val top-1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def val_text(self) -> str:
        """How the penalty was chosen, for one-line reports (never ``val nan%``)."""
        return "no val split" if self.val_top1 is None else f"val {self.val_top1:.2f}%"


def standardize(train: Tensor, *others: Tensor, eps: float = 1e-6) -> list[Tensor]:
    """Zero-mean, unit-variance per dimension, with ``train``'s statistics for all."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp_min(eps) if len(train) > 1 else torch.ones_like(mean)
    return [(x - mean) / std for x in (train, *others)]


def fit_linear(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int = LinearOptions.max_iter
) -> tuple[Tensor, Tensor]:
    """Weights ``[D, K]`` and bias ``[K]`` minimising mean CE + wd/2 * ||W||^2 (L-BFGS)."""
    x, y = x.float(), y.long()
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-6, tolerance_change=1e-9,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    # Confident fits underflow softmax terms into subnormal floats, which run ~10x slower on
    # x86; flushing them to zero changes nothing measurable. torch's default (off) is restored.
    torch.set_flush_denormal(True)
    try:
        with torch.enable_grad():
            opt.step(closure)
    finally:
        torch.set_flush_denormal(False)
    return w.detach(), b.detach()


def accuracy(x: Tensor, y: Tensor, w: Tensor, b: Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return 100.0 * ((x.float() @ w + b).argmax(1) == y).float().mean().item()


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    val_fraction: float = LinearOptions.val_fraction,
    seed: int = 0,
    weight_decays: Sequence[float] = LinearOptions.weight_decays,
    max_iter: int = LinearOptions.max_iter,
    num_classes: int | None = None,
) -> LinearResult:
    """Top-1 of a linear classifier on frozen features, penalty picked on a validation split.

    ``val_fraction`` of the (labelled) training items, stratified by class and seeded by
    ``seed``, score each penalty in ``weight_decays``; the best is refitted on all training
    items and scored on the test items. Items labelled < 0 are ignored. With
    ``val_fraction`` 0 (or a one-value grid) nothing is searched: the first penalty is used and
    ``val_top1`` is None.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not weight_decays:
        raise ValueError("weight_decays is empty")
    train_x, test_x = train_x.float().cpu(), test_x.float().cpu()
    train_y, test_y = train_y.long().cpu(), test_y.long().cpu()
    keep = train_y >= 0
    train_x, train_y = train_x[keep], train_y[keep]
    if len(train_y) == 0:
        raise ValueError("no labelled training features for the linear probe")
    if num_classes is None:
        num_classes = int(max(train_y.max().item(), test_y.max().item() if len(test_y) else 0)) + 1
    if val_fraction > 0:
        fit_idx, val_idx = stratified_split(train_y, val_fraction, seed)
    else:
        fit_idx, val_idx = torch.arange(len(train_y)), torch.zeros(0, dtype=torch.long)
    scores: dict[str, float] = {}
    best_wd, best = weight_decays[0], -1.0
    if len(val_idx) and len(fit_idx) and len(weight_decays) > 1:
        fx, vx = standardize(train_x[fit_idx], train_x[val_idx])
        for wd in weight_decays:
            w, b = fit_linear(fx, train_y[fit_idx], num_classes, wd, max_iter)
            scores[f"{wd:g}"] = acc = accuracy(vx, train_y[val_idx], w, b)
            if acc > best:  # ties keep the weaker penalty, which comes first in the grid
                best_wd, best = wd, acc
    tx, sx = standardize(train_x, test_x)
    w, b = fit_linear(tx, train_y, num_classes, best_wd, max_iter)
    return LinearResult(
        top1=accuracy(sx, test_y, w, b),
        val_top1=best if scores else None,
        weight_decay=best_wd,
        max_iter=max_iter,
        num_train=len(train_y),
        num_val=len(val_idx) if scores else 0,
        num_test=len(test_y),
        val_scores=scores,
    )
