"""Datasets: a registry of readers that yield uint8 image batches."""

from tribyol.data.images import BadImageError, FolderImages, TensorImages
from tribyol.data.registry import (
    DATASETS,
    DatasetNotFoundError,
    DatasetSpec,
    get_spec,
    load_split,
    read_idx,
)

__all__ = [
    "DATASETS",
    "BadImageError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FolderImages",
    "TensorImages",
    "get_spec",
    "load_split",
    "read_idx",
]
