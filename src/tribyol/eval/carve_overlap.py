"""A carved test set (``--test-from-train``) must hold no image its encoder was pre-trained on:
which of them it saw (``seen_in_pretraining``), and the refusal (``check_carve_unseen``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from tribyol.data import DatasetNotFoundError, get_spec, load_split
from tribyol.data.sampling import limit_indices, outside_carve
from tribyol.errors import ConfigError
from tribyol.eval.data import EvalData, labels_of
from tribyol.eval.sources import Source

log = logging.getLogger(__name__)


def seen_in_pretraining(src: Source, data: EvalData, name: str) -> tuple[int, str] | None:
    """``(n, what)``: how many of ``data``'s carved test images (``--test-from-train``) ``src``
    was pre-trained on, and which images those are; ``(0, "")`` without a carve or overlap;
    None where its metadata does not say which images it read (runs from before that record).

    Folders are compared by file (symlinks resolved): the images of the recorded pre-training
    root, cut to its ``data.limit`` as pre-training drew it; where that folder is gone, its
    subset manifest redrawn from this folder. An in-memory preset pre-trained on its train split
    is the same dataset here (with a ``data.limit`` drawn again, or all of it when none is known).
    """
    if data.carve is None or src.run_id.endswith("+random-init"):
        return 0, ""
    if getattr(data.train, "samples", None) is None:
        return _seen_in_memory(src, data, name)
    if src.info.dataset == "imagenet":
        return 0, ""
    found = _seen_in_pretraining_root(src, data)
    if found is None and src.info.pretrain_subset:
        return _seen_in_redrawn_subset(src, data)
    return found


def _seen_in_memory(src: Source, data: EvalData, name: str) -> tuple[int, str]:
    """An in-memory preset pre-trained on its train split: the same images here."""
    info = src.info
    if info.dataset != name:
        return 0, ""
    seen = torch.arange(len(data.train))
    if info.pretrain_limit and get_spec(name).pretrain_split == "train":
        seen = limit_indices(labels_of(data.train), info.pretrain_limit, info.pretrain_seed or 0)
    n = int(torch.isin(data.test_indices, seen).sum())
    return n, f"the {len(seen)} {name} train images"


def _seen_in_pretraining_root(src: Source, data: EvalData) -> tuple[int, str] | None:
    """The carve's files among those of the recorded pre-training root (cut to its
    ``data.limit``); None where that folder is gone or unreadable."""
    info = src.info
    root = Path(info.pretrain_root) if info.pretrain_root else None
    if root is None or not root.is_dir():
        return None
    try:
        pre = load_split(info.dataset or "folder", root, "pretrain")
    except (DatasetNotFoundError, KeyError, OSError):
        return None
    pre_samples = getattr(pre, "samples", None)
    if pre_samples is None:
        return None
    seen = range(len(pre_samples))
    if info.pretrain_limit:
        seen = limit_indices(pre.labels, info.pretrain_limit, info.pretrain_seed or 0).tolist()
    files = {os.path.realpath(pre_samples[i][0]) for i in seen}
    samples = data.train.samples
    test = {os.path.realpath(samples[i][0]) for i in data.test_indices.tolist()}
    return len(test & files), f"the {len(files)} images of {root}"


def _seen_in_redrawn_subset(src: Source, data: EvalData) -> tuple[int, str]:
    """The subset folder is gone: its manifest drawn again from this folder."""
    made = json.loads(src.info.pretrain_subset)
    seen = outside_carve(labels_of(data.train), int(made["per_class"]),
                         float(made["test_fraction"]), int(made["seed"]),
                         made.get("validation_fraction"))
    val = (f" and validation {made['validation_fraction']:g}"
           if made.get("validation_fraction") else "")
    return (int(torch.isin(data.test_indices, seen).sum()),
            f"its pre-training subset (redrawn here: {made['per_class']} per class outside "
            f"the carve {made['test_fraction']:g}{val}, split seed {made['seed']})")


def check_carve_unseen(src: Source, data: EvalData, name: str) -> None:
    """Refuse a carved test set that holds images ``src`` was pre-trained on (even unlabelled,
    they shaped its features): one ``ConfigError`` naming the count and the carve to use."""
    found = seen_in_pretraining(src, data, name)
    if found is None:
        log.warning("cannot check whether %s was pre-trained on the carved test images of %s: "
                    "its metadata predates the record of which images it read", src.run_id,
                    data.name)
        return
    n, what = found
    if not n or data.carve is None:
        return
    fraction, split_seed = data.carve
    subset = json.loads(src.info.pretrain_subset) if src.info.pretrain_subset else None
    if subset and data.validation and not subset.get("validation_fraction"):
        remedy = ("its pre-training subset was drawn outside the test carve only; pre-train on "
                  "one drawn outside the validation carve too (validation_fraction in "
                  "data.pretrain_subset of a grid)")
    elif subset:
        val = (f" --validation-from-train {subset['validation_fraction']:g}"
               if data.validation and subset.get("validation_fraction") else "")
        remedy = (f"pass --test-from-train {subset['test_fraction']:g} --split-seed "
                  f"{subset['seed']}{val}, the carve its pre-training subset was drawn outside")
    elif getattr(data.train, "samples", None) is None:
        remedy = f"drop --test-from-train to score on the test split of {name}"
    else:
        remedy = ("pre-train on a subset drawn outside the carve (tribyol.data.carves."
                  "pretrain_subset, or data.pretrain_subset in a grid), or evaluate on a folder "
                  "with its own test/")
    flags = f"--test-from-train {fraction:g} --split-seed {split_seed}"
    kind = "test"
    if data.validation:
        flags, kind = f"{flags} --validation-from-train {data.validation:g}", "validation"
    raise ConfigError(
        f"{flags}: {n} of the "
        f"{len(data.test_indices)} carved {kind} images of {data.name} are among {what}, which "
        f"{src.run_id} was pre-trained on, so its score would be on images it has seen; {remedy}")
