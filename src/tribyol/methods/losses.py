"""The methods' losses, once each. All compute in fp32 (fp64 under ``train.precision=64-true``)
and return the batch mean.

- ``normalized_mse``: BYOL's ``2 - 2 cos(q, z)`` (BYOL, TriBYOL, Cross);
- ``negative_cosine``: SimSiam's ``-cos(p, sg z)``;
- ``nt_xent``: SimCLR's contrastive loss over the two views' projections; the method passes an
  all-gather for DDP (``simclr.gather_with_grad``), the loss itself knows nothing of ranks;
- ``info_nce``: PIRL's softmax NCE of a query against a positive and memory-bank negatives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def wide(x: Tensor) -> Tensor:
    """``x`` in fp32, or as it is when it is already fp32 or wider (fp64 numerical checks)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def normalized_mse(q: Tensor, z: Tensor) -> Tensor:
    """BYOL's loss ``||q/|q| - z/|z|||^2 = 2 - 2 cos(q, z)``, batch mean, normalised in fp32."""
    q = F.normalize(wide(q), dim=-1)
    z = F.normalize(wide(z), dim=-1)
    return (2.0 - 2.0 * (q * z).sum(dim=-1)).mean()


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's ``D(p, z) = -cos(p, sg(z))``, batch mean, in fp32; ``z`` takes no gradient."""
    return -F.cosine_similarity(wide(p), wide(z.detach()), dim=-1).mean()


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    gather: Callable[[Tensor], Tensor] | None = None,
    rank: int = 0,
) -> Tensor:
    """SimCLR's NT-Xent: ``l_i = -log exp(s_ip / t) / sum_{k != i} exp(s_ik / t)``, cosine ``s``,
    averaged over the 2B anchors (both views of the B images); fp32.

    Anchor i's positive is the other view of its image; every other projection is a negative.
    ``gather`` (None: this batch only) maps a ``[B, D]`` tensor of normalised projections to
    the ``[world * B, D]`` tensor of every rank's, in rank order; ``rank`` says which slice is
    this batch's. The anchors are this rank's projections, the keys the gathered ones.
    """
    b = z1.shape[0]
    a1 = F.normalize(wide(z1), dim=1)
    a2 = F.normalize(wide(z2), dim=1)
    k1, k2 = (gather(a1), gather(a2)) if gather is not None else (a1, a2)
    n = k1.shape[0]  # global batch = world * b
    keys = torch.cat([k1, k2])  # [2n, d]: all first views, then all second views
    anchors = torch.cat([a1, a2])  # [2b, d]
    logits = anchors @ keys.T / temperature
    own = rank * b + torch.arange(b, device=z1.device)
    self_idx = torch.cat([own, own + n])  # where each anchor sits among the keys
    pos_idx = torch.cat([own + n, own])  # the other view of the same image
    rows = torch.arange(2 * b, device=z1.device)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[rows, self_idx] = True
    logits = logits.masked_fill(is_self, float("-inf"))  # an anchor is never its own negative
    return F.cross_entropy(logits, pos_idx)


def info_nce(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor,
    temperature: float,
    exclude: Tensor | None = None,
) -> Tensor:
    """``-log exp(s(q, p)/t) / (exp(s(q, p)/t) + sum_n exp(s(q, n)/t))``, batch mean, fp32.

    ``s`` is cosine similarity; ``positive`` ``[B, D]`` and ``negatives`` ``[K, D]`` (shared by
    the batch) take no gradient. ``exclude`` ``[B, K]`` drops negative k for query b (e.g. the
    image's own bank row drawn as a negative). This is the softmax form of NCE (as in MoCo);
    PIRL's paper writes the binary NCE form with a noise prior N/|D|.
    """
    q = F.normalize(wide(query), dim=1)
    p = F.normalize(wide(positive.detach()), dim=1)
    n = F.normalize(wide(negatives.detach()), dim=1)
    pos = (q * p).sum(dim=1, keepdim=True)  # [B, 1]
    neg = q @ n.T  # [B, K]
    if exclude is not None:
        neg = neg.masked_fill(exclude, float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def labelled_cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and top-1 over the labelled images only (label -1: unlabelled), as a
    masked mean: boolean indexing would need a host sync (``known.any()``) every step. With no
    labelled image both are 0 and the loss keeps its graph (every rank runs the same backward)."""
    known = (labels >= 0).float()
    count = known.sum().clamp(min=1.0)
    per_sample = F.cross_entropy(wide(logits), labels.clamp(min=0), reduction="none")
    hits = (logits.argmax(1) == labels).float()
    return (per_sample * known).sum() / count, (hits * known).sum() / count
