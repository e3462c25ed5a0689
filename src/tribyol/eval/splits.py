"""Seeded, stratified index splits: validation carve-outs, label-fraction subsets, test carves.

Every split here is a pure function of (labels, amount, seed), so two methods evaluated with
the same seed see exactly the same images. Label-fraction subsets are also written to index
files, which pin the images even if the sampling code changes later.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor


def _quotas(counts: list[int], total: int, min_per_class: int) -> list[int]:
    """Per-class quotas summing to ``total`` in proportion to ``counts`` (largest remainder)."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    quota = [math.floor(e) for e in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: total - sum(quota)]:
        quota[i] += 1
    # A class that would get nothing still gets min_per_class (capped by its size).
    return [min(c, max(q, min_per_class if c > 0 else 0)) for q, c in zip(quota, counts, strict=True)]


def stratified_sample(
    labels: Tensor, amount: float | int, seed: int = 0, min_per_class: int = 1
) -> Tensor:
    """Sorted indices of a seeded, class-stratified sample of ``labels``.

    ``amount``: a float is a fraction in (0, 1] of all labelled items, an int a count.
    Items with label < 0 (unlabelled) are never picked. Each class gets its share by the
    largest-remainder rule, so the total is exact and every class gets at least
    ``min_per_class`` items when it has them.
    """
    labels = torch.as_tensor(labels).long().cpu()
    known = (labels >= 0).nonzero().flatten()
    classes = labels[known].unique().tolist()
    members = [known[labels[known] == c] for c in classes]
    counts = [len(m) for m in members]
    n = sum(counts)
    if isinstance(amount, float):
        if not 0 < amount <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {amount}")
        total = round(float(amount) * n)
    else:
        total = min(int(amount), n)
    g = torch.Generator().manual_seed(seed)
    picked = []
    for idx, q in zip(members, _quotas(counts, total, min_per_class), strict=True):
        picked.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    if not picked:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(picked).sort().values


def stratified_split(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(rest, held)``: a seeded stratified ``fraction`` held out, the rest kept (sorted)."""
    labels = torch.as_tensor(labels).long().cpu()
    held = stratified_sample(labels, fraction, seed)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().flatten(), held


def label_subset(
    labels: Tensor, fraction: float, seed: int, index_file: str | Path | None = None
) -> Tensor:
    """Indices of a label-fraction subset, read from / written to ``index_file`` (JSON).

    When the file exists it is the source of truth (so every method is fine-tuned on the very
    same images); it is checked against the dataset size and the fraction it was made for.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if index_file is not None and Path(index_file).exists():
        saved = json.loads(Path(index_file).read_text())
        if saved["num_items"] != len(labels) or saved["fraction"] != fraction:
            raise ValueError(
                f"{index_file} was made for {saved['num_items']} images at fraction "
                f"{saved['fraction']}, not {len(labels)} at {fraction}; delete it or pass "
                "another --splits-dir"
            )
        return torch.tensor(saved["indices"], dtype=torch.long)
    indices = stratified_sample(labels, fraction, seed) if fraction < 1 else (labels >= 0).nonzero().flatten()
    if index_file is not None:
        path = Path(index_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"num_items": len(labels), "fraction": fraction, "seed": seed,
                  "indices": indices.tolist()}
        path.write_text(json.dumps(record))
    return indices
