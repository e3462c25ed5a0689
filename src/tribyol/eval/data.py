"""The data an evaluation scores: train and test image sets, which of their items to use, and
how the test set was drawn (its own split, a carve of train, or a validation carve).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tribyol.config.fields import option_name, option_value
from tribyol.data import DatasetNotFoundError, get_spec, load_split
from tribyol.data.sampling import (
    carve_from_train,
    carve_names,
    label_subset,
    names_digest,
    stratified_sample,
)
from tribyol.errors import ConfigError
from tribyol.eval.options import MIN_TEST_IMAGES


@dataclass
class EvalData:
    """Train and test image sets plus which of their items to use."""

    name: str  # label for tables and cache keys
    train: Any
    test: Any
    train_indices: Tensor
    test_indices: Tensor
    num_classes: int
    test_split: str  # "test", or how test (or the validation carve scored instead) was carved
    carve: tuple[float, int] | None = None  # (fraction, split seed) of a test set carved from train
    validation: float | None = None  # scored on a validation carve of this fraction, not on test

    @property
    def train_labels(self) -> Tensor:
        return self.train.labels.cpu()[self.train_indices]


def labels_of(dataset: Any) -> Tensor:
    """A dataset's labels as a CPU long tensor (-1: unlabelled, or a corrupt file left out)."""
    return torch.as_tensor(dataset.labels).long().cpu()


def with_train_classes(train: Any, test: Any, name: str) -> Any:
    """``test`` labelled by the names of ``train``'s classes. Folder splits number only the
    class folders they hold, so by position a test split with a class folder missing, empty or
    extra would be scored against the wrong classes; a test class train lacks is refused."""
    own = [str(c) for c in getattr(test, "classes", None) or ()]
    classes = [str(c) for c in getattr(train, "classes", None) or ()]
    if not own or not classes or own == classes:
        return test
    unknown = [c for c in own if c not in classes]
    if unknown:
        raise ConfigError(
            f"{name}: the test split has classes that train has no images of: "
            f"{', '.join(unknown)} (train has {', '.join(classes)}); a probe trained on train "
            "cannot predict them: add their images to train/, or remove them from test/"
        )
    return test.with_classes(classes)


def load_eval_data(
    name: str,
    root: str | Path,
    *,
    image_size: int,
    channels: int,
    test_from_train: float | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    download: bool = False,
    label: str | None = None,
    carve_only_without_test: bool = False,
    validation_from_train: float | None = None,
) -> EvalData:
    """Labelled train and test sets of ``name``.

    ``test_from_train`` (a fraction) carves a seeded, stratified test set out of train, for
    datasets without a test split (e.g. a folder without ``test/``); the carved images never
    enter training. With ``carve_only_without_test`` (transfer over many targets) it is used
    only when the test split is missing. ``limit_*`` take seeded, stratified subsets (by count)
    for quick runs; a limit below the number of classes is refused (each class keeps an image).
    ``split_seed`` seeds the test images (the carve and ``limit_test``), ``seed`` the training
    pool's ``limit_train``: evaluations repeated over seeds score the same test set.
    Folder images are decoded at ``image_size`` with ``channels`` (the encoder's); a corrupt
    one is left out of the features (labelled -1, logged), never replaced by another image.
    Test labels follow train's class names (``with_train_classes``).
    ``validation_from_train`` (with ``test_from_train``) scores a validation carve instead of
    the test carve: that fraction of train, drawn outside the test carve
    (``data.sampling.validation_carve``); the test images are then in neither set, so a setting
    chosen on these scores never saw them.
    """
    if validation_from_train and not test_from_train:
        raise ConfigError(
            f"{option_value('--validation-from-train', validation_from_train)} is drawn outside "
            f"the test carve; pass {option_value('--test-from-train', 0.2)} with it")
    options = {"image_size": image_size, "channels": channels, "bad_images": "drop"}
    train = load_split(name, root, "train", download=download, **options)
    train_idx = (labels_of(train) >= 0).nonzero().flatten()
    test = None
    if not test_from_train or carve_only_without_test:
        test = _read_test(name, root, download, options, required=not test_from_train)
    if test is None:
        assert test_from_train
        train_idx, test_idx, test_split = _carve(train, train_idx, test_from_train, split_seed,
                                                 validation_from_train)
        test = train
    else:
        test = with_train_classes(train, test, name)
        test_idx = (labels_of(test) >= 0).nonzero().flatten()
        test_split = _test_split_name(test)
    train_idx = _limit(train, train_idx, limit_train, "--limit-train", seed, name)
    test_idx = _limit(test, test_idx, limit_test, "--limit-test", split_seed, name)
    if label is None:
        label = f"folder:{Path(root).resolve().name}" if name == "folder" else name
    carve = (float(test_from_train), split_seed) if test is train else None
    validation = float(validation_from_train) if test is train and validation_from_train else None
    return EvalData(label, train, test, train_idx, test_idx, _num_classes(name, train),
                    test_split, carve, validation)


def _read_test(name: str, root: str | Path, download: bool, options: dict[str, Any],
               required: bool) -> Any:
    """The test split of ``name``; None where it is missing and not ``required`` (a carve of
    train takes its place)."""
    try:
        return load_split(name, root, "test", download=download, **options)
    except DatasetNotFoundError as err:
        if required:
            raise DatasetNotFoundError(
                f"{err}. With no test split, pass {option_value('--test-from-train', 0.2)} "
                "to hold out a "
                "seeded, stratified 20% of train as the test set."
            ) from None
    return None


def _carve(train: Any, train_idx: Tensor, test_from_train: float, split_seed: int,
           validation_from_train: float | None) -> tuple[Tensor, Tensor, str]:
    """``(train indices, scored indices, test_split)`` of a test carve of train, or of the
    validation carve outside it (``data.sampling.carve_from_train``)."""
    try:
        rest, scored = carve_from_train(labels_of(train)[train_idx], test_from_train, split_seed,
                                        validation_from_train)
    except ValueError as err:
        if not validation_from_train:
            raise
        raise ConfigError(f"--test-from-train {test_from_train:g} --validation-from-train "
                          f"{validation_from_train:g}: {err}; choose smaller fractions") from None
    train_idx, test_idx = train_idx[rest], train_idx[scored]
    if not validation_from_train:
        return train_idx, test_idx, (f"carved {test_from_train:g} of train "
                                     f"(split seed {split_seed})")
    return train_idx, test_idx, (
        f"validation {validation_from_train:g} of train outside the test carve "
        f"{test_from_train:g} (split seed {split_seed}{carve_digest(train, test_idx)})")


def _test_split_name(test: Any) -> str:
    """``"test"``; for a preset's own seeded split (ucmerced), also which one."""
    split = (getattr(test, "info", None) or {}).get("split")
    if split:
        return f"test (split seed {split.get('seed')}, sha256 {str(split.get('sha256'))[:12]})"
    return "test"


def _limit(images: Any, idx: Tensor, limit: int | None, option: str, seed: int,
           name: str) -> Tensor:
    """``idx`` cut to a seeded, stratified ``limit`` (``--limit-train`` / ``--limit-test``);
    a limit below the number of classes is refused: each class keeps an image."""
    if limit is None or limit >= len(idx):
        return idx
    classes = len(labels_of(images)[idx].unique())
    if limit < classes:
        raise ConfigError(
            f"{option_value(option, limit)} is fewer than the {classes} classes of {name}; a "
            f"stratified subset keeps at least one image per class: pass "
            f"{option_value(option, classes)} or more"
        )
    return idx[stratified_sample(labels_of(images)[idx], int(limit), seed)]


def _num_classes(name: str, train: Any) -> int:
    return get_spec(name).num_classes or len(getattr(train, "classes", ())) or int(labels_of(train).max()) + 1


def carve_digest(dataset: Any, indices: Tensor) -> str:
    """``", sha256 <12 hex>"`` of the carve's file names (class/name, sorted) for a folder, so
    a record names the very images it was scored on; ``""`` for an in-memory dataset."""
    if getattr(dataset, "samples", None) is None:
        return ""
    return f", sha256 {names_digest(carve_names(dataset, indices))[:12]}"


def cache_name(data: EvalData, root: str | Path) -> str:
    """Dataset identity for the feature cache: folders (and presets over a user's folder, such
    as ucmerced) also by their path, so two folders never share cached features."""
    by_path = data.name.startswith("folder") or getattr(data.train, "info", None)
    return f"{data.name}@{Path(root).resolve()}" if by_path else data.name


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
