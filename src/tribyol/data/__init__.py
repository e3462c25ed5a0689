"""Datasets: a registry of specs whose readers yield image batches in the pixels' own dtype."""

from tribyol.data.images import BadImageError, FolderImages, TensorImages
from tribyol.data.readers import read_idx
from tribyol.data.registry import (
    DATASETS,
    AugmentPreset,
    DatasetNotFoundError,
    DatasetSpec,
    get_spec,
    load_split,
)

__all__ = [
    "DATASETS",
    "AugmentPreset",
    "BadImageError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FolderImages",
    "TensorImages",
    "get_spec",
    "load_split",
    "read_idx",
]
