"""Seeded, class-stratified index samples (shared by ``data.limit`` and the evaluation splits).

A sample is a pure function of (labels, amount, seed), so two runs with the same seed see
exactly the same images whatever order the dataset lists them in.
"""

from __future__ import annotations

import math
from typing import Any

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


def limit_indices(labels: Tensor, limit: int, seed: int) -> Tensor:
    """Sorted indices of exactly ``min(limit, len(labels))`` items: seeded, class-stratified.

    Unlike ``stratified_sample``, unlabelled items (label < 0) are kept as one more stratum, so
    a partly labelled set (STL-10's train+unlabeled) keeps its mix and an unlabelled one gets a
    seeded random sample. No class minimum: the count stays exact even below one per class.
    """
    labels = torch.as_tensor(labels).long().cpu()
    strata = labels.clamp(min=-1) + 1  # -1 (unlabelled) -> stratum 0, class c -> c + 1
    return stratified_sample(strata, min(int(limit), len(labels)), seed, min_per_class=0)


def limit_dataset(dataset: Any, limit: int | None, seed: int) -> Any:
    """``dataset`` cut to ``limit`` items by ``limit_indices``; unchanged when it has no more.

    ``dataset`` needs ``labels`` and ``subset(indices)`` (``TensorImages``, ``FolderImages``).
    """
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.subset(limit_indices(dataset.labels, limit, seed))


# The file a pre-training subset folder records what it was drawn for (``pretrain_subset``).
SUBSET_MANIFEST = "subset.json"


def validation_carve(labels: Tensor, test: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Sorted indices of the validation carve: a seeded, class-stratified ``fraction`` of all
    labelled items of ``labels`` (rounded), drawn only from outside ``test`` (the test carve's
    indices), so settings chosen on it never looked at a test image.

    ``tribyol eval --validation-from-train fraction`` scores on it; with the test carve of the
    same ``--split-seed`` it is a pure function of (labels, fractions, seed)."""
    labels = torch.as_tensor(labels).long().cpu().clone()
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    total = round(float(fraction) * int((labels >= 0).sum()))
    labels[torch.as_tensor(test, dtype=torch.long)] = -1  # never picked
    if total > int((labels >= 0).sum()):
        raise ValueError(f"a validation carve of {total} items does not fit in the "
                         f"{int((labels >= 0).sum())} outside the test carve")
    return stratified_sample(labels, total, seed)


def outside_carve(labels: Tensor, per_class: int, test_fraction: float, seed: int = 0,
                  validation_fraction: float | None = None) -> Tensor:
    """Sorted indices of up to ``per_class`` items per class, taken in index order from outside
    the test split that ``tribyol eval --test-from-train test_fraction --split-seed seed``
    carves from ``labels`` (and outside its ``validation_carve`` of ``validation_fraction``,
    when given): the images of a pre-training subset (``eval.splits.pretrain_subset``).

    A pure function of (labels, per_class, test_fraction, seed, validation_fraction), so
    evaluation can redraw the subset to count which of its images a different carve would score.
    """
    labels = torch.as_tensor(labels).long().cpu()
    outside = torch.ones(len(labels), dtype=torch.bool)
    test = stratified_sample(labels, float(test_fraction), seed)  # eval's carve
    outside[test] = False
    if validation_fraction:
        outside[validation_carve(labels, test, float(validation_fraction), seed)] = False
    taken: dict[int, int] = {}
    picked = []
    for i in outside.nonzero().flatten().tolist():
        label = int(labels[i])
        if label >= 0 and taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            picked.append(i)
    return torch.tensor(picked, dtype=torch.long)
