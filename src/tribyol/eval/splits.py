"""Seeded, stratified index splits: validation carve-outs, label-fraction subsets, test carves.

Every split here is a pure function of (labels, amount, seed), so two methods evaluated with
the same seed see exactly the same images. Label-fraction subsets are also written to index
files, which pin the images even if the sampling code changes later.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tribyol.config.fields import option_name
from tribyol.data import load_split
from tribyol.data.subsets import (
    SUBSET_MANIFEST,
    outside_carve,
    stratified_sample,
    validation_carve,
)
from tribyol.errors import ConfigError
from tribyol.eval.options import MIN_TEST_IMAGES

# Fewer test images than this are refused unless forced (``--force-small-test``): at 100 images
# one image moves top-1 by a whole point, already the size of the gaps between methods.


def check_test_size(num_test: int, dataset: str, force: bool = False,
                    minimum: int = MIN_TEST_IMAGES, left_out: int = 0) -> None:
    """Refuse a test set of fewer than ``minimum`` images (one line naming the count and the fix).

    ``num_test`` counts the images scored: checked once on the split, and again after the
    features, with the ``left_out`` corrupt (or unlabelled) files no longer counted.
    """
    if num_test >= minimum or force:
        return
    step = f"; one image moves top-1 by {100 / num_test:.2g} points" if num_test else ""
    dropped = (f" that can be scored ({left_out} more are corrupt or unlabelled and left out)"
               if left_out else "")
    raise ConfigError(
        f"the test set of {dataset} has only {num_test} labelled images{dropped}, fewer than "
        f"{minimum}{step}, too coarse to compare methods. Use more test images (a larger "
        f"{option_name('--limit-test')} or {option_name('--test-from-train')}), or pass "
        f"{option_name('--force-small-test')} to score it anyway."
    )


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


def subset_file(splits_dir: str | Path, data: Any, fraction: float, seed: int,
                pool: Tensor) -> Path:
    """Index file name: dataset, how test was carved, the pool (its size and a hash of its
    indices, so two carves or limits never share a file), fraction and seed."""
    carve = "test" if data.test_split == "test" else "carved"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in data.name)
    digest = hashlib.sha256(torch.as_tensor(pool).long().cpu().numpy().tobytes()).hexdigest()[:8]
    return (Path(splits_dir)
            / f"{safe}_{carve}_pool{len(pool)}-{digest}_frac{fraction:g}_seed{seed}.json")


def labelled_subset(data: Any, fraction: float, seed: int,
                    splits_dir: str | Path) -> tuple[Tensor, Path | None]:
    """The fine-tuning images of ``data`` (an ``EvalData``): its whole training pool for
    ``fraction`` 1, else a seeded, stratified ``fraction`` of the pool, kept in an index file
    under ``splits_dir`` so every encoder gets the same subset. Returns (indices, file or None).
    """
    if fraction >= 1:
        return data.train_indices, None
    # Items outside the training pool get label -1, so the subset is drawn from the pool only
    # and its indices refer to the dataset itself.
    labels = torch.full((len(data.train),), -1, dtype=torch.long)
    pool = data.train_indices
    labels[pool] = torch.as_tensor(data.train.labels).long().cpu()[pool]
    path = subset_file(splits_dir, data, fraction, seed, pool)
    return label_subset(labels, fraction, seed, path), path


def pretrain_subset(root: Path, sub: Path, per_class: int, test_fraction: float = 0.2,
                    seed: int = 0, validation_fraction: float | None = None) -> list[Path]:
    """Link up to ``per_class`` images per class of ``root/train`` into ``sub/train``, taken only
    outside the test split that ``tribyol eval --test-from-train test_fraction --split-seed
    seed`` carves (``data.subsets.outside_carve``), so pre-training on ``sub`` never sees a test
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
    train = load_split("folder", root, "train", image_size=32, channels=3)
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


def carve_names(dataset: Any, indices: Tensor) -> list[str]:
    """The sorted ``class/file`` names of a folder dataset's ``indices``: what a carve's digest
    is taken of (the same images under another root give the same digest)."""
    samples = dataset.samples
    return sorted(f"{Path(samples[i][0]).parent.name}/{Path(samples[i][0]).name}"
                  for i in torch.as_tensor(indices).tolist())


def names_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def validation_manifest(root: Path, test_fraction: float, validation_fraction: float,
                        seed: int = 0) -> dict[str, Any]:
    """The validation carve ``tribyol eval --test-from-train test_fraction
    --validation-from-train validation_fraction --split-seed seed`` scores on the folder
    ``root``: its parameters, images per class and the sha256 of its sorted ``class/file``
    names (the digest whose first 12 digits end the records' ``test_split``)."""
    train = load_split("folder", root, "train", image_size=32, channels=3)
    labels = torch.as_tensor(train.labels).long().cpu()
    known = (labels >= 0).nonzero().flatten()  # as tribyol eval draws it
    _rest, held = stratified_split(labels[known], test_fraction, seed)
    val = known[validation_carve(labels[known], held, validation_fraction, seed)]
    names = carve_names(train, val)
    return {"root": str(Path(root).resolve()), "test_from_train": float(test_fraction),
            "validation_from_train": float(validation_fraction), "split_seed": int(seed),
            "images": len(names),
            "per_class": {str(train.classes[c]): int((labels[val] == c).sum())
                          for c in labels[val].unique().tolist()},
            "sha256": names_digest(names),
            "drawn": "a seeded, class-stratified fraction of all train images, taken only "
                     "outside the test carve"}
