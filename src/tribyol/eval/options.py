"""Evaluation options and their defaults, importable without torch (the CLI builds its flags
from them before anything heavy is imported)."""

from __future__ import annotations

from dataclasses import dataclass

KNN_K = 200  # Wu et al. 2018
KNN_TEMPERATURE = 0.07  # Wu et al. 2018
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
MAX_ITER = 200  # L-BFGS iterations; converged well before this on CPU-scale feature sets
POSTER_TARGETS = ("mnist", "fashionmnist", "kmnist", "usps", "svhn", "cifar10", "cifar100", "stl10")
NORMS = ("encoder", "target")
MIN_TEST_IMAGES = 100
AUGMENTS = ("crop-flip", "byol", "none")


@dataclass
class FinetuneOptions:
    epochs: int = 20  # CPU-scale default; the poster does not state its fine-tuning schedule
    batch_size: int = 64
    lr: float = 0.05  # SGD + Nesterov momentum, cosine decay to 0 over all steps
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: str = "crop-flip"  # crop-flip | byol (the pre-training preset) | none
    crop_min: float = 0.5  # crop-flip: random resized crop scale (crop_min, 1)
    seed: int = 0
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
