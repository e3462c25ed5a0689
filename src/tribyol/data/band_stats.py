"""Per-band mean and std from the data: a seeded sample of the *training* files, never test.

The pixels go through ``scale_and_clip`` first, the same arithmetic as the view pipeline's
``tribyol.augment.bands.to_float``, so the statistics describe exactly what gets normalised.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tribyol.data.formats import read_image
from tribyol.errors import ConfigError

STATS_SAMPLE = 512  # files read for the statistics; enough for 3 significant digits per band

ValueRange = tuple[float, float] | Sequence[tuple[float, float]] | None


def check_value_range(value_range: ValueRange, bands: int) -> np.ndarray | None:
    """``value_range`` as a ``[bands, 2]`` array of (low, high): one pair for all bands or one
    per band (``data.value_range``); ``ConfigError`` for a pair not low < high, or a count
    of pairs that is not ``bands``."""
    if value_range is None:
        return None
    arr = np.asarray(value_range, dtype=np.float64)
    if arr.shape == (2,):
        arr = np.tile(arr, (bands, 1))
    if arr.shape != (bands, 2):
        raise ConfigError(f"data.value_range {value_range!r} is neither one [low, high] pair nor "
                          f"one per band ({bands} bands); give [low, high] or {bands} pairs")
    if not (arr[:, 0] < arr[:, 1]).all():
        raise ConfigError(f"data.value_range {value_range!r} needs low < high in every pair; "
                          "swap or fix the pairs")
    return arr


def default_scale(dtype: np.dtype | str, scale: float | None) -> float:
    """``scale``, or 255 for uint8 when none is given (today's [0, 1] pixels), else 1."""
    if scale is not None:
        if not scale > 0:
            raise ConfigError(f"data.scale must be > 0, got {scale}; e.g. 10000 for Sentinel-2")
        return float(scale)
    return 255.0 if np.dtype(dtype) == np.uint8 else 1.0


def scale_and_clip(arr: np.ndarray, scale: float | None = None,
                   value_range: ValueRange = None) -> np.ndarray:
    """``[C, H, W]`` pixels -> float32: divided by ``scale`` (``default_scale``), then clipped
    to ``value_range`` (in the scaled units) when one is given."""
    out = arr.astype(np.float32) / np.float32(default_scale(arr.dtype, scale))
    ranges = check_value_range(value_range, arr.shape[0])
    if ranges is not None:
        low = ranges[:, 0].astype(np.float32).reshape(-1, 1, 1)
        high = ranges[:, 1].astype(np.float32).reshape(-1, 1, 1)
        out = np.clip(out, low, high)
    return out


def sample_files(paths: Sequence[str | Path], sample: int, seed: int) -> list[str | Path]:
    """Up to ``sample`` of ``paths``, chosen by ``seed`` alone (in their given order)."""
    if sample >= len(paths):
        return list(paths)
    picked = sorted(random.Random(seed).sample(range(len(paths)), sample))
    return [paths[i] for i in picked]


def band_stats(
    train_paths: Sequence[str | Path],
    sample: int = STATS_SAMPLE,
    seed: int = 0,
    scale: float | None = None,
    value_range: ValueRange = None,
    reader: Callable[[str | Path], np.ndarray] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band (mean, std) over every pixel of a seeded sample of ``train_paths``.

    Pass the training split's files only: statistics from test images leak them into the
    model. Pixels are weighted equally across files of different sizes. A constant band (std
    0, e.g. a sensor's empty band) gets std 1, so normalising it leaves it mean-centred rather
    than dividing by zero. ``reader`` defaults to ``read_image``.
    """
    if not train_paths:
        raise ConfigError("no training files to compute per-band statistics from; check data.root")
    reader = reader or read_image
    total = total_sq = None
    count = 0
    for path in sample_files(train_paths, sample, seed):
        x = scale_and_clip(reader(path), scale, value_range).astype(np.float64)
        sums, sq = x.sum(axis=(1, 2)), np.square(x).sum(axis=(1, 2))
        if total is not None and len(sums) != len(total):
            raise ConfigError(f"{path} has {len(sums)} bands but the files before it have "
                              f"{len(total)}; every training file needs the same bands")
        total = sums if total is None else total + sums
        total_sq = sq if total_sq is None else total_sq + sq
        count += x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
