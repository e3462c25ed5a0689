"""The readers of the registry's datasets: ``(root, split, download, **options) -> image set``.

The eight benchmarks are read with the real torchvision readers (download only on request), and
a missing, truncated or corrupt file is one ``DatasetNotFoundError`` that names it; the MNIST
family's original ``.gz`` files are read as they are; ``fashionmnist`` also finds Debian's
``dataset-fashion-mnist`` package; ``digits`` is scikit-learn's 8x8 digits; ``folder`` reads the
user's own ImageFolder trees of any size.
"""

from __future__ import annotations

import gzip
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tribyol.config.fields import option_name
from tribyol.data.images import FolderImages, TensorImages
from tribyol.errors import DatasetNotFoundError

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _as_images(array: Any, layout: str) -> torch.Tensor:
    """numpy/tensor in ``layout`` (NHW, NHWC or NCHW) -> contiguous uint8 NCHW tensor."""
    data = torch.as_tensor(np.array(array))  # a copy: readers may hand read-only buffers
    if data.dtype != torch.uint8:
        data = data.clamp(0, 255).to(torch.uint8)
    if layout == "NHW":
        data = data.unsqueeze(1)
    elif layout == "NHWC":
        data = data.permute(0, 3, 1, 2)
    return data.contiguous()


# What each torchvision reader needs, relative to the data root. The MNIST family, CIFAR and
# STL-10 readers check every file of the archive (CIFAR and STL-10 by md5) whichever split is
# asked for.
_MNIST_FAMILY = ("MNIST", "FashionMNIST", "KMNIST")
_MNIST_FILES = [f"{prefix}-{kind}-ubyte" for prefix in ("train", "t10k")
                for kind in ("images-idx3", "labels-idx1")]
_CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_STL10_FILES = ["train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"]


def _expected_files(cls_name: str, split: str) -> tuple[str, list[str]]:
    """(folder under the root, file names in it) that torchvision's ``cls_name`` reads."""
    if cls_name in _MNIST_FAMILY:  # torchvision wants both splits' files for either split
        return f"{cls_name}/raw", _MNIST_FILES
    if cls_name == "USPS":
        return "", ["usps.bz2" if split == "train" else "usps.t.bz2"]
    if cls_name == "SVHN":
        return "", [f"{split}_32x32.mat"]
    if cls_name == "CIFAR10":
        return "cifar-10-batches-py", _CIFAR10_FILES
    if cls_name == "CIFAR100":
        return "cifar-100-python", ["train", "test", "meta"]
    if cls_name == "STL10":
        return "stl10_binary", _STL10_FILES
    raise KeyError(cls_name)


def _not_found(name: str, path: Path, err: Exception, expected: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found: looked in {path} for {expected} ({err}). Put the files there, point "
        f"{option_name('--data-root')} at the folder that holds them, or pass "
        f"{option_name('--download')} to fetch them (needs internet)."
    )


def _unreadable(name: str, path: Path, err: Exception) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: the files in {path} are there but cannot be read ({err}); they are probably "
        f"truncated, corrupt or not the official files (CIFAR, SVHN and STL-10 must match "
        f"their md5 sums). Pass {option_name('--download')} to fetch them again (needs "
        f"internet), or replace them."
    )


def _gzipped_idx(root: Path, cls_name: str) -> Path | None:
    """The MNIST family's raw folder when it holds the original ``.gz`` files but not the
    unpacked ones torchvision reads (a copy of the archives as published); else None. Those are
    read as they are: torchvision would call them missing, or unpack them only with download."""
    if cls_name not in _MNIST_FAMILY:
        return None
    folder = root / cls_name / "raw"
    missing = [f for f in _MNIST_FILES if not (folder / f).is_file()]
    if missing and all((folder / f"{f}.gz").is_file() for f in missing):
        return folder
    return None


def torchvision_reader(cls_name: str, layout: str) -> Callable[..., TensorImages]:
    """A reader built on ``torchvision.datasets.<cls_name>``."""

    def read(root: str | Path, split: str, download: bool = False, **_: Any) -> TensorImages:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        root = Path(root)
        gzipped = _gzipped_idx(root, cls_name)
        if gzipped is not None and not download:
            try:
                return _read_idx_folder(gzipped, split, tuple(cls.classes))
            except (OSError, ValueError, EOFError) as err:
                raise _unreadable(cls_name, gzipped, err) from err
        if cls_name in ("SVHN", "STL10"):
            kwargs: dict[str, Any] = {"split": split}
        else:
            kwargs = {"train": split == "train"}
        try:
            ds = cls(str(root), download=download, **kwargs)
        except (RuntimeError, OSError, ValueError, EOFError) as err:
            # ValueError / EOFError: a truncated pickle, .mat or bz2 file.
            sub, files = _expected_files(cls_name, split)
            folder = root / sub if sub else root
            missing = [f for f in files if not (folder / f).is_file()]
            if download:
                raise DatasetNotFoundError(
                    f"{cls_name}: {option_name('--download')} could not fetch the files into "
                    f"{folder} ({err}). Check the internet connection, or put "
                    f"{', '.join(missing or files)} "
                    f"there by hand."
                ) from err
            if missing:
                raise _not_found(cls_name, folder, err, ", ".join(missing)) from err
            raise _unreadable(cls_name, folder, err) from err
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        # reshape: SVHN squeezes its [N, 1] labels, to a 0-d array when N == 1.
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        return TensorImages(_as_images(ds.data, layout), labels, getattr(ds, "classes", ()))

    return read


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_idx_folder(folder: Path, split: str, classes: tuple[str, ...] = ()) -> TensorImages:
    """``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``folder``."""
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{folder / name}[.gz] does not exist")

    images = read_idx(find("images"))
    labels = read_idx(find("labels"))
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{folder}: {images.shape} images do not match {labels.shape} labels")
    return TensorImages(
        _as_images(images, "NHW"), torch.as_tensor(labels.astype(np.int64)), classes
    )


_read_fashionmnist_torchvision = torchvision_reader("FashionMNIST", "NHW")


def read_fashionmnist(
    root: str | Path, split: str, download: bool = False, **_: Any
) -> TensorImages:
    """torchvision's FashionMNIST under ``root``; else Debian's package, found automatically.

    Debian's copy is used only when ``root`` lacks the files and no download was asked for;
    files that are present but broken raise instead of being silently replaced.
    """
    import torchvision.datasets as tvd

    sub, files = _expected_files("FashionMNIST", split)
    own = Path(root) / sub
    have_own = (all((own / f).is_file() for f in files)
                or _gzipped_idx(Path(root), "FashionMNIST") is not None)
    if have_own or download or not DEBIAN_FASHION_MNIST.is_dir():
        try:
            return _read_fashionmnist_torchvision(root, split, download)
        except DatasetNotFoundError as err:
            if have_own or download:
                raise
            raise DatasetNotFoundError(
                f"{err} Or, on Debian: apt-get install dataset-fashion-mnist "
                f"(files under {DEBIAN_FASHION_MNIST})."
            ) from None
    try:
        data = _read_idx_folder(DEBIAN_FASHION_MNIST, split, tuple(tvd.FashionMNIST.classes))
    except (OSError, ValueError, EOFError) as err:
        raise DatasetNotFoundError(
            f"FashionMNIST not found: looked in {own} for {', '.join(files)}, and Debian's copy "
            f"in {DEBIAN_FASHION_MNIST} cannot be read ({err}). Put the files in {own}, point "
            f"{option_name('--data-root')} at the folder that holds FashionMNIST/raw, reinstall "
            f"dataset-fashion-mnist, or pass {option_name('--download')} to fetch them (needs "
            f"internet)."
        ) from err
    log.info("FashionMNIST: %s has no files; reading Debian's copy in %s", own,
             DEBIAN_FASHION_MNIST)
    return data


def read_digits(root: str | Path, split: str, download: bool = False, **_: Any) -> TensorImages:
    """scikit-learn's 8x8 digits (1,797 real images); a seeded, stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    index = np.arange(len(images))
    train, test = train_test_split(index, test_size=0.2, random_state=0, stratify=digits.target)
    chosen = train if split in ("train", "train+unlabeled") else test
    return TensorImages(
        _as_images(images[chosen], "NHW"), torch.as_tensor(digits.target[chosen]).long()
    )


def read_folder(
    root: str | Path,
    split: str,
    download: bool = False,
    image_size: int = 224,
    resize: int | None = None,
    channels: int | None = None,
    bad_images: str = "skip",
    layout: str = "auto",
    **_: Any,
) -> FolderImages:
    """``root/<split>/<class>/*`` when such split folders exist, else ``root/<class>/*``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} does not exist. Point {option_name('--data-root')} at a folder "
            f"laid out as ROOT/<class>/<images> or ROOT/train/<class>/<images> (+ ROOT/test/...)."
        )
    base = split.split("+")[0]
    folder = root / base if (root / base).is_dir() else root
    if base == "test" and folder == root:
        raise DatasetNotFoundError(
            f"{root} has no test/ folder; evaluation needs ROOT/test/<class>/<images>"
        )
    return FolderImages(folder, image_size, resize, channels, bad_images, layout)
