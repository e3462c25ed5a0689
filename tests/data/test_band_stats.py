"""Per-band statistics from a seeded sample of training files, after scale and clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tribyol.augment.bands import to_float
from tribyol.data.band_stats import band_stats, sample_files, scale_and_clip
from tribyol.errors import ConfigError


def npy_files(root: Path, n: int = 6, bands: int = 4, dtype=np.uint16, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = root / f"{i}.npy"
        np.save(path, rng.integers(0, 10000, (bands, 5, 5)).astype(dtype))
        paths.append(path)
    return paths


def test_stats_match_numpy_over_all_pixels(tmp_path: Path) -> None:
    paths = npy_files(tmp_path)
    mean, std = band_stats(paths, scale=10000)
    stack = np.stack([np.load(p) for p in paths]).astype(np.float64) / 10000
    assert isinstance(mean, tuple) and all(isinstance(m, float) for m in mean + std)
    np.testing.assert_allclose(mean, stack.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, stack.std(axis=(0, 2, 3)), rtol=1e-5)


def test_sample_is_seeded_and_a_subset(tmp_path: Path) -> None:
    paths = [f"f{i}" for i in range(100)]
    a, b, c = sample_files(paths, 10, 0), sample_files(paths, 10, 0), sample_files(paths, 10, 1)
    assert a == b and a != c and len(a) == 10 and set(a) <= set(paths)
    assert sample_files(paths, 500, 0) == paths
    files = npy_files(tmp_path, n=8)
    assert band_stats(files, sample=3, seed=0) == band_stats(files, sample=3, seed=0)
    assert band_stats(files, sample=3, seed=0) != band_stats(files, sample=3, seed=5)


def test_value_range_clips_in_scaled_units(tmp_path: Path) -> None:
    paths = npy_files(tmp_path)
    mean, std = band_stats(paths, scale=10000, value_range=(0.2, 0.3))
    assert all(0.2 <= m <= 0.3 for m in mean) and all(s <= 0.05 for s in std)
    per_band = [(0.0, 0.1), (0.0, 1.0), (0.5, 0.6), (0.9, 1.0)]
    mean, _ = band_stats(paths, scale=10000, value_range=per_band)
    assert mean[0] <= 0.1 and 0.5 <= mean[2] <= 0.6 and mean[3] >= 0.9
    with pytest.raises(ConfigError, match="per band"):
        band_stats(paths, value_range=[(0, 1), (0, 1)])
    with pytest.raises(ConfigError, match="low < high"):
        band_stats(paths, value_range=(1, 0))


def test_numpy_and_device_paths_agree() -> None:
    """``scale_and_clip`` (statistics) and ``to_float`` (views) do the same arithmetic."""
    rng = np.random.default_rng(1)
    for dtype, scale, value_range in [(np.uint8, None, None), (np.uint16, 10000.0, (0.0, 0.5)),
                                      (np.int16, None, [(-1000, 400), (-100, 100)])]:
        x = rng.integers(-2000 if dtype == np.int16 else 0, 255 if dtype == np.uint8 else 9000,
                         (2, 4, 4)).astype(dtype)
        ours = scale_and_clip(x, scale, value_range)
        views = to_float(torch.from_numpy(x)[None], scale, value_range)[0].numpy()
        np.testing.assert_allclose(ours, views, rtol=1e-6)
    assert scale_and_clip(np.full((1, 1, 1), 255, np.uint8)).item() == 1.0  # uint8: today's /255


def test_constant_band_gets_std_one_and_bad_input(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.stack([np.zeros((3, 3)), np.arange(9.0).reshape(3, 3)]).astype(np.float32))
    mean, std = band_stats([tmp_path / "a.npy"])
    assert std[0] == 1.0 and mean[0] == 0.0 and std[1] == pytest.approx(np.arange(9.0).std())
    with pytest.raises(ConfigError):
        band_stats([])
    with pytest.raises(ConfigError, match="data.scale"):
        band_stats([tmp_path / "a.npy"], scale=0)
    np.save(tmp_path / "b.npy", np.zeros((3, 3, 3), np.float32))
    with pytest.raises(ConfigError, match="b.npy"):
        band_stats([tmp_path / "a.npy", tmp_path / "b.npy"])
