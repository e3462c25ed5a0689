"""Encoder metadata: ``EncoderInfo`` (what an encoder is and how it was trained), its checks
and its round trip through an export's safetensors metadata, built from a training checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tribyol.channels import channel_stats
from tribyol.config import NORMS, RunConfig, to_dict
from tribyol.config.structured import build_dataclass
from tribyol.data.formats import DTYPES
from tribyol.errors import CheckpointError
from tribyol.methods.supervised import imagenet_stem
from tribyol.nets import BACKBONES, TIMM_PREFIX, build_backbone, is_backbone, uses_small_stem

ENCODER_FORMAT = "tribyol-encoder-v1"


EXPORT_CHECKSUM = "tensor_sha256"  # an export's metadata key: ``tensor_checksum`` of its weights


# Metadata an encoder cannot be rebuilt without.
REQUIRED_METADATA = ("backbone", "in_channels", "image_size", "small_stem", "mean", "std")


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder is and how it was trained: an export's metadata, typed.

    ``to_metadata`` writes the safetensors metadata (strings only); ``from_metadata`` reads it
    back, so the same fields are never parsed in two places. Fields after ``std`` are optional
    (exports from older versions, or torchvision's ImageNet weights, lack some).
    """

    backbone: str
    in_channels: int
    image_size: int
    small_stem: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    width: int | None = None  # the ConvNet's base width (None: its default, 32)
    norm: str | None = None  # bn, gn or gn-ws (None: bn, as every export before it was recorded)
    norm_groups: int | None = None  # GroupNorm's groups (gn, gn-ws only)
    method: str | None = None
    dataset: str | None = None
    # The batch BatchNorm and the loss saw is batch_size per device; an optimizer step
    # averages accumulate x world_size of them.
    batch_size: int | None = None
    accumulate: int | None = None
    world_size: int | None = None
    steps_done: int | None = None
    epochs_planned: int | None = None
    epochs_done: float | None = None
    labels_seen: str | None = None
    # Which images pre-training read, so evaluation can refuse a test set carved from them:
    # the resolved data.root, its subset manifest (JSON: the carve a pre-training subset was
    # drawn outside), and data.limit with the seed that drew it (train.seed).
    pretrain_root: str | None = None
    pretrain_subset: str | None = None
    pretrain_limit: int | None = None
    pretrain_seed: int | None = None
    stem: str | None = None  # "random 3x3": supervised-imagenet without ImageNet's 7x7 stem
    settings: str | None = None  # run_settings as JSON: what tells configurations apart
    # The input transform evaluation rebuilds: the pixels' dtype, the scale they are divided by
    # and the clip range (JSON: one [low, high] per band, in scaled units) before mean/std.
    # None in exports from before they were recorded: uint8 / 255, as those all were.
    bands: int | None = None  # = in_channels; recorded so a reader need not know our names
    dtype: str | None = None
    scale: float | None = None
    value_range: str | None = None

    @property
    def clip(self) -> list[list[float]] | None:
        """``value_range`` parsed: one [low, high] per band, or None."""
        return json.loads(self.value_range) if self.value_range else None

    def to_metadata(self) -> dict[str, str]:
        meta = {"format": ENCODER_FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif f.name == "epochs_done":
                value = f"{value:.4g}"
            meta[f.name] = str(value)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str = "the encoder") -> EncoderInfo:
        """Parse an export's metadata (extra keys are ignored); a missing or unreadable field
        that the encoder needs is a ``CheckpointError``."""
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise CheckpointError(
                f"{where}'s metadata lacks {', '.join(missing)}; export it again with `tribyol export`"
            )
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        problems = []
        for f in dataclasses.fields(cls):
            if f.name not in meta:
                continue
            try:
                values[f.name] = _parse(meta[f.name], hints[f.name])
            except (ValueError, OverflowError):
                problems.append(f"{f.name}={meta[f.name]!r} ({_RULES.get(f.name, 'unreadable')})")
        problems += [f"{name}={meta[name]!r} ({_RULES[name]})" for name, value in values.items()
                     if name in _CHECKS and not _CHECKS[name](value, values)]
        if problems:
            raise CheckpointError(
                f"{where}'s metadata has bad values: {'; '.join(problems)}; the file is damaged "
                "or was edited: export it again with `tribyol export`"
            )
        return cls(**values)

    def build_encoder(self) -> nn.Module:
        """The encoder this describes, freshly initialised."""
        return build_backbone(self.backbone, in_channels=self.in_channels,
                              image_size=self.image_size, small_stem=self.small_stem,
                              width=self.width or 32, norm=self.norm or "bn",
                              norm_groups=self.norm_groups or 32)


def _parse(text: str, hint: Any) -> Any:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError(text)
        return text == "true"
    if typing.get_origin(kind) is tuple:
        return tuple(float(v) for v in text.split(","))
    if kind is int:
        number = float(text)
        if not number.is_integer():  # int() would cut 2.5 to 2, and fail on nan
            raise ValueError(text)
        return int(number)
    return kind(text)


def _count(least: int) -> Any:
    return lambda v, _: v >= least


def _stats_fit(values: tuple[float, ...], info: dict[str, Any]) -> bool:
    try:
        channel_stats(values, int(info.get("in_channels", len(values))))
    except ValueError:
        return False
    return True


# What each metadata field must be: an encoder built from a bad value fails far from the
# cause, or worse scores at chance (a NaN mean, a zero std) without a word.
_CHECKS: dict[str, Any] = {
    "backbone": lambda v, _: is_backbone(v),
    "in_channels": _count(1),
    "image_size": _count(1),
    "width": _count(1),
    "norm": lambda v, _: v in NORMS,
    "norm_groups": _count(1),
    "mean": lambda v, info: all(math.isfinite(x) for x in v) and _stats_fit(v, info),
    "std": lambda v, info: all(math.isfinite(x) and x > 0 for x in v) and _stats_fit(v, info),
    "batch_size": _count(1),
    "accumulate": _count(1),
    "world_size": _count(1),
    "steps_done": _count(0),
    "epochs_planned": _count(0),
    "epochs_done": lambda v, _: math.isfinite(v) and v >= 0,
    "bands": lambda v, info: v == info.get("in_channels", v),
    "dtype": lambda v, _: v in DTYPES,
    "scale": lambda v, _: math.isfinite(v) and v > 0,
    "value_range": lambda v, _: _value_range_ok(v),
}


_RULES = {
    "backbone": f"one of {', '.join(BACKBONES)}, or {TIMM_PREFIX}NAME of a timm model",
    "in_channels": "a positive integer",
    "image_size": "a positive integer",
    "small_stem": "true or false",
    "width": "a positive integer",
    "norm": f"one of {', '.join(NORMS)}",
    "norm_groups": "a positive integer",
    "mean": "finite numbers: one, or one per channel",
    "std": "positive finite numbers: one, or one per channel",
    "batch_size": "a positive integer",
    "accumulate": "a positive integer",
    "world_size": "a positive integer",
    "steps_done": "an integer >= 0",
    "epochs_planned": "an integer >= 0",
    "epochs_done": "a finite number >= 0",
    "bands": "in_channels",
    "dtype": f"one of {', '.join(DTYPES)}",
    "scale": "a positive finite number",
    "value_range": "JSON [[low, high], ...] with low < high",
}


def _value_range_ok(text: str) -> bool:
    try:
        pairs = json.loads(text)
        return all(len(p) == 2 and float(p[0]) < float(p[1]) for p in pairs)
    except (ValueError, TypeError):
        return False


def small_stem_of(backbone: str, image_size: int, small_stem: bool | None) -> bool:
    """Whether the encoder has tribyol's small ResNet stem (a timm model keeps its own: no)."""
    return False if backbone.startswith(TIMM_PREFIX) else uses_small_stem(image_size, small_stem)


def run_settings(cfg: RunConfig, info: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a pre-training configuration, its seed aside: the resolved method options,
    the encoder (backbone, width, stem, BatchNorm), the input normalisation, the optimizer
    (lr, ...), the views, the precision and a fingerprint of the data (no paths: the same
    images elsewhere are the same data). Left out: devices, logging and paths, and the budget,
    which records carry in their own fields (batch, accumulation, epochs). Reports keep apart
    records whose settings differ, and the records' ``config_id`` hashes them."""
    tree = to_dict(cfg)
    m, d = cfg.model, cfg.data
    small = small_stem_of(m.backbone, int(info["image_size"]), m.small_stem)
    method = dict(tree["method"])
    if method.get("weights"):  # supervised-imagenet's file: the same file anywhere is the same
        method["weights"] = Path(str(method["weights"])).name
    return {
        "method": method,
        "model": {"backbone": m.backbone, "width": m.width, "small_stem": small,
                  "stem": imagenet_stem(cfg.method.get("name"), m.backbone, small),
                  "hidden_dim": m.hidden_dim, "proj_dim": m.proj_dim, "sync_bn": m.sync_bn,
                  # A timm model's starting weights, by file name (as method.weights above).
                  **({"weights": Path(m.weights).name} if m.weights else {}),
                  # Only when not BatchNorm: the settings (and config ids) of bn runs stay those
                  # recorded before model.norm existed.
                  **({"norm": m.norm, "norm_groups": m.norm_groups} if m.norm != "bn" else {})},
        "norm": {"mean": [float(v) for v in info["mean"]], "std": [float(v) for v in info["std"]]},
        "optim": tree["optim"],
        "augment": tree["augment"],
        "train": {"precision": cfg.train.precision},
        "data": {"dataset": d.dataset, "images": info.get("num_train_images"),
                 "classes": info.get("num_classes"), "channels": info.get("channels"),
                 "size": info.get("image_size"), "limit": d.limit, "resize": d.resize,
                 "monitor_fraction": d.monitor_fraction, **_pixel_settings(info)},
    }


def _pixel_settings(info: Mapping[str, Any]) -> dict[str, Any]:
    """The dtype, scale and clip range where not uint8 / 255 / none: the settings (and config
    ids) of uint8 runs stay those recorded before these existed."""
    dtype, scale = info.get("dtype", "uint8"), float(info.get("scale", 255.0))
    if dtype == "uint8" and scale == 255.0 and not info.get("value_range"):
        return {}
    ranges = info.get("value_range")
    return {"dtype": dtype, "scale": scale,
            "value_range": [list(p) for p in ranges] if ranges else None}


def encoder_info(ckpt: dict[str, Any]) -> EncoderInfo:
    """The encoder's description and the run's budget, from a training checkpoint."""
    hp = ckpt.get("hyper_parameters") or {}
    if "config" not in hp or "data_info" not in hp:
        raise CheckpointError(
            "checkpoint has no tribyol run config (hyper_parameters.config / data_info); "
            "export needs a checkpoint written by `tribyol pretrain`"
        )
    cfg = build_dataclass(RunConfig, hp["config"])
    info = hp["data_info"]
    m, t = cfg.model, cfg.train
    run = ckpt.get("tribyol_run") or {}
    steps = int(ckpt.get("global_step", 0))
    per_epoch = int(run.get("steps_per_epoch", 0))
    source = info.get("source") or {}  # absent in checkpoints from before it was recorded
    subset = source.get("subset")
    settings = run_settings(cfg, info)
    return EncoderInfo(
        backbone=m.backbone,
        in_channels=int(info["channels"]),
        image_size=int(info["image_size"]),
        small_stem=small_stem_of(m.backbone, int(info["image_size"]), m.small_stem),
        mean=tuple(float(v) for v in info["mean"]),
        std=tuple(float(v) for v in info["std"]),
        width=m.width,
        norm=m.norm,
        norm_groups=m.norm_groups if m.norm != "bn" else None,
        method=cfg.method["name"],
        dataset=cfg.data.dataset,
        batch_size=t.batch_size,
        accumulate=t.accumulate,
        world_size=int(run.get("world_size", 1)),
        steps_done=steps,
        epochs_planned=t.epochs,
        epochs_done=steps / per_epoch if per_epoch > 0 else None,
        labels_seen=str(run["labels_seen"]) if "labels_seen" in run else None,
        pretrain_root=source.get("root"),
        pretrain_subset=json.dumps(subset, sort_keys=True) if subset else None,
        pretrain_limit=cfg.data.limit,
        pretrain_seed=cfg.train.seed,
        stem=settings["model"]["stem"],
        settings=json.dumps(settings, sort_keys=True, default=str),
        bands=int(info["channels"]),
        dtype=info.get("dtype", "uint8"),
        scale=float(info.get("scale", 255.0)),
        value_range=json.dumps([list(p) for p in info["value_range"]])
        if info.get("value_range") else None,
    )


def encoder_metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """``encoder_info(ckpt)`` as an export's metadata."""
    return encoder_info(ckpt).to_metadata()
