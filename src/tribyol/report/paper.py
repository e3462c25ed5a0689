"""The poster's numbers (ICASSP 2022 TriBYOL poster; see docs/paper.md), as data.

Top-1 %, keyed by our method names (``tribyol``, ``byol``, ...; ``scratch`` is fine-tuning from
random weights, ``supervised-imagenet`` supervised ImageNet transfer). ``None`` marks a cell the
poster leaves empty.
"""

from __future__ import annotations

from tribyol.eval.options import POSTER_TARGETS

# Display names, in the poster's row order; methods not listed show under their own name.
METHOD_NAMES = {
    "tribyol": "TriBYOL",
    "cross": "Cross",
    "byol": "BYOL",
    "simsiam": "SimSiam",
    "pirl-rotation": "PIRL-rotation",
    "pirl-jigsaw": "PIRL-jigsaw",
    "simclr": "SimCLR",
    "scratch": "From scratch",
    "supervised": "Supervised",
    "supervised-imagenet": "ImageNet (supervised)",
    "random-init": "Random init",
}

DATASET_NAMES = {
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "usps": "USPS",
    "svhn": "SVHN",
    "cifar10": "C10",
    "cifar100": "C100",
    "stl10": "STL",
    "digits": "Digits",
}

BATCHES = (32, 64, 128)
FRACTIONS = (0.01, 0.1, 1.0)
FINETUNE_BATCH = 128  # the poster fine-tunes and transfers encoders pre-trained at batch 128
TRANSFER_TARGETS = POSTER_TARGETS  # the poster's eight, in its order


def _rows(datasets: tuple, keys: tuple, table: dict[str, list]) -> dict[str, dict[tuple, float | None]]:
    """``{method: [v, v, ...]}`` in (dataset, key) order -> ``{method: {(dataset, key): v}}``."""
    cols = [(d, k) for d in datasets for k in keys]
    return {m: dict(zip(cols, values, strict=True)) for m, values in table.items()}


_ = None
# Linear evaluation by pre-training batch size: (dataset, batch) -> top-1.
LINEAR = _rows(("cifar10", "cifar100", "stl10"), BATCHES, {
    "tribyol": [79.09, 85.35, 87.31, 49.07, 59.90, 63.05, 75.41, 83.16, 88.19],
    "cross": [76.01, 82.06, 83.50, 48.04, 54.65, 58.79, 69.66, 78.38, 83.79],
    "byol": [68.67, 81.47, 83.79, 41.21, 49.68, 58.34, 49.60, 80.09, 84.88],
    "simsiam": [58.42, 71.25, 75.58, 1.00, 37.06, 49.21, 10.00, 65.20, 71.78],
    "pirl-rotation": [_, _, 55.78, _, _, 31.55, _, _, 50.26],
    "pirl-jigsaw": [_, _, 49.94, _, _, 27.36, _, _, 48.55],
    "simclr": [_, _, 52.58, _, _, 21.26, _, _, 44.50],
})

# Fine-tuning with a fraction of the labels (pre-trained at batch 128): (dataset, fraction).
FINETUNE = _rows(("cifar10", "cifar100", "stl10"), FRACTIONS, {
    "tribyol": [56.60, 71.73, 87.07, 9.50, 23.57, 58.92, 56.66, 67.72, 97.34],
    "cross": [50.88, 67.34, 86.03, 6.81, 20.96, 57.23, 42.80, 59.22, 93.28],
    "byol": [56.28, 70.94, 86.87, 9.38, 22.51, 58.17, 53.96, 65.98, 97.26],
    "simsiam": [43.16, 63.08, 84.76, 4.86, 14.76, 54.70, 40.38, 49.96, 88.38],
    "scratch": [32.29, 57.24, 83.87, 5.50, 17.47, 56.70, 20.38, 39.10, 83.96],
    "supervised-imagenet": [69.90, 84.27, 91.29, 27.48, 52.41, 70.80, 81.24, 86.34, 98.00],
})

# Transfer (linear, pre-trained at batch 128; the poster does not name the source): target.
TRANSFER = {
    m: dict(zip(TRANSFER_TARGETS, values, strict=True))
    for m, values in {
        "tribyol": [98.74, 91.76, 92.00, 96.61, 75.23, 80.09, 55.88, 79.11],
        "cross": [98.54, 91.28, 90.33, 96.21, 71.29, 77.55, 51.53, 76.26],
        "byol": [98.41, 90.77, 89.88, 96.06, 68.75, 75.31, 48.51, 74.04],
        "simsiam": [97.58, 89.25, 83.31, 94.02, 58.70, 64.51, 35.63, 63.44],
        "supervised-imagenet": [98.58, 90.85, 90.77, 96.56, 77.34, 82.37, 60.72, 91.76],
    }.items()
}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)
