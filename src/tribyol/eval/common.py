"""What every protocol needs: the encoder of a source, the evaluation data, record fields."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tribyol.channels import channel_stats
from tribyol.checkpoints import EncoderInfo, load_encoder
from tribyol.data import DatasetNotFoundError, get_spec, load_split
from tribyol.data.registry import IMAGENET_MEAN, IMAGENET_STD
from tribyol.errors import ConfigError
from tribyol.eval.splits import stratified_sample, stratified_split
from tribyol.methods.supervised import IMAGENET_WEIGHTS, find_imagenet_weights, load_imagenet_weights
from tribyol.store import saw_labels_of

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
    test_split: str  # "test", or how test was carved from train

    @property
    def train_labels(self) -> Tensor:
        return self.train.labels.cpu()[self.train_indices]


def _labels(dataset: Any) -> Tensor:
    return torch.as_tensor(dataset.labels).long().cpu()


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
    download: bool = False,
    label: str | None = None,
    carve_only_without_test: bool = False,
) -> EvalData:
    """Labelled train and test sets of ``name``.

    ``test_from_train`` (a fraction) carves a seeded, stratified test set out of train, for
    datasets without a test split (e.g. a folder without ``test/``); the carved images never
    enter training. With ``carve_only_without_test`` (transfer over many targets) it is used
    only when the test split is missing. ``limit_*`` take seeded, stratified subsets (by count)
    for quick runs; a limit below the number of classes is refused (each class keeps an image).
    Folder images are decoded at ``image_size`` with ``channels`` (the encoder's).
    """

    spec = get_spec(name)
    options = {"image_size": image_size, "channels": channels}
    train = load_split(name, root, "train", download=download, **options)
    train_idx = (_labels(train) >= 0).nonzero().flatten()
    test = None
    if not test_from_train or carve_only_without_test:
        try:
            test = load_split(name, root, "test", download=download, **options)
        except DatasetNotFoundError as err:
            if not test_from_train:
                raise DatasetNotFoundError(
                    f"{err}. With no test split, pass --test-from-train 0.2 to hold out a "
                    "seeded, stratified 20% of train as the test set."
                ) from None
    if test is None:
        rest, held = stratified_split(_labels(train)[train_idx], test_from_train, seed)
        train_idx, test_idx, test = train_idx[rest], train_idx[held], train
        test_split = f"carved {test_from_train:g} of train (seed {seed})"
    else:
        test_idx = (_labels(test) >= 0).nonzero().flatten()
        test_split = "test"
        split = (getattr(test, "info", None) or {}).get("split")
        if split:  # a preset's own seeded split (ucmerced): name which one
            test_split = f"test (split seed {split.get('seed')}, sha256 {str(split.get('sha256'))[:12]})"

    def subset(images: Any, idx: Tensor, limit: int | None, option: str) -> Tensor:
        if limit is None or limit >= len(idx):
            return idx
        classes = len(_labels(images)[idx].unique())
        if limit < classes:
            raise ConfigError(
                f"{option} {limit} is fewer than the {classes} classes of {name}; a stratified "
                f"subset keeps at least one image per class: pass {option} {classes} or more"
            )
        return idx[stratified_sample(_labels(images)[idx], int(limit), seed)]

    train_idx = subset(train, train_idx, limit_train, "--limit-train")
    test_idx = subset(test, test_idx, limit_test, "--limit-test")
    num_classes = spec.num_classes or len(getattr(train, "classes", ())) or int(_labels(train).max()) + 1
    if label is None:
        label = f"folder:{Path(root).resolve().name}" if name == "folder" else name
    return EvalData(label, train, test, train_idx, test_idx, num_classes, test_split)


def cache_name(data: EvalData, root: str | Path) -> str:
    """Dataset identity for the feature cache: folders (and presets over a user's folder, such
    as ucmerced) also by their path, so two folders never share cached features."""
    by_path = data.name.startswith("folder") or getattr(data.train, "info", None)
    return f"{data.name}@{Path(root).resolve()}" if by_path else data.name


def _number(text: str | None, kind: type) -> Any:
    return kind(float(text)) if text not in (None, "") else None


def base_record(src: Source, data: EvalData, protocol: str, seed: int) -> dict[str, Any]:
    """Store fields shared by every protocol (``tribyol.store.FIELDS``)."""
    info = src.info
    method = "random-init" if src.run_id.endswith("+random-init") else info.method
    legacy_epochs = _number(src.meta.get("epochs"), float)  # exports before v0.2: planned only
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
        "test_split": data.test_split,
        "source": str(src.path),
        # not a store field: kept in params (ImageNet weights can be scored at several sizes)
        "encoder_image_size": src.image_size,
    }
