"""Weighted kNN classification on cosine similarity (Wu et al. 2018, "instance discrimination").

Each of the ``k`` nearest training features votes for its class with weight exp(sim / T). With
T = 0.07 and k = 200 this is the protocol most self-supervised papers report as "kNN accuracy".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tribyol.eval.options import KnnOptions


@torch.no_grad()
def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    k: int = KnnOptions.k,
    temperature: float = KnnOptions.temperature,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Predicted labels of ``test_x``; queries are processed in chunks to bound memory."""
    keep = train_y >= 0
    bank = F.normalize(train_x[keep].float(), dim=1)
    bank_y = train_y[keep].long().to(bank.device)
    if num_classes is None:
        num_classes = int(bank_y.max().item()) + 1
    k = min(k, len(bank))
    preds = []
    for start in range(0, len(test_x), chunk_size):
        q = F.normalize(test_x[start : start + chunk_size].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=bank.device)
        votes.scatter_add_(1, bank_y[idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    k: int = KnnOptions.k,
    temperature: float = KnnOptions.temperature,
) -> float:
    """Top-1 (percent) of weighted kNN; labels < 0 in ``test_y`` are ignored."""
    known = test_y >= 0
    if not known.any():
        return float("nan")
    num_classes = int(max(train_y.max().item(), test_y.max().item())) + 1
    pred = knn_predict(train_x, train_y, test_x[known], k, temperature, num_classes)
    return 100.0 * (pred.cpu() == test_y[known].cpu()).float().mean().item()
