"""The pre-training set of a run: read, sized (folders) and cut to ``data.limit``.

A folder's view size defaults to the images' own: the median shorter side of a sample of them
(``FolderImages.native_size``), capped at ``MAX_DEFAULT_VIEW_SIZE``, so a folder of 32 px images
is not silently trained at 224 px (about 9x the compute). An explicit ``data.image_size`` that
upscales the images by more than ``UPSCALE_WARNING`` is kept, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.channels import channel_stats
from tribyol.config import RunConfig
from tribyol.data.band_stats import band_stats, check_value_range, default_scale
from tribyol.data.carves import SUBSET_MANIFEST
from tribyol.data.images import FolderImages
from tribyol.data.registry import get_spec, load_split
from tribyol.data.sampling import limit_dataset
from tribyol.errors import ConfigError

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
        layout=d.layout,
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
    # The pixels' dtype in memory and how the view pipeline turns them into floats
    # (``tribyol.augment.bands.to_float(images, scale, value_range)``), before ``mean``/``std``:
    # ``scale`` resolved (255 for uint8), ``value_range`` one [low, high] per band or None.
    # Checkpoints from before they were recorded hold uint8 data: the defaults are theirs.
    dtype: str = "uint8"
    scale: float = 255.0
    value_range: tuple[tuple[float, float], ...] | None = None
    stats: str = "preset"  # where mean/std came from: preset, data (train images) or config

    @property
    def bands(self) -> int:
        return self.channels

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataInfo:
        """From the plain dict a checkpoint's hyper-parameters hold (lists for tuples)."""
        out = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if out.get("value_range") is not None:
            out["value_range"] = tuple(tuple(float(x) for x in p) for p in out["value_range"])
        return cls(**out)


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
    dtype = getattr(dataset, "dtype", "uint8")
    ranges = check_value_range(cfg.data.value_range and _pairs(cfg.data.value_range), channels)
    value_range = None if ranges is None else tuple(tuple(map(float, p)) for p in ranges.tolist())
    scale = default_scale(dtype, cfg.data.scale)
    mean, std, stats = normalisation(cfg, dataset, channels, scale, value_range)
    return DataInfo(
        channels=channels,
        # A folder knows the size its views are made at (its images' own by default).
        image_size=getattr(dataset, "view_size", None) or cfg.data.image_size or spec.image_size,
        num_classes=num_classes,
        num_train_images=len(dataset),
        mean=tuple(mean),
        std=tuple(std),
        source=pretrain_source(cfg),
        dtype=dtype,
        scale=scale,
        value_range=value_range,
        stats=stats,
    )


def _pairs(flat: list[float]) -> list[list[float]]:
    """``data.value_range`` as written (flat) -> one pair, or one pair per band."""
    pairs = [list(flat[i:i + 2]) for i in range(0, len(flat), 2)]
    return pairs[0] if len(pairs) == 1 else pairs


def _train_reader(dataset: Any) -> tuple[list[Any], Any]:
    """The training images' keys and a reader of one as numpy ``[C, H, W]``: a folder's files
    (``formats.read_image``), or an in-memory set's indices."""
    if isinstance(dataset, FolderImages):
        return [path for path, _ in dataset.samples], None
    images = dataset.images
    return list(range(len(images))), lambda i: images[i].cpu().numpy()


def normalisation(cfg: RunConfig, dataset: Any, channels: int, scale: float,
                  value_range: Any) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """Per-band (mean, std) and where they came from: ``data.mean``/``data.std`` when given;
    with ``data.stats`` data (``auto``: for TIFF/DICOM/.npy/16-bit folders) a seeded
    (``train.seed``) sample of ``dataset``, the *training* images only (the monitor's and any
    carved test images have left it), in the units ``to_float`` gives; else the preset's."""
    d = cfg.data
    if d.mean is not None or d.std is not None:
        try:
            mean = channel_stats(tuple(d.mean or ()), channels)
            std = channel_stats(tuple(d.std or ()), channels)
        except ValueError as err:
            raise ConfigError(f"data.mean / data.std: {err}; give one value or {channels} "
                              "(both), or leave them out to compute them") from None
        return mean, std, "config"
    mode = d.stats
    if mode == "auto":
        mode = "data" if getattr(dataset, "format", None) is not None else "preset"
    if mode == "data":
        keys, reader = _train_reader(dataset)
        mean, std = band_stats(keys, d.stats_sample, cfg.train.seed, scale, value_range, reader)
        return mean, std, "data"
    spec = get_spec(d.dataset)
    try:  # the spec's statistics carried to the loaded channel count, as evaluation does
        return channel_stats(spec.mean, channels), channel_stats(spec.std, channels), "preset"
    except ValueError:
        raise ConfigError(f"the {d.dataset} preset's statistics are for {len(spec.mean)} "
                          f"channels, the data has {channels}; set data.stats=data to compute "
                          "them from the training images") from None


def resolved_config(cfg: RunConfig, info: DataInfo) -> RunConfig:
    """The config with what the data decided written in (channels, view size, mean, std)."""
    data = dataclasses.replace(cfg.data, channels=info.channels, image_size=info.image_size,
                               mean=list(info.mean), std=list(info.std))
    return dataclasses.replace(cfg, data=data)
