"""What every protocol needs: the encoder of a source, the evaluation data, record fields."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tribyol.channels import channel_stats
from tribyol.checkpoints import EncoderInfo, load_encoder
from tribyol.config.fields import option_value
from tribyol.data import DatasetNotFoundError, get_spec, load_split
from tribyol.data.registry import IMAGENET_MEAN, IMAGENET_STD
from tribyol.data.subsets import limit_indices, outside_carve, validation_carve
from tribyol.errors import ConfigError
from tribyol.eval.splits import carve_names, names_digest, stratified_sample, stratified_split
from tribyol.methods.supervised import IMAGENET_WEIGHTS, find_imagenet_weights, load_imagenet_weights
from tribyol.store import config_id, saw_labels_of

log = logging.getLogger(__name__)


@dataclass
class Source:
    encoder: nn.Module
    meta: dict[str, str]  # the export metadata as written (``info`` is it typed)
    run_id: str
    path: Path

    @cached_property
    def info(self) -> EncoderInfo:
        return EncoderInfo.from_metadata(self.meta, str(self.path))

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @property
    def in_channels(self) -> int:
        return self.info.in_channels

    @property
    def mean(self) -> tuple[float, ...]:
        """Per input channel (metadata with one value for an RGB encoder is repeated)."""
        return channel_stats(self.info.mean, self.in_channels)

    @property
    def std(self) -> tuple[float, ...]:
        return channel_stats(self.info.std, self.in_channels)


def run_id_of(path: Path) -> str:
    """``runs/X`` -> X; ``runs/X/checkpoints/last.ckpt`` -> X; ``enc.safetensors`` -> enc."""
    if path.is_dir():
        return path.resolve().name
    if path.suffix == ".ckpt" and path.parent.name == "checkpoints":
        return path.resolve().parent.parent.name
    return path.stem


# ImageNet weights as a SOURCE: ``imagenet:resnet18`` / ``imagenet:resnet50`` (torchvision's
# supervised ImageNet ResNets, the poster's "supervised transfer from ImageNet" row).
IMAGENET_PREFIX = "imagenet:"
IMAGENET_IMAGE_SIZE = 224  # the size torchvision's ImageNet weights were trained and scored at
MIN_IMAGENET_IMAGE_SIZE = 32  # the 7x7/2 stem, max-pool and four stages divide the input by 32
IMAGENET_LABELS = "imagenet labels"


def is_imagenet_source(source: str | Path) -> bool:
    return str(source).startswith(IMAGENET_PREFIX)


def imagenet_metadata(backbone: str, image_size: int = IMAGENET_IMAGE_SIZE,
                      weights: Path | None = None) -> dict[str, str]:
    """Export-style metadata of torchvision's ImageNet ResNet: RGB, the standard 7x7 stem,
    ImageNet's mean/std. No pre-training batch is stated: the run is torchvision's, not ours."""
    meta = EncoderInfo(
        backbone=backbone, in_channels=3, image_size=image_size, small_stem=False,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, method="supervised-imagenet", dataset="imagenet",
        labels_seen=IMAGENET_LABELS,
    ).to_metadata()
    if weights is not None:
        meta["weights"] = str(weights)
    return meta


def load_imagenet_source(source: str, random_init: bool = False, seed: int = 0,
                         weights: str | None = None, image_size: int | None = None) -> Source:
    """``imagenet:resnet18`` -> torchvision's ResNet-18 with the ImageNet weights of ``weights``
    (a path) or the torch hub cache; ``random_init``: the same network, untrained."""
    backbone = str(source)[len(IMAGENET_PREFIX):]
    if backbone not in IMAGENET_WEIGHTS:
        raise ConfigError(
            f"SOURCE {source}: ImageNet weights are known for "
            f"{', '.join(IMAGENET_PREFIX + b for b in IMAGENET_WEIGHTS)}, not '{backbone}'"
        )
    size = image_size or IMAGENET_IMAGE_SIZE
    suffix = "" if size == IMAGENET_IMAGE_SIZE else f"-{size}px"
    if random_init:
        torch.manual_seed(seed)
        meta = {**imagenet_metadata(backbone, size), "labels_seen": "none"}
        encoder = EncoderInfo.from_metadata(meta).build_encoder()
        return Source(encoder, meta, f"imagenet-{backbone}{suffix}+random-init", Path(str(source)))
    path = find_imagenet_weights(backbone, weights)
    meta = imagenet_metadata(backbone, size, path)
    encoder = EncoderInfo.from_metadata(meta).build_encoder()
    fresh = load_imagenet_weights(encoder, path)
    assert not fresh, fresh  # the standard stem takes every ImageNet weight
    stem = path.name.split(".")[0]
    name = stem if stem.startswith(backbone) else f"{backbone}-{stem}"
    return Source(encoder, meta, f"imagenet-{name}{suffix}", path)


def pretrain_labels(meta: dict[str, str]) -> str | None:
    """Which labels shaped the encoder: the metadata's ``labels_seen``; for exports older than
    that field, inferred for the supervised methods; None where unknown."""
    if "labels_seen" in meta:
        return meta["labels_seen"]
    own = f"{meta.get('dataset')} train labels"
    return {"supervised": own, "supervised-imagenet": f"{IMAGENET_LABELS}, {own}"}.get(
        meta.get("method", ""))


def load_source(source: str | Path, random_init: bool = False, seed: int = 0, *,
                weights: str | None = None, image_size: int | None = None) -> Source:
    """The encoder of a run directory / .ckpt / .safetensors / ``imagenet:ARCH``;
    ``random_init``: same net, new weights (and no labels seen)."""
    if is_imagenet_source(source):
        return load_imagenet_source(str(source), random_init, seed, weights, image_size)
    path = Path(source)
    encoder, meta = load_encoder(path)
    run_id = run_id_of(path)
    if random_init:
        torch.manual_seed(seed)
        encoder = EncoderInfo.from_metadata(meta, str(path)).build_encoder()
        run_id = f"{run_id}+random-init"
        meta = {**meta, "labels_seen": "none"}
    return Source(encoder, meta, run_id, path)


def check_label_fraction(src: Source, fraction: float, datasets: Iterable[str | None]) -> None:
    """Refuse fine-tuning with a fraction of the labels of a dataset whose labels (all of
    them) already trained the encoder: the score would be filed as a few-label result."""
    if fraction >= 1:
        return
    seen = pretrain_labels(src.meta)
    hit = next((d for d in datasets if saw_labels_of(seen, d)), None)
    if hit is not None:
        raise ConfigError(
            f"eval finetune --label-fraction {fraction:g}: {src.run_id} was pre-trained with "
            f"'{seen}', so it has seen every label of {hit}, and its score is no "
            f"{100 * fraction:g} % label result; fine-tune it with --label-fraction 1, on another "
            "dataset, or pass a self-supervised source (or imagenet:resnet50)"
        )


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


def _labels(dataset: Any) -> Tensor:
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
    (``data.subsets.validation_carve``); the test images are then in neither set, so a setting
    chosen on these scores never saw them.
    """
    if validation_from_train and not test_from_train:
        raise ConfigError(
            f"{option_value('--validation-from-train', validation_from_train)} is drawn outside "
            f"the test carve; pass {option_value('--test-from-train', 0.2)} with it")

    spec = get_spec(name)
    options = {"image_size": image_size, "channels": channels, "bad_images": "drop"}
    train = load_split(name, root, "train", download=download, **options)
    train_idx = (_labels(train) >= 0).nonzero().flatten()
    test = None
    if not test_from_train or carve_only_without_test:
        try:
            test = load_split(name, root, "test", download=download, **options)
        except DatasetNotFoundError as err:
            if not test_from_train:
                raise DatasetNotFoundError(
                    f"{err}. With no test split, pass {option_value('--test-from-train', 0.2)} "
                    "to hold out a "
                    "seeded, stratified 20% of train as the test set."
                ) from None
    if test is None and validation_from_train:
        known = _labels(train)[train_idx]
        _rest, held = stratified_split(known, test_from_train, split_seed)
        try:
            val = validation_carve(known, held, validation_from_train, split_seed)
        except ValueError as err:
            raise ConfigError(f"--test-from-train {test_from_train:g} --validation-from-train "
                              f"{validation_from_train:g}: {err}; choose smaller fractions") from None
        pool = torch.ones(len(known), dtype=torch.bool)
        pool[held] = False  # neither the test carve ...
        pool[val] = False  # ... nor the validation images train the probe
        train_idx, test_idx, test = train_idx[pool], train_idx[val], train
        test_split = (f"validation {validation_from_train:g} of train outside the test carve "
                      f"{test_from_train:g} (split seed {split_seed}"
                      f"{carve_digest(train, test_idx)})")
    elif test is None:
        rest, held = stratified_split(_labels(train)[train_idx], test_from_train, split_seed)
        train_idx, test_idx, test = train_idx[rest], train_idx[held], train
        test_split = f"carved {test_from_train:g} of train (split seed {split_seed})"
    else:
        test = with_train_classes(train, test, name)
        test_idx = (_labels(test) >= 0).nonzero().flatten()
        test_split = "test"
        split = (getattr(test, "info", None) or {}).get("split")
        if split:  # a preset's own seeded split (ucmerced): name which one
            test_split = f"test (split seed {split.get('seed')}, sha256 {str(split.get('sha256'))[:12]})"

    def subset(images: Any, idx: Tensor, limit: int | None, option: str, seed: int) -> Tensor:
        if limit is None or limit >= len(idx):
            return idx
        classes = len(_labels(images)[idx].unique())
        if limit < classes:
            raise ConfigError(
                f"{option_value(option, limit)} is fewer than the {classes} classes of {name}; a "
                f"stratified subset keeps at least one image per class: pass "
                f"{option_value(option, classes)} or more"
            )
        return idx[stratified_sample(_labels(images)[idx], int(limit), seed)]

    train_idx = subset(train, train_idx, limit_train, "--limit-train", seed)
    test_idx = subset(test, test_idx, limit_test, "--limit-test", split_seed)
    num_classes = spec.num_classes or len(getattr(train, "classes", ())) or int(_labels(train).max()) + 1
    if label is None:
        label = f"folder:{Path(root).resolve().name}" if name == "folder" else name
    carve = (float(test_from_train), split_seed) if test is train else None
    validation = float(validation_from_train) if test is train and validation_from_train else None
    return EvalData(label, train, test, train_idx, test_idx, num_classes, test_split, carve,
                    validation)


def carve_digest(dataset: Any, indices: Tensor) -> str:
    """``", sha256 <12 hex>"`` of the carve's file names (class/name, sorted) for a folder, so
    a record names the very images it was scored on; ``""`` for an in-memory dataset."""
    if getattr(dataset, "samples", None) is None:
        return ""
    return f", sha256 {names_digest(carve_names(dataset, indices))[:12]}"


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
    info, test_idx = src.info, data.test_indices
    samples = getattr(data.train, "samples", None)
    if samples is None:
        if info.dataset != name:
            return 0, ""
        seen = torch.arange(len(data.train))
        if info.pretrain_limit and get_spec(name).pretrain_split == "train":
            seen = limit_indices(_labels(data.train), info.pretrain_limit, info.pretrain_seed or 0)
        n = int(torch.isin(test_idx, seen).sum())
        return n, f"the {len(seen)} {name} train images"
    if info.dataset == "imagenet":
        return 0, ""
    root = Path(info.pretrain_root) if info.pretrain_root else None
    if root is not None and root.is_dir():
        try:
            pre = load_split(info.dataset or "folder", root, "pretrain")
        except (DatasetNotFoundError, KeyError, OSError):
            pre = None
        pre_samples = getattr(pre, "samples", None)
        if pre is not None and pre_samples is not None:
            seen = range(len(pre_samples))
            if info.pretrain_limit:
                seen = limit_indices(pre.labels, info.pretrain_limit, info.pretrain_seed or 0).tolist()
            files = {os.path.realpath(pre_samples[i][0]) for i in seen}
            test = {os.path.realpath(samples[i][0]) for i in test_idx.tolist()}
            return len(test & files), f"the {len(files)} images of {root}"
    if info.pretrain_subset:  # the subset folder is gone: draw it again from this folder
        made = json.loads(info.pretrain_subset)
        seen = outside_carve(_labels(data.train), int(made["per_class"]),
                             float(made["test_fraction"]), int(made["seed"]),
                             made.get("validation_fraction"))
        val = (f" and validation {made['validation_fraction']:g}"
               if made.get("validation_fraction") else "")
        return (int(torch.isin(test_idx, seen).sum()),
                f"its pre-training subset (redrawn here: {made['per_class']} per class outside "
                f"the carve {made['test_fraction']:g}{val}, split seed {made['seed']})")
    return None


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
        remedy = ("pre-train on a subset drawn outside the carve (tribyol.eval.splits."
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


def cache_name(data: EvalData, root: str | Path) -> str:
    """Dataset identity for the feature cache: folders (and presets over a user's folder, such
    as ucmerced) also by their path, so two folders never share cached features."""
    by_path = data.name.startswith("folder") or getattr(data.train, "info", None)
    return f"{data.name}@{Path(root).resolve()}" if by_path else data.name


def _number(text: str | None, kind: type) -> Any:
    return kind(float(text)) if text not in (None, "") else None


def base_record(src: Source, data: EvalData, protocol: str, seed: int,
                split_seed: int = 0) -> dict[str, Any]:
    """Store fields shared by every protocol (``tribyol.store.FIELDS``; ``split_seed``, the
    seed of the test images, goes to ``params``)."""
    info = src.info
    method = "random-init" if src.run_id.endswith("+random-init") else info.method
    legacy_epochs = _number(src.meta.get("epochs"), float)  # exports before v0.2: planned only
    settings = source_settings(src, method == "random-init")
    seed_of_run = None if method == "random-init" else info.pretrain_seed
    return {
        "run_id": src.run_id,
        "method": method,
        "backbone": info.backbone,
        "dataset": data.name,
        "pretrain_dataset": info.dataset,
        # per device: the batch BatchNorm and the loss saw; accumulation and world size beside it
        "pretrain_batch_size": info.batch_size,
        "pretrain_accumulate": info.accumulate,
        "pretrain_world_size": info.world_size,
        # the budget actually run: none for a random-init encoder (its batch stays, to place
        # it beside the encoders whose architecture it copies)
        "pretrain_steps": 0 if method == "random-init" else info.steps_done,
        "pretrain_epochs": 0.0 if method == "random-init" else (
            info.epochs_done if info.epochs_done is not None else legacy_epochs),
        "pretrain_labels": pretrain_labels(src.meta),
        "protocol": protocol,
        "metric": "top1",
        "seed": seed,
        "split_seed": split_seed,
        "test_split": data.test_split,
        "source": str(src.path),
        # what tells this configuration apart from others of the same method (report rows),
        # the run's seed (paired comparisons) and a hash of both (unique per configuration)
        "pretrain_settings": settings,
        "pretrain_seed": seed_of_run,
        "config_id": config_id(settings, seed_of_run),
        "pretrain_stem": None if method == "random-init" else info.stem,
        # not a store field: kept in params (ImageNet weights can be scored at several sizes)
        "encoder_image_size": src.image_size,
    }


def source_settings(src: Source, random_init: bool) -> dict[str, Any] | None:
    """The run's ``run_settings`` (None: an export from before they were recorded); for
    ImageNet weights, the file and backbone; for a random-init encoder, its architecture only
    (the untrained copy of a run owes nothing else to it)."""
    info = src.info
    settings = json.loads(info.settings) if info.settings else None
    if settings is None and info.dataset == "imagenet" and info.method == "supervised-imagenet":
        weights = src.meta.get("weights")
        settings = {"weights": Path(weights).name if weights else None,
                    "model": {"backbone": info.backbone, "small_stem": info.small_stem}}
    if settings is not None and random_init:
        model = {k: v for k, v in (settings.get("model") or {}).items() if k != "stem"}
        data = settings.get("data") or {}
        settings = {"model": model, "norm": settings.get("norm"),
                    "data": {k: data.get(k) for k in ("channels", "size")}}
    return settings
