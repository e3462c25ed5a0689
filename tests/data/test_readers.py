"""Every dataset reader, fed tiny files written here in the dataset's real on-disk format.

The files go through our real readers (``tribyol.data.load_split`` -> torchvision's dataset
classes), so a wrong layout, orientation, label offset or error message shows up here.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import os
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tribyol.data import BadImageError, DatasetNotFoundError, TensorImages, load_split, read_idx, readers
from tribyol.errors import ConfigError

# -- helpers ------------------------------------------------------------------------------------


def pattern(n: int, *shape: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images plus one asymmetric marker each: a transpose or flip breaks them."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 200, size=(n, *shape), dtype=np.uint8)
    data[..., 1, -3] = 255  # near the top-right corner only
    data[..., -3, 1] = 0
    return data


def assert_marker_upright(images: torch.Tensor) -> None:
    """The marker of ``pattern`` is still top-right, so nothing was transposed or flipped."""
    assert (images[..., 1, -3] == 255).all()
    assert (images[..., -3, 1] == 0).all()
    assert (images[..., -3, 1] != images[..., 1, -3]).all()


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (MNIST's format), gzipped when the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    opener = gzip.open if path.suffix == ".gz" else open
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def write_mnist_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
                      gz: bool = False) -> None:
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def existence_only(monkeypatch: pytest.MonkeyPatch, module_name: str) -> None:
    """Replace torchvision's md5 check in ``module_name`` by a file-exists check.

    torchvision compares each file with the md5 of the real, full-size download; our tiny files
    in the real format can never match it, so without this the reader would refuse them. The
    files must still exist: the missing-file behaviour is unchanged.
    """
    import importlib

    module = importlib.import_module(f"torchvision.datasets.{module_name}")
    monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def check_images(data: TensorImages, expected_nchw: np.ndarray, labels: list[int]) -> None:
    assert isinstance(data, TensorImages)
    assert data.images.dtype == torch.uint8
    assert tuple(data.images.shape) == expected_nchw.shape
    assert data.images.is_contiguous()
    assert torch.equal(data.images, torch.from_numpy(expected_nchw))
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == labels


# -- the MNIST family ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls"), [
    ("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"), ("kmnist", "KMNIST"),
])
def test_mnist_family_reads_raw_idx(tmp_path: Path, name: str, cls: str) -> None:
    raw = tmp_path / cls / "raw"
    train, test = pattern(5, 28, 28, seed=1), pattern(3, 28, 28, seed=2)
    write_mnist_split(raw, "train", train, np.array([3, 1, 4, 1, 5], np.uint8))
    write_mnist_split(raw, "t10k", test, np.array([9, 2, 6], np.uint8))

    got = load_split(name, tmp_path, "train")
    check_images(got, train[:, None], [3, 1, 4, 1, 5])
    assert_marker_upright(got.images)
    assert len(got.classes) == 10
    check_images(load_split(name, tmp_path, "test"), test[:, None], [9, 2, 6])
    check_images(load_split(name, tmp_path, "pretrain"), train[:, None], [3, 1, 4, 1, 5])


@pytest.mark.parametrize(("name", "cls"), [
    ("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"), ("kmnist", "KMNIST"),
])
def test_mnist_family_reads_the_published_gz_files_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, cls: str
) -> None:
    # A copy of the archives as published (shared/data/MNIST/raw holds only the four .gz
    # files): read as they are, with no --download and nothing written next to them.
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    raw = tmp_path / cls / "raw"
    train, test = pattern(5, 28, 28, seed=3), pattern(3, 28, 28, seed=4)
    write_mnist_split(raw, "train", train, np.array([3, 1, 4, 1, 5], np.uint8), gz=True)
    write_mnist_split(raw, "t10k", test, np.array([9, 2, 6], np.uint8), gz=True)
    before = sorted(p.name for p in raw.iterdir())

    got = load_split(name, tmp_path, "train")
    check_images(got, train[:, None], [3, 1, 4, 1, 5])
    assert_marker_upright(got.images)
    assert len(got.classes) == 10
    check_images(load_split(name, tmp_path, "test"), test[:, None], [9, 2, 6])
    assert sorted(p.name for p in raw.iterdir()) == before
    # a broken .gz is named as unreadable, not as missing
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetNotFoundError, match="are there but cannot be read"):
        load_split(name, tmp_path, "test")


def test_a_file_given_as_the_data_root_is_named_as_a_file(tmp_path: Path) -> None:
    root = tmp_path / "config.yaml"
    root.write_text("not a folder\n")
    for name in ("mnist", "cifar10", "folder"):
        with pytest.raises(DatasetNotFoundError, match="is a file, not a folder") as err:
            load_split(name, root, "train")
        assert "does not exist" not in str(err.value) and "not found" not in str(err.value)


def test_read_idx_gz_and_plain_agree(tmp_path: Path) -> None:
    data = pattern(2, 5, 7)
    write_idx(tmp_path / "a-idx3-ubyte", data)
    write_idx(tmp_path / "a-idx3-ubyte.gz", data)
    for path in (tmp_path / "a-idx3-ubyte", tmp_path / "a-idx3-ubyte.gz"):
        got = read_idx(path)
        assert got.shape == (2, 5, 7) and np.array_equal(got, data)
    (tmp_path / "bad").write_bytes(struct.pack(">HBB", 0, 0x0D, 1) + b"\0" * 8)  # float IDX
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(tmp_path / "bad")


# -- Fashion-MNIST: the Debian package fallback -------------------------------------------------


def debian_copy(tmp_path: Path, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path / "debian" / "fashion-mnist"
    train, test = pattern(4, 28, 28, seed=seed), pattern(2, 28, 28, seed=seed + 1)
    write_mnist_split(folder, "train", train, np.array([0, 9, 8, 7], np.uint8), gz=True)
    write_mnist_split(folder, "t10k", test, np.array([5, 6], np.uint8), gz=True)
    return folder, train, test


def test_fashionmnist_falls_back_to_debian_package(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder, train, test = debian_copy(tmp_path, seed=3)
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", folder)
    empty = tmp_path / "empty"

    got = load_split("fashionmnist", empty, "train")
    check_images(got, train[:, None], [0, 9, 8, 7])
    assert_marker_upright(got.images)
    assert got.classes[0] == "T-shirt/top" and len(got.classes) == 10
    check_images(load_split("fashionmnist", empty, "test"), test[:, None], [5, 6])


def test_fashionmnist_prefers_own_files_over_debian(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = debian_copy(tmp_path, seed=3)
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", folder)
    own = pattern(2, 28, 28, seed=11)
    write_mnist_split(tmp_path / "FashionMNIST" / "raw", "train", own, np.array([1, 2], np.uint8))
    write_mnist_split(tmp_path / "FashionMNIST" / "raw", "t10k", own, np.array([1, 2], np.uint8))
    check_images(load_split("fashionmnist", tmp_path, "train"), own[:, None], [1, 2])


def test_fashionmnist_broken_debian_copy_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "debian"
    folder.mkdir()  # the package folder exists but holds no files
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", folder)
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("fashionmnist", tmp_path / "data", "train")
    message = str(err.value)
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in message
    assert str(folder) in message and "--download" in message


@pytest.mark.skipif(not readers.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian's dataset-fashion-mnist package is not installed")
def test_real_debian_fashion_mnist_test_split(tmp_path: Path) -> None:
    """The real files, where the package is installed: the known first labels and balance."""
    data = load_split("fashionmnist", tmp_path / "empty", "test")
    assert tuple(data.images.shape) == (10000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # Zalando's test order
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    assert data.classes[9] == "Ankle boot"


# -- USPS ---------------------------------------------------------------------------------------


def write_usps(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """libsvm lines ``label idx:value ...``: labels 1..10, 256 values in [-1, 1]."""
    # The middle of each uint8 level, so torchvision's float32 maths truncates back to it.
    values = np.where(images == 255, 1.0, (2 * images.astype(np.float64) + 1) / 255 - 1)
    lines = []
    for label, row in zip(labels, values.reshape(len(images), -1), strict=True):
        pairs = " ".join(f"{i + 1}:{v:.9f}" for i, v in enumerate(row))
        lines.append(f"{label + 1} {pairs}\n")
    with bz2.open(path, "wt") as f:
        f.writelines(lines)


def test_usps_reads_libsvm_bz2(tmp_path: Path) -> None:
    train, test = pattern(3, 16, 16, seed=4), pattern(2, 16, 16, seed=5)
    train[0, 0, 0], train[0, 0, 1] = 0, 255  # the ends of the range: -1 and 1
    write_usps(tmp_path / "usps.bz2", train, [0, 9, 4])
    write_usps(tmp_path / "usps.t.bz2", test, [7, 7])

    got = load_split("usps", tmp_path, "train")
    check_images(got, train[:, None], [0, 9, 4])
    assert_marker_upright(got.images)
    check_images(load_split("usps", tmp_path, "test"), test[:, None], [7, 7])


# -- SVHN ---------------------------------------------------------------------------------------


def test_svhn_reads_mat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.io import savemat

    existence_only(monkeypatch, "svhn")
    images = pattern(4, 3, 32, 32, seed=6)  # N, C, H, W
    digits = [0, 1, 9, 0]
    stored_y = np.array([[10 if d == 0 else d] for d in digits], np.uint8)  # 10 means 0
    savemat(tmp_path / "train_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored_y})
    savemat(tmp_path / "test_32x32.mat", {"X": images[:1].transpose(2, 3, 1, 0),
                                          "y": stored_y[:1]})

    got = load_split("svhn", tmp_path, "train")
    check_images(got, images, digits)
    assert_marker_upright(got.images)
    check_images(load_split("svhn", tmp_path, "test"), images[:1], [0])


# -- CIFAR --------------------------------------------------------------------------------------


def dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 3, 32, 32] -> CIFAR's rows of 3072 bytes: all red, then green, then blue."""
    return images.reshape(len(images), 3 * 32 * 32)


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    train = pattern(10, 3, 32, 32, seed=7)
    train_labels = [i % 10 for i in range(7, 17)]
    for b in range(5):  # two images in each of data_batch_1..5
        part = slice(2 * b, 2 * b + 2)
        dump(folder / f"data_batch_{b + 1}",
             {"data": cifar_rows(train[part]), "labels": train_labels[part],
              "batch_label": f"training batch {b + 1} of 5"})
    test = pattern(3, 3, 32, 32, seed=8)
    dump(folder / "test_batch", {"data": cifar_rows(test), "labels": [2, 0, 1]})
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_vis": 3072})
    return train, train_labels, test, [2, 0, 1]


def test_cifar10_reads_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    existence_only(monkeypatch, "cifar")
    train, train_labels, test, test_labels = write_cifar10(tmp_path)

    got = load_split("cifar10", tmp_path, "train")
    check_images(got, train, train_labels)
    assert_marker_upright(got.images)
    assert got.classes == CIFAR10_NAMES
    check_images(load_split("cifar10", tmp_path, "test"), test, test_labels)


def test_cifar100_reads_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    existence_only(monkeypatch, "cifar")
    folder = tmp_path / "cifar-100-python"
    train, test = pattern(4, 3, 32, 32, seed=9), pattern(2, 3, 32, 32, seed=10)
    dump(folder / "train", {"data": cifar_rows(train), "fine_labels": [99, 0, 42, 7],
                            "coarse_labels": [19, 0, 3, 1]})
    dump(folder / "test", {"data": cifar_rows(test), "fine_labels": [5, 98],
                           "coarse_labels": [1, 2]})
    names = [f"class{i:03d}" for i in range(100)]
    dump(folder / "meta", {"fine_label_names": names,
                           "coarse_label_names": [f"super{i}" for i in range(20)]})

    got = load_split("cifar100", tmp_path, "train")
    check_images(got, train, [99, 0, 42, 7])  # fine labels, not coarse ones
    assert_marker_upright(got.images)
    assert got.classes == names
    check_images(load_split("cifar100", tmp_path, "test"), test, [5, 98])


def test_cifar_files_present_but_corrupt_say_so(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # real md5 check: our tiny files fail it, like a broken download
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("cifar10", tmp_path, "train")
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "corrupt" in message and "--download" in message


# -- STL-10 -------------------------------------------------------------------------------------


def write_stl_images(path: Path, images: np.ndarray) -> None:
    """STL-10's .bin: uint8, each channel stored column-major (torchvision transposes back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def test_stl10_reads_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    existence_only(monkeypatch, "stl10")
    folder = tmp_path / "stl10_binary"
    train, unlabeled, test = (pattern(n, 3, 96, 96, seed=s) for n, s in ((2, 11), (3, 12), (2, 13)))
    write_stl_images(folder / "train_X.bin", train)
    (folder / "train_y.bin").write_bytes(bytes([1, 10]))  # 1-based on disk
    write_stl_images(folder / "unlabeled_X.bin", unlabeled)
    write_stl_images(folder / "test_X.bin", test)
    (folder / "test_y.bin").write_bytes(bytes([4, 2]))
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")

    got = load_split("stl10", tmp_path, "train")
    check_images(got, train, [0, 9])
    assert_marker_upright(got.images)
    assert got.classes == names
    check_images(load_split("stl10", tmp_path, "test"), test, [3, 1])
    pretrain = load_split("stl10", tmp_path, "pretrain")  # train + unlabeled
    check_images(pretrain, np.concatenate([train, unlabeled]), [0, 9, -1, -1, -1])


# -- missing files ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "where", "file"), [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("fashionmnist", "FashionMNIST/raw", "train-images-idx3-ubyte"),
    ("kmnist", "KMNIST/raw", "train-labels-idx1-ubyte"),
    ("usps", "", "usps.bz2"),
    ("svhn", "", "train_32x32.mat"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("cifar100", "cifar-100-python", "meta"),
    ("stl10", "stl10_binary", "unlabeled_X.bin"),
])
def test_missing_files_name_the_path_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, where: str, file: str
) -> None:
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        load_split(name, root, "pretrain")
    message = str(err.value)
    assert f"looked in {root / where if where else root} " in message
    assert file in message
    assert "--download" in message and "--data-root" in message
    assert isinstance(err.value, FileNotFoundError)  # the CLI reports these without a traceback
    assert not root.exists()  # nothing fetched or created without --download


def test_failed_download_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    import torchvision.datasets.mnist as tv_mnist

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("mnist", tmp_path, "train", download=True)
    message = str(err.value)
    assert "--download could not fetch" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "internet" in message


# -- scikit-learn digits ------------------------------------------------------------------------


def test_digits_split_is_a_stratified_partition_of_the_real_images() -> None:
    from sklearn.datasets import load_digits

    train, test = load_split("digits", "unused", "train"), load_split("digits", "unused", "test")
    assert tuple(train.images.shape) == (1437, 1, 8, 8)
    assert tuple(test.images.shape) == (360, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert torch.equal(load_split("digits", "unused", "pretrain").images, train.images)

    digits = load_digits()
    original = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    expected = Counter((img.tobytes(), int(y)) for img, y in zip(original, digits.target,
                                                                 strict=True))
    got = Counter(
        (img[0].numpy().tobytes(), int(y))
        for part in (train, test) for img, y in zip(part.images, part.labels, strict=True)
    )
    assert got == expected  # every real image once, with its own label, none invented
    assert torch.bincount(test.labels, minlength=10).min() >= 35  # stratified: ~36 per class


# -- image folders ------------------------------------------------------------------------------


def save(path: Path, array: np.ndarray, **kwargs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def quadrants(h: int, w: int) -> np.ndarray:
    """Top-left red, top-right green, bottom-left blue, bottom-right white."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = 255
    return img


def assert_quadrants(image: torch.Tensor, tol: int) -> None:
    s = image.shape[-1]
    a, b = s // 5, s - 1 - s // 5
    for (y, x), colour in (((a, a), (255, 0, 0)), ((a, b), (0, 255, 0)),
                           ((b, a), (0, 0, 255)), ((b, b), (255, 255, 255))):
        got = image[:, y, x].int()
        assert (got - torch.tensor(colour)).abs().max() <= tol, (y, x, got.tolist(), colour)


def test_folder_reads_any_size_to_image_size(tmp_path: Path) -> None:
    exact = pattern(1, 32, 32, 3, seed=14)[0]  # already image_size: decoded untouched
    save(tmp_path / "cat" / "a_exact.png", exact)
    save(tmp_path / "cat" / "b_big.png", quadrants(512, 512))
    save(tmp_path / "dog" / "c_wide.jpg", quadrants(384, 512), quality=95)
    save(tmp_path / "dog" / "d_small.png", quadrants(20, 24))  # upscaled
    (tmp_path / "dog" / "notes.txt").write_text("not an image")

    data = load_split("folder", tmp_path, "train", image_size=32)
    assert data.classes == ["cat", "dog"] and len(data) == 4
    images, labels = data[[0, 1, 2, 3]]
    assert images.dtype == torch.uint8 and tuple(images.shape) == (4, 3, 32, 32)
    assert labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(images[0], torch.from_numpy(exact).permute(2, 0, 1))
    assert_quadrants(images[1], tol=2)
    assert_quadrants(images[2], tol=40)  # JPEG
    assert_quadrants(images[3], tol=2)


def test_folder_resize_then_centre_crop(tmp_path: Path) -> None:
    big = pattern(1, 64, 48, 3, seed=17)[0]  # 48 wide, 64 high
    save(tmp_path / "a" / "1.png", big)
    # Shorter side already 48: no resampling, just the centre 32 x 32 (8 px off each side).
    data = load_split("folder", tmp_path, "train", image_size=32, resize=48)
    got = data[[0]][0][0]
    assert torch.equal(got, torch.from_numpy(big[16:48, 8:40]).permute(2, 0, 1))


def test_folder_grayscale_and_sixteen_bit(tmp_path: Path) -> None:
    gray = pattern(1, 16, 16, seed=15)[0]
    save(tmp_path / "scans" / "a.png", gray)
    save(tmp_path / "scans" / "b.png", np.full((16, 16, 3), 77, np.uint8))  # RGB file

    data = load_split("folder", tmp_path, "train", image_size=16, channels=1)
    images, _ = data[[0, 1]]
    assert tuple(images.shape) == (2, 1, 16, 16) and images.dtype == torch.uint8
    assert torch.equal(images[0, 0], torch.from_numpy(gray))
    assert (images[1] == 77).all()
    rgb = load_split("folder", tmp_path, "train", image_size=16, channels=3)[[0]][0]
    assert tuple(rgb.shape) == (1, 3, 16, 16) and torch.equal(rgb[0, 0], rgb[0, 2])
    # A 16-bit scan keeps its 16 bits (PIL alone clips them to 255; 8 bits would drop 8), so
    # its folder reads every file as it is: one RGB file among grayscale ones is named.
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)  # 16-bit: 0..65535
    save(tmp_path / "scans" / "c.png", ramp)
    with pytest.raises(ConfigError, match="b.png has 3 bands of uint8 but .*a.png has 1 band"):
        load_split("folder", tmp_path, "train", image_size=16, channels=1)
    (tmp_path / "scans" / "a.png").unlink()
    (tmp_path / "scans" / "b.png").unlink()
    images = load_split("folder", tmp_path, "train", image_size=16, channels=None)[[0]][0]
    assert images.dtype == torch.uint16 and torch.equal(images[0, 0], torch.from_numpy(ramp))


def test_folder_applies_exif_orientation(tmp_path: Path) -> None:
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, 32:] = 255  # left half dark, right half bright, as stored
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "photos" / "phone.jpg"
    path.parent.mkdir()
    image.save(path, exif=exif, quality=95)

    got = load_split("folder", tmp_path, "train", image_size=32)[[0]][0][0].float()
    # Displayed upright the dark half is on top: top rows dark, bottom rows bright.
    assert got[:, :12].mean() < 30 and got[:, -12:].mean() > 225
    assert abs(got[:, :, :12].mean() - got[:, :, -12:].mean()) < 10


def test_folder_skips_and_logs_a_corrupt_file(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    good = pattern(1, 8, 8, 3, seed=16)[0]
    save(tmp_path / "a" / "1.png", good)
    (tmp_path / "a" / "2_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    save(tmp_path / "b" / "3.png", 255 - good)

    data = load_split("folder", tmp_path, "train", image_size=8)
    with caplog.at_level(logging.WARNING):
        images, labels = data[[0, 1, 2, 1]]
    assert tuple(images.shape) == (4, 3, 8, 8)
    # The broken file is replaced by the next good one (3.png, class b).
    assert torch.equal(images[1], torch.from_numpy(255 - good).permute(2, 0, 1))
    assert labels.tolist() == [0, 1, 1, 1]
    warnings = [r for r in caplog.records if "2_broken.png" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # logged once


def test_folder_bad_images_error_names_the_file(tmp_path: Path) -> None:
    save(tmp_path / "a" / "1.png", pattern(1, 8, 8, 3)[0])
    (tmp_path / "a" / "2_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    data = load_split("folder", tmp_path, "train", image_size=8, bad_images="error")
    assert data[[0]][0].shape == (1, 3, 8, 8)
    with pytest.raises(BadImageError, match="2_broken.jpg"):
        data[[1]]


def test_folder_split_folders_and_missing_ones(tmp_path: Path) -> None:
    save(tmp_path / "train" / "x" / "1.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "train" / "y" / "2.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "test" / "y" / "3.png", np.full((8, 8, 3), 9, np.uint8))
    assert len(load_split("folder", tmp_path, "pretrain", image_size=8)) == 2
    test = load_split("folder", tmp_path, "test", image_size=8)
    assert len(test) == 1 and int(test[[0]][0].max()) == 9

    flat = tmp_path / "flat"
    save(flat / "x" / "1.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="test"):
        load_split("folder", flat, "test", image_size=8)
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nowhere")):
        load_split("folder", tmp_path / "nowhere", "train")


def test_folder_skips_hidden_and_empty_class_folders_and_hidden_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Jupyter's checkpoints, macOS's ._ files and an empty class folder are not classes."""
    for name, value in (("a", 10), ("c", 30)):
        save(tmp_path / name / "1.png", np.full((8, 8, 3), value, np.uint8))
    save(tmp_path / ".ipynb_checkpoints" / "x.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b_empty").mkdir()
    (tmp_path / "b_empty" / "readme.txt").write_text("no images here")
    (tmp_path / "a" / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    save(tmp_path / "c" / ".ipynb_checkpoints" / "1-checkpoint.png", np.zeros((8, 8, 3), np.uint8))

    with caplog.at_level(logging.WARNING, logger="tribyol"):
        data = load_split("folder", tmp_path, "train", image_size=8)
    assert data.classes == ["a", "c"] and len(data) == 2
    images, labels = data[[0, 1]]
    assert labels.tolist() == [0, 1]
    assert images[0].unique().tolist() == [10] and images[1].unique().tolist() == [30]
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1, notes
    for what in (".ipynb_checkpoints", "b_empty", "2 hidden image files"):
        assert what in notes[0], notes[0]

    (tmp_path / "no_images" / "k").mkdir(parents=True)
    (tmp_path / "no_images" / "k" / "readme.txt").write_text("a class folder, but no images")
    with pytest.raises(FileNotFoundError, match="no images"):
        load_split("folder", tmp_path / "no_images", "train", image_size=8)
    (tmp_path / "only_hidden" / ".git").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_split("folder", tmp_path / "only_hidden", "train", image_size=8)


def test_split_tools_refuse_bad_arguments_before_touching_a_file(tmp_path: Path, capsys) -> None:
    """`python -m tribyol.data split` and `ucmerced-split`: one error line, exit 2, and a
    user's file named as the output is never written over."""
    from tribyol.data import folder_split, ucmerced

    (tmp_path / "src" / "a").mkdir(parents=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for argv, message in [([str(tmp_path / "src"), str(tmp_path / "out"), "--test-fraction", "1.5"],
                           "--test-fraction must be in (0, 1)"),
                          ([str(notes), str(tmp_path / "out")], "is not a folder of class folders"),
                          ([str(tmp_path / "src"), str(notes)], "is a file; pick a new folder")]:
        with pytest.raises(SystemExit) as info:
            folder_split.main(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err
    assert ucmerced.main([str(tmp_path / "src"), str(notes)]) == 2
    assert "already exists" in capsys.readouterr().err and notes.read_text() == "mine"
    assert not (tmp_path / "out").exists()
