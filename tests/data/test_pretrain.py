"""The pre-training set: a folder's default view size, and ``data.limit``'s seeded subsets."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tribyol.data import FolderImages, TensorImages
from tribyol.data.pretrain import MAX_DEFAULT_VIEW_SIZE, data_info_for, load_pretrain_data
from tribyol.data.sampling import limit_indices


def folder(root: Path, sizes: dict[str, list[tuple[int, int]]], seed: int = 0) -> Path:
    """``root/<class>/<i>.png``, one random RGB image per (height, width), classes in order."""
    rng = np.random.default_rng(seed)
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(shapes):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                root / name / f"{i:03d}.png")
    return root


def folder_cfg(tiny, root: Path, *overrides: tuple[str, object]):
    return tiny(("data.dataset", "folder"), ("data.root", str(root)), ("data.limit", None),
                *overrides)


def upscale_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "upscaled" in r.getMessage()]


def test_folder_of_small_images_trains_at_their_own_size(
    tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 px images: 20 px views (not the preset 224), decoded with the usual 8/7 margin."""
    root = folder(tmp_path / "imgs", {"a": [(20, 20)] * 5, "b": [(20, 20)] * 4 + [(40, 24)] * 2})
    cfg = folder_cfg(tiny, root)
    with caplog.at_level(logging.INFO, logger="tribyol"):
        data = load_pretrain_data(cfg)
    assert isinstance(data, FolderImages) and data.view_size == 20
    images, _ = data[[0, 9]]
    assert tuple(images.shape) == (2, 3, 23, 23)  # round(20 * 8 / 7): room for random crops
    info = data_info_for(cfg, data)
    assert (info.image_size, info.channels, info.num_classes) == (20, 3, 2)
    assert not upscale_warnings(caplog)


def test_folder_default_view_size_is_capped(tiny, tmp_path: Path) -> None:
    root = folder(tmp_path / "imgs", {"a": [(300, 260)] * 2})
    data = load_pretrain_data(folder_cfg(tiny, root))
    assert data.view_size == MAX_DEFAULT_VIEW_SIZE == 224 and data.image_size == 256


def test_folder_forced_upscale_is_kept_with_a_warning(
    tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = folder(tmp_path / "imgs", {"a": [(20, 20)] * 3})
    cfg = folder_cfg(tiny, root, ("data.image_size", 224))
    with caplog.at_level(logging.INFO, logger="tribyol"):
        data = load_pretrain_data(cfg)
    assert data_info_for(cfg, data).image_size == 224 and data.image_size == 256
    (warning,) = upscale_warnings(caplog)
    assert "20 px" in warning and "224 px" in warning and "--set data.image_size=20" in warning

    caplog.clear()  # 2x exactly is not warned about
    with caplog.at_level(logging.INFO, logger="tribyol"):
        load_pretrain_data(folder_cfg(tiny, root, ("data.image_size", 40)))
    assert not upscale_warnings(caplog)


def test_folder_limit_is_a_seeded_stratified_subset(tiny, tmp_path: Path) -> None:
    """Classes in order on disk: the first 8 files would all be class a."""
    root = folder(tmp_path / "imgs", {"a": [(8, 8)] * 12, "b": [(8, 8)] * 12})

    def picked(seed: int) -> list[Path]:
        data = load_pretrain_data(folder_cfg(tiny, root, ("data.limit", 8), ("data.channels", 1),
                                             ("train.seed", seed)))
        assert isinstance(data, FolderImages) and len(data) == 8
        assert Counter(data.labels.tolist()) == {0: 4, 1: 4}
        images, labels = data[list(range(8))]
        assert tuple(images.shape) == (8, 1, 9, 9) and labels.tolist() == data.labels.tolist()
        info = data_info_for(tiny(("data.dataset", "folder")), data)
        assert (info.channels, info.num_classes, info.num_train_images) == (1, 2, 8)
        return [path for path, _ in data.samples]

    assert picked(0) == picked(0)
    assert picked(0) != picked(1)


def test_in_memory_limit_is_a_seeded_stratified_subset(tiny) -> None:
    full = load_pretrain_data(tiny(("data.limit", None)))

    def picked(seed: int) -> TensorImages:
        data = load_pretrain_data(tiny(("data.limit", 50), ("train.seed", seed)))
        assert isinstance(data, TensorImages) and len(data) == 50
        assert sorted(Counter(data.labels.tolist()).values()) == [5] * 10  # digits: ~balanced
        return data

    a, b = picked(0), picked(1)
    assert torch.equal(a.images, picked(0).images)
    assert not torch.equal(a.images, b.images)
    # Real images of the full set, in its order.
    index = [int(((full.images == image).flatten(1).all(1)).nonzero()[0]) for image in a.images]
    assert index == sorted(index)


def test_limit_indices_keeps_unlabelled_as_a_stratum_and_the_exact_count() -> None:
    labels = torch.tensor([-1] * 60 + [0] * 20 + [1] * 20)  # STL-10's train+unlabeled, in small
    idx = limit_indices(labels, 10, seed=3)
    assert len(idx) == 10 and Counter(labels[idx].tolist()) == {-1: 6, 0: 2, 1: 2}
    assert len(limit_indices(torch.arange(5), 3, seed=0)) == 3  # fewer than one per class
    unlabelled = torch.full((30,), -1)
    assert not torch.equal(limit_indices(unlabelled, 5, 0), limit_indices(unlabelled, 5, 1))
    assert torch.equal(limit_indices(labels, 200, 0), torch.arange(100))


def test_grayscale_folder_takes_the_luma_weighted_statistics(tiny, tmp_path: Path) -> None:
    """One rule for statistics across a channel change, in pre-training as in evaluation: a
    folder read as grayscale normalises with the luma-weighted ImageNet mean and std (it used
    to fall back to 0.5)."""
    root = folder(tmp_path / "imgs", {"a": [(20, 20)] * 4, "b": [(20, 20)] * 4})
    cfg = folder_cfg(tiny, root, ("data.channels", 1))
    info = data_info_for(cfg, load_pretrain_data(cfg))
    # 0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406 and the same weights over (0.229, 0.224, 0.225)
    assert info.channels == 1
    assert info.mean == pytest.approx((0.458971,), abs=1e-6)
    assert info.std == pytest.approx((0.225609,), abs=1e-6)
