"""The folder reader for evaluation: labels by class name, corrupt files left out, and a
fingerprint that changes with the files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tribyol.data import FolderImages, TensorImages


def folder(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            value = np.full((8, 8, 3), 40 * (i + 1), dtype=np.uint8)
            Image.fromarray(value).save(root / name / f"{i}.png")
    return root


def test_with_classes_labels_by_name(tmp_path: Path) -> None:
    images = FolderImages(folder(tmp_path / "test", {"a": 1, "c": 2, "d": 1}), image_size=8)
    assert images.classes == ["a", "c", "d"] and images.labels.tolist() == [0, 1, 1, 2]
    named = images.with_classes(["a", "b", "c", "d"])
    assert named.classes == ["a", "b", "c", "d"] and named.labels.tolist() == [0, 2, 2, 3]
    assert named[[1, 3]][1].tolist() == [2, 3]  # the labels a batch carries follow
    assert images.labels.tolist() == [0, 1, 1, 2]  # the original is untouched
    tensors = TensorImages(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([1, -1, 0]),
                           ["y", "x"])
    assert tensors.with_classes(["x", "z", "y"]).labels.tolist() == [0, -1, 2]


def test_drop_mode_labels_a_corrupt_file_minus_one(tmp_path: Path) -> None:
    root = folder(tmp_path / "imgs", {"a": 3})
    (root / "a" / "1.png").write_bytes(b"broken")
    skip = FolderImages(root, image_size=8)
    x, y = skip[[0, 1, 2]]
    assert y.tolist() == [0, 0, 0] and torch.equal(x[1], x[2])  # pre-training: a stand-in
    drop = FolderImages(root, image_size=8, bad_images="drop")
    x, y = drop[[0, 1, 2]]
    assert y.tolist() == [0, -1, 0] and not x[1].any() and x[2].any()
    assert drop.bad_files == {str(root / "a" / "1.png")}


def test_fingerprint_follows_the_files(tmp_path: Path) -> None:
    root = folder(tmp_path / "imgs", {"a": 2, "b": 2})
    first = FolderImages(root, image_size=8).fingerprint()
    assert FolderImages(root, image_size=8).fingerprint() == first
    assert FolderImages(root, image_size=16).fingerprint() != first
    os.rename(root / "a", root / "t")  # swap the two classes' files, names and sizes kept
    os.rename(root / "b", root / "a")
    os.rename(root / "t", root / "b")
    swapped = FolderImages(root, image_size=8).fingerprint()
    assert swapped != first
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "a" / "0.png")
    assert FolderImages(root, image_size=8).fingerprint() not in (first, swapped)
