"""What is evaluated: the encoder of a run, a checkpoint, an export, ImageNet weights, or any of
them re-initialised (random-init), with its metadata and the labels that shaped it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from tribyol.channels import channel_stats
from tribyol.checkpoints import EncoderInfo, load_encoder
from tribyol.errors import ConfigError
from tribyol.eval.imagenet import IMAGENET_LABELS, is_imagenet_source, load_imagenet
from tribyol.store import saw_labels_of


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

    @property
    def pixels(self) -> dict:
        """How pre-training turned pixels into floats (``to_float``'s scale and clip range):
        evaluation does the same. Empty for exports from before they were recorded (uint8)."""
        info = self.info
        return {"scale": info.scale, "value_range": info.clip}


def run_id_of(path: Path) -> str:
    """``runs/X`` -> X; ``runs/X/checkpoints/last.ckpt`` -> X; ``enc.safetensors`` -> enc."""
    if path.is_dir():
        return path.resolve().name
    if path.suffix == ".ckpt" and path.parent.name == "checkpoints":
        return path.resolve().parent.parent.name
    return path.stem


def load_source(source: str | Path, random_init: bool = False, seed: int = 0, *,
                weights: str | None = None, image_size: int | None = None) -> Source:
    """The encoder of a run directory / .ckpt / .safetensors / ``imagenet:ARCH``;
    ``random_init``: same net, new weights (and no labels seen)."""
    if is_imagenet_source(source):
        return Source(*load_imagenet(str(source), random_init, seed, weights, image_size))
    path = Path(source)
    encoder, meta = load_encoder(path)
    run_id = run_id_of(path)
    if random_init:
        torch.manual_seed(seed)
        encoder = EncoderInfo.from_metadata(meta, str(path)).build_encoder()
        run_id = f"{run_id}+random-init"
        meta = {**meta, "labels_seen": "none"}
    return Source(encoder, meta, run_id, path)


def pretrain_labels(meta: dict[str, str]) -> str | None:
    """Which labels shaped the encoder: the metadata's ``labels_seen``; for exports older than
    that field, inferred for the supervised methods; None where unknown."""
    if "labels_seen" in meta:
        return meta["labels_seen"]
    own = f"{meta.get('dataset')} train labels"
    return {"supervised": own, "supervised-imagenet": f"{IMAGENET_LABELS}, {own}"}.get(
        meta.get("method", ""))


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
