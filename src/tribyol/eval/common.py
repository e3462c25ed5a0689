"""What every protocol needs: the encoder of a source, the evaluation data, record fields."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tribyol.data import DatasetNotFoundError, get_spec, load_split
from tribyol.eval.features import LUMA
from tribyol.eval.splits import stratified_sample, stratified_split

log = logging.getLogger(__name__)


@dataclass
class Source:
    encoder: nn.Module
    meta: dict[str, str]  # export metadata: backbone, image_size, in_channels, mean, std, ...
    run_id: str
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def in_channels(self) -> int:
        return int(self.meta["in_channels"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.meta["mean"].split(","))

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.meta["std"].split(","))


def run_id_of(path: Path) -> str:
    """``runs/X`` -> X; ``runs/X/checkpoints/last.ckpt`` -> X; ``enc.safetensors`` -> enc."""
    if path.is_dir():
        return path.resolve().name
    if path.suffix == ".ckpt" and path.parent.name == "checkpoints":
        return path.resolve().parent.parent.name
    return path.stem


def load_source(source: str | Path, random_init: bool = False, seed: int = 0) -> Source:
    """The encoder of a run directory / .ckpt / .safetensors; ``random_init``: same net, new weights."""
    from tribyol.export import build_encoder_from_metadata, load_encoder

    path = Path(source)
    encoder, meta = load_encoder(path)
    run_id = run_id_of(path)
    if random_init:
        torch.manual_seed(seed)
        encoder = build_encoder_from_metadata(meta)
        run_id = f"{run_id}+random-init"
    return Source(encoder, meta, run_id, path)


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
    from tribyol.config import ConfigError

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


def channel_stats(stats: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Per-channel mean/std carried across a channel change the way the images are."""
    if len(stats) == channels:
        return stats
    if len(stats) == 1:
        return stats * channels
    if len(stats) == 3 and channels == 1:
        return (sum(w * s for w, s in zip(LUMA, stats, strict=True)),)
    raise ValueError(f"cannot map {len(stats)}-channel statistics to {channels} channels")


def cache_name(data: EvalData, root: str | Path) -> str:
    """Dataset identity for the feature cache: folders also by their path."""
    return f"{data.name}@{Path(root).resolve()}" if data.name.startswith("folder") else data.name


def _number(text: str | None, kind: type) -> Any:
    return kind(float(text)) if text not in (None, "") else None


def base_record(src: Source, data: EvalData, protocol: str, seed: int) -> dict[str, Any]:
    """Store fields shared by every protocol (``report.store.FIELDS``)."""
    meta = src.meta
    method = meta.get("method")
    if src.run_id.endswith("+random-init"):
        method = "random-init"
    return {
        "run_id": src.run_id,
        "method": method,
        "backbone": meta.get("backbone"),
        "dataset": data.name,
        "pretrain_dataset": meta.get("dataset"),
        # per device: the batch BatchNorm and the loss saw; accumulation and world size beside it
        "pretrain_batch_size": _number(meta.get("batch_size"), int),
        "pretrain_accumulate": _number(meta.get("accumulate"), int),
        "pretrain_world_size": _number(meta.get("world_size"), int),
        # the budget actually run (exports before v0.2 only knew the planned epochs)
        "pretrain_steps": _number(meta.get("steps_done"), int),
        "pretrain_epochs": _number(meta.get("epochs_done", meta.get("epochs")), float),
        "pretrain_labels": meta.get("labels_seen"),
        "protocol": protocol,
        "metric": "top1",
        "seed": seed,
        "test_split": data.test_split,
        "source": str(src.path),
    }
