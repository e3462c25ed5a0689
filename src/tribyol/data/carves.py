"""Folders and records of eval's carves: a pre-training subset linked from outside them
(``pretrain_subset``, with its ``subset.json``) and the manifest of a validation carve
(``validation_manifest``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tribyol.data.registry import load_split
from tribyol.data.sampling import carve_from_train, carve_names, names_digest, outside_carve

# The file a pre-training subset folder records what it was drawn for (``pretrain_subset``).
SUBSET_MANIFEST = "subset.json"


def pretrain_subset(root: Path, sub: Path, per_class: int, test_fraction: float = 0.2,
                    seed: int = 0, validation_fraction: float | None = None) -> list[Path]:
    """Link up to ``per_class`` images per class of ``root/train`` into ``sub/train``, taken only
    outside the test split that ``tribyol eval --test-from-train test_fraction --split-seed
    seed`` carves (``data.sampling.outside_carve``), so pre-training on ``sub`` never sees a test
    image, even unlabelled (nor, with ``validation_fraction``, an image of the validation
    carve ``--validation-from-train`` scores); ``sub/subset.json`` records the carve, and runs
    pre-trained on ``sub`` carry it in their metadata, so ``tribyol eval`` refuses any other
    carve that would score images pre-training saw.

    The links are made in ``sub.partial`` and renamed to ``sub`` at the end: an interrupted call
    leaves no half subset. A leftover ``sub.partial`` is removed only if it holds nothing but
    folders and symlinks (what this function writes); an existing ``sub`` is refused.
    """
    sub = Path(sub)
    if sub.exists():
        raise FileExistsError(f"{sub} already exists; remove it or pick another subset folder")
    tmp = sub.with_name(sub.name + ".partial")
    if tmp.exists():
        foreign = [p for p in tmp.rglob("*")
                   if not (p.is_symlink() or p.is_dir() or p.name == SUBSET_MANIFEST)]
        if foreign or tmp.is_symlink():
            raise FileExistsError(f"{tmp} holds files this function did not write ({foreign[:3]}); "
                                  "move it away")
        shutil.rmtree(tmp)
    train = load_split("folder", root, "train", image_size=32, channels=None)
    written = []
    picked = outside_carve(train.labels, per_class, test_fraction, seed, validation_fraction)
    for i in picked.tolist():  # outside eval's carves
        path, label = train.samples[i]
        dest = tmp / "train" / train.classes[label] / Path(path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(Path(path).resolve())
        written.append(sub / dest.relative_to(tmp))
    # What it was drawn for, so a later use with another carve is refused, not trusted.
    made = {"per_class": per_class, "test_fraction": float(test_fraction), "seed": int(seed)}
    if validation_fraction:
        made["validation_fraction"] = float(validation_fraction)
    (tmp / SUBSET_MANIFEST).write_text(json.dumps(made))
    os.replace(tmp, sub)
    return written


def validation_manifest(root: Path, test_fraction: float, validation_fraction: float,
                        seed: int = 0) -> dict[str, Any]:
    """The validation carve ``tribyol eval --test-from-train test_fraction
    --validation-from-train validation_fraction --split-seed seed`` scores on the folder
    ``root``: its parameters, images per class and the sha256 of its sorted ``class/file``
    names (the digest whose first 12 digits end the records' ``test_split``)."""
    train = load_split("folder", root, "train", image_size=32, channels=None)
    labels = torch.as_tensor(train.labels).long().cpu()
    known = (labels >= 0).nonzero().flatten()  # as tribyol eval draws it
    _train, scored = carve_from_train(labels[known], test_fraction, seed, validation_fraction)
    val = known[scored]
    names = carve_names(train, val)
    return {"root": str(Path(root).resolve()), "test_from_train": float(test_fraction),
            "validation_from_train": float(validation_fraction), "split_seed": int(seed),
            "images": len(names),
            "per_class": {str(train.classes[c]): int((labels[val] == c).sum())
                          for c in labels[val].unique().tolist()},
            "sha256": names_digest(names),
            "drawn": "a seeded, class-stratified fraction of all train images, taken only "
                     "outside the test carve"}
