"""Dataset registry: name -> spec (reader, channels, size, normalisation, classes, augment preset).

The readers are ``tribyol.data.readers``; ``ucmerced`` is UC Merced Land Use with a fixed seeded
80/20 split (``tribyol.data.ucmerced``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tribyol.config.fields import option_name
from tribyol.data import ucmerced
from tribyol.data.images import FolderImages, TensorImages
from tribyol.data.readers import read_digits, read_fashionmnist, read_folder, torchvision_reader
from tribyol.errors import DatasetNotFoundError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentPreset:
    """A dataset's augmentation preset: values for ``AugmentConfig`` fields of the same names
    (None: not set), put under the user's own ``augment:`` settings, theirs winning. A misspelt
    key fails when the registry is imported; tests/data/test_registry.py holds every field to
    an ``AugmentConfig`` field."""

    crop_scale: tuple[float, float] | None = None
    flip_p: float | None = None
    # The named presets' keys (augment.preset; docs/data.md, "Augmentation for N bands").
    preset: str | None = None
    recipe: str | None = None
    noise_p: float | None = None
    band_drop_p: float | None = None
    rotate_p: float | None = None
    vflip_p: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The values set, as an ``augment:`` section holds them (pairs as lists)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()
                if v is not None}


# Per-dataset augmentation presets.
DIGIT_AUGMENT = AugmentPreset(crop_scale=(0.25, 1.0), flip_p=0.0)  # flips change a digit's meaning
GRAY_SMALL_AUGMENT = AugmentPreset(crop_scale=(0.25, 1.0))  # 28 px: an 8 % crop keeps too little

# The named presets (augment.preset: NAME), put under the user's own augment keys and over a
# dataset's. Overhead imagery has no "up": rotations by 90 degrees (rotate_p 0.75 makes the
# number of quarter turns uniform) and flips give all 8 symmetries of the square, equally likely.
AERIAL = AugmentPreset(preset="aerial", rotate_p=0.75, vflip_p=0.5)
AUGMENT_PRESETS: dict[str, AugmentPreset] = {
    "aerial": AERIAL,
    # Satellite tiles (Sentinel-2, 13 bands): overhead, so aerial's symmetries; the band ops.
    "multispectral": AugmentPreset(preset="multispectral", recipe="bands", rotate_p=0.75,
                                   vflip_p=0.5),
    # CT, X-ray, microscopy (1 band, 12-16 bit or float): the band ops (brightness and contrast
    # as a window change, noise); one band, so nothing to drop.
    "grayscale16": AugmentPreset(preset="grayscale16", recipe="bands", band_drop_p=0.0),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    image_size: int  # the size views are produced at by default
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reader: Callable[..., Any]  # (root, split, download, **options) -> image set
    augment: AugmentPreset = field(default_factory=AugmentPreset)  # under the user's augment:
    pretrain_split: str = "train"  # STL-10 pre-trains on train+unlabeled
    in_memory: bool = True


_MNIST_STATS = dict(channels=1, image_size=28, num_classes=10)
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", **_MNIST_STATS, mean=(0.1307,), std=(0.3081,),
                    reader=torchvision_reader("MNIST", "NHW"), augment=DIGIT_AUGMENT),
        DatasetSpec("fashionmnist", **_MNIST_STATS, mean=(0.2860,), std=(0.3530,),
                    reader=read_fashionmnist, augment=GRAY_SMALL_AUGMENT),
        DatasetSpec("kmnist", **_MNIST_STATS, mean=(0.1918,), std=(0.3483,),
                    reader=torchvision_reader("KMNIST", "NHW"),
                    augment=DIGIT_AUGMENT),
        DatasetSpec("usps", channels=1, image_size=16, num_classes=10, mean=(0.2469,),
                    std=(0.2989,), reader=torchvision_reader("USPS", "NHW"),
                    augment=DIGIT_AUGMENT),
        DatasetSpec("svhn", channels=3, image_size=32, num_classes=10,
                    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
                    reader=torchvision_reader("SVHN", "NCHW"),
                    augment=AugmentPreset(flip_p=0.0)),
        DatasetSpec("cifar10", channels=3, image_size=32, num_classes=10,
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                    reader=torchvision_reader("CIFAR10", "NHWC")),
        DatasetSpec("cifar100", channels=3, image_size=32, num_classes=100,
                    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                    reader=torchvision_reader("CIFAR100", "NHWC")),
        DatasetSpec("stl10", channels=3, image_size=96, num_classes=10,
                    mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713),
                    reader=torchvision_reader("STL10", "NCHW"),
                    pretrain_split="train+unlabeled"),
        DatasetSpec("digits", channels=1, image_size=16, num_classes=10, mean=(0.3,),
                    std=(0.35,), reader=read_digits, augment=DIGIT_AUGMENT),
        # 2,100 aerial tiles of 256 px: a fixed seeded 80/20 split (tribyol.data.ucmerced),
        # decoded once to 256 px in memory, views at 224 (BYOL's blur, the 7x7 ResNet stem).
        DatasetSpec("ucmerced", channels=3, image_size=ucmerced.VIEW_SIZE,
                    num_classes=len(ucmerced.CLASSES), mean=ucmerced.MEAN, std=ucmerced.STD,
                    reader=ucmerced.read_ucmerced, augment=AERIAL),
        DatasetSpec("folder", channels=3, image_size=224, num_classes=0, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, reader=read_folder, in_memory=False),
    )
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_split(
    name: str,
    root: str | Path,
    split: str,
    download: bool = False,
    **options: Any,
) -> TensorImages | FolderImages:
    """Read ``split`` ("train", "test" or "pretrain") of dataset ``name``.

    ``options`` reach the folder reader (image_size, resize, channels, bad_images).
    """
    spec = get_spec(name)
    if split == "pretrain":
        split = spec.pretrain_split
    where = Path(root)
    if spec.reader is not read_digits and where.exists() and not where.is_dir():
        # Else each reader says "not found" about a path that is there.
        raise DatasetNotFoundError(
            f"{option_name('--data-root')} {root} is a file, not a folder; point it at the "
            f"folder that holds the {name} files")
    return spec.reader(root, split, download=download, **options)
