"""The pre-training set of a run: read, sized (folders) and cut to ``data.limit``.

A folder's view size defaults to the images' own: the median shorter side of a sample of them
(``FolderImages.native_size``), capped at ``MAX_DEFAULT_VIEW_SIZE``, so a folder of 32 px images
is not silently trained at 224 px (about 9x the compute). An explicit ``data.image_size`` that
upscales the images by more than ``UPSCALE_WARNING`` is kept, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.channels import channel_stats
from tribyol.config import RunConfig
from tribyol.data.carves import SUBSET_MANIFEST
from tribyol.data.images import FolderImages
from tribyol.data.registry import get_spec, load_split
from tribyol.data.sampling import limit_dataset

log = logging.getLogger(__name__)

MAX_DEFAULT_VIEW_SIZE = 224  # a folder's default view size is its images' own, at most this
MIN_VIEW_SIZE = 8  # and at least this (data.image_size's own lower bound)
UPSCALE_WARNING = 2.0  # warn when views are more than this many times the images' size


def folder_view_size(cfg: RunConfig, dataset: FolderImages) -> int:
    """The side of a folder's views: ``data.image_size``, else the images' native size."""
    native = dataset.native_size()
    if cfg.data.image_size:
        view = cfg.data.image_size
    elif native is None:  # nothing in the sample opens; the loader will say which files
        view = get_spec(cfg.data.dataset).image_size
    else:
        view = max(MIN_VIEW_SIZE, min(MAX_DEFAULT_VIEW_SIZE, native))
        log.info("%s: views at %d px, the images' median shorter side (capped at %d); pass "
                 "--set data.image_size=N to change it", dataset.root, view, MAX_DEFAULT_VIEW_SIZE)
    if native is not None and view > UPSCALE_WARNING * native:
        log.warning("%s: images are about %d px (median shorter side) but views are %d px, "
                    "%.1fx upscaled at %.0fx the compute; --set data.image_size=%d trains at "
                    "their own size", dataset.root, native, view, view / native,
                    (view / native) ** 2, max(MIN_VIEW_SIZE, native))
    return view


def folder_load_size(cfg: RunConfig, view_size: int) -> int:
    """The side of the squares a folder is decoded to; views crop from these."""
    return cfg.data.resize or round(view_size * 8 / 7)


def load_pretrain_data(cfg: RunConfig) -> Any:
    """The run's pre-training images: ``TensorImages`` or ``FolderImages``.

    A folder carries ``view_size``, the size its views are made at (``data_info_for`` reads
    it). ``data.limit`` takes a seeded (``train.seed``), class-stratified subset.
    """
    d = cfg.data
    spec = get_spec(d.dataset)
    dataset = load_split(
        d.dataset,
        d.root,
        "pretrain",
        download=d.download,
        image_size=d.image_size or spec.image_size,
        channels=d.channels,
        bad_images=d.bad_images,
    )
    if isinstance(dataset, FolderImages):
        view = folder_view_size(cfg, dataset)
        dataset.image_size = dataset.resize = folder_load_size(cfg, view)
        dataset.view_size = view
    return limit_dataset(dataset, d.limit, cfg.train.seed)


@dataclass
class DataInfo:
    """What the networks need to know about the pre-training data."""

    channels: int
    image_size: int  # the size of the views fed to the encoder
    num_classes: int
    num_train_images: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Where the images came from, so evaluation can refuse a test carve they overlap
    # (``pretrain_source``): {"root": the resolved data.root, "subset": its subset.json or None}.
    # None in checkpoints from before it was recorded.
    source: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataInfo:
        """From the plain dict a checkpoint's hyper-parameters hold (lists for tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def pretrain_source(cfg: RunConfig) -> dict[str, Any]:
    """The resolved ``data.root`` and the manifest of the pre-training subset it holds, if any
    (``SUBSET_MANIFEST``, written by ``data.carves.pretrain_subset``: the carve it lies outside)."""
    root = Path(cfg.data.root).expanduser().resolve()
    subset = None
    # no subset folder (or an unreadable manifest: nothing to vouch for its carve)
    with contextlib.suppress(OSError, ValueError):
        subset = json.loads((root / SUBSET_MANIFEST).read_text())
    return {"root": str(root), "subset": subset if isinstance(subset, dict) else None}


def data_info_for(cfg: RunConfig, dataset: Any) -> DataInfo:
    """Derive the networks' data info from the spec, the config and the loaded dataset.

    The view size is the dataset's ``view_size`` when it has one (a folder's, set by
    ``load_pretrain_data``), so the exported encoder's metadata names the size it trained at.
    """
    spec = get_spec(cfg.data.dataset)
    channels = getattr(dataset, "channels", spec.channels)
    num_classes = len(getattr(dataset, "classes", ()) or ()) or spec.num_classes
    # The spec's statistics carried to the loaded channel count, by the rule evaluation uses.
    mean, std = channel_stats(spec.mean, channels), channel_stats(spec.std, channels)
    return DataInfo(
        channels=channels,
        # A folder knows the size its views are made at (its images' own by default).
        image_size=getattr(dataset, "view_size", None) or cfg.data.image_size or spec.image_size,
        num_classes=num_classes,
        num_train_images=len(dataset),
        mean=tuple(mean),
        std=tuple(std),
        source=pretrain_source(cfg),
    )
