"""The store record of one evaluation: the fields every protocol shares
(``tribyol.store.FIELDS``), from the source's metadata and the evaluation data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tribyol.eval.data import EvalData
from tribyol.eval.sources import Source, pretrain_labels
from tribyol.store import config_id


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
        # the pixels the encoder read (exports before they were recorded: uint8)
        "bands": src.in_channels,
        "dtype": info.dtype or "uint8",
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
