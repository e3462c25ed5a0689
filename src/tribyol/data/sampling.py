"""Seeded, class-stratified index samples and splits: ``data.limit``, eval's test and
validation carves, label-fraction subsets, the images a pre-training subset may take, and the
duplicate-aware split of a folder.

Every sample is a pure function of (labels, amount, seed), so two runs with the same seed see
exactly the same images whatever order the dataset lists them in. Label-fraction subsets are
also written to index files, which pin the images even if the sampling code changes later.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tribyol.config.fields import option_name
from tribyol.errors import ConfigError


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


def stratified_split(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(rest, held)``: a seeded stratified ``fraction`` held out, the rest kept (sorted)."""
    labels = torch.as_tensor(labels).long().cpu()
    held = stratified_sample(labels, fraction, seed)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().flatten(), held


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


def carve_from_train(labels: Tensor, test_fraction: float, seed: int = 0,
                     validation_fraction: float | None = None) -> tuple[Tensor, Tensor]:
    """``(train, scored)`` sorted positions in ``labels``: the test carve ``tribyol eval
    --test-from-train test_fraction --split-seed seed`` holds out, and the rest, which trains
    the probe; with ``validation_fraction``, ``scored`` is the validation carve instead, and the
    test carve is in neither."""
    rest, held = stratified_split(labels, test_fraction, seed)
    if not validation_fraction:
        return rest, held
    val = validation_carve(labels, held, validation_fraction, seed)
    pool = torch.ones(len(labels), dtype=torch.bool)
    pool[held] = False  # neither the test carve ...
    pool[val] = False  # ... nor the validation images train the probe
    return pool.nonzero().flatten(), val


def outside_carve(labels: Tensor, per_class: int, test_fraction: float, seed: int = 0,
                  validation_fraction: float | None = None) -> Tensor:
    """Sorted indices of up to ``per_class`` items per class, taken in index order from outside
    the test split that ``tribyol eval --test-from-train test_fraction --split-seed seed``
    carves from ``labels`` (and outside its ``validation_carve`` of ``validation_fraction``,
    when given): the images of a pre-training subset (``data.carves.pretrain_subset``).

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


def label_subset(
    labels: Tensor, fraction: float, seed: int, index_file: str | Path | None = None
) -> Tensor:
    """Indices of a label-fraction subset, read from / written to ``index_file`` (JSON).

    When the file exists it is the source of truth (so every method is fine-tuned on the very
    same images); it is checked against the dataset size and the fraction it was made for.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if index_file is not None and Path(index_file).exists():
        try:
            saved = json.loads(Path(index_file).read_text())
            indices = torch.tensor(saved["indices"], dtype=torch.long)
            made_for = (saved["num_items"], saved["fraction"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{index_file} is not a label-subset file ({err}); delete it or "
                              f"pass another {option_name('--splits-dir')}") from None
        if made_for != (len(labels), fraction):
            raise ConfigError(
                f"{index_file} was made for {made_for[0]} images at fraction {made_for[1]}, not "
                f"{len(labels)} at {fraction}; delete it or pass another "
                f"{option_name('--splits-dir')}")
        # Only images of this training pool may be fine-tuned on: one outside it may be a
        # test image of another carve.
        outside = int(((indices < 0) | (indices >= len(labels))).sum()) if len(indices) else 0
        if not outside and len(indices):
            outside = int((labels[indices] < 0).sum())
        if outside:
            raise ConfigError(
                f"{index_file}: {outside} of its {len(indices)} images are outside this training "
                "pool (made for another test carve or limit; they may be test images here); "
                f"delete it or pass another {option_name('--splits-dir')}")
        return indices
    indices = stratified_sample(labels, fraction, seed) if fraction < 1 else (labels >= 0).nonzero().flatten()
    if index_file is not None:
        path = Path(index_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"num_items": len(labels), "fraction": fraction, "seed": seed,
                  "indices": indices.tolist()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # atomic: a parallel fine-tune reads a whole file or none
    return indices


def carve_names(dataset: Any, indices: Tensor) -> list[str]:
    """The sorted ``class/file`` names of a folder dataset's ``indices``: what a carve's digest
    is taken of (the same images under another root give the same digest)."""
    samples = dataset.samples
    return sorted(f"{Path(samples[i][0]).parent.name}/{Path(samples[i][0]).name}"
                  for i in torch.as_tensor(indices).tolist())


def names_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def class_generator(seed: int, class_name: str) -> np.random.Generator:
    """The generator that shuffles one class: a function of (seed, class name) only."""
    return np.random.default_rng([int(seed), zlib.crc32(class_name.encode())])


def _units(members: list[int], groups: Iterable[Iterable[int]]) -> list[list[int]]:
    """``members`` (sorted indices of one class) cut into units: each group whole, else single."""
    member_set = set(members)
    unit_of: dict[int, int] = {}
    units: list[list[int]] = []
    for group in groups:
        inside = sorted(i for i in group if i in member_set)
        if len(inside) < 2:
            continue
        known = {unit_of[i] for i in inside if i in unit_of}
        if known:  # overlapping groups merge
            target = min(known)
            for u in sorted(known - {target}):
                units[target] += units[u]
                for i in units[u]:
                    unit_of[i] = target
                units[u] = []
            inside = [i for i in inside if i not in unit_of]
        else:
            target = len(units)
            units.append([])
        units[target] += inside
        for i in inside:
            unit_of[i] = target
    units = [sorted(u) for u in units if u]
    units += [[i] for i in members if i not in unit_of]
    return sorted(units)  # by first index: independent of the groups' order


def stratified_group_split(
    names: Sequence[str],
    labels: Sequence[int],
    test_fraction: float = 0.2,
    seed: int = 0,
    groups: Iterable[Iterable[int]] = (),
    classes: Sequence[str] = (),
) -> tuple[list[int], list[int]]:
    """``(train, test)`` sorted indices: per class ``round(test_fraction * n)`` to test.

    ``names`` (e.g. relative paths) order each class before it is shuffled, so the split does
    not depend on the order items are listed in; ``labels`` are the classes; ``groups`` are
    index sets that must land on one side together (a group across classes is kept together in
    each class separately); ``classes`` name the labels (each class's generator is seeded from
    its name, else from its label). Items with label < 0 are left out of both sides.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} names but {len(labels)} labels")
    groups = [list(g) for g in groups]
    train: list[int] = []
    test: list[int] = []
    for label in sorted({int(x) for x in labels if int(x) >= 0}):
        members = sorted((i for i, x in enumerate(labels) if int(x) == label), key=lambda i: names[i])
        units = sorted(_units(members, groups), key=lambda u: names[u[0]])
        quota = math.floor(test_fraction * len(members) + 0.5)
        rng = class_generator(seed, classes[label] if label < len(classes) else str(label))
        taken = 0
        for k in rng.permutation(len(units)):
            unit = units[int(k)]
            if taken + len(unit) <= quota:
                test += unit
                taken += len(unit)
            else:
                train += unit
    return sorted(train), sorted(test)
