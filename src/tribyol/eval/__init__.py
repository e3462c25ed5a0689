"""Evaluation protocols on frozen or fine-tuned encoders: linear, kNN, fine-tuning, transfer.

Names are imported on first use, so that ``tribyol.eval.options`` (the CLI's defaults) loads
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "FeatureCache": "features", "extract_features": "features", "weights_hash": "features",
    "knn_predict": "knn", "LinearResult": "linear", "linear_probe": "linear",
    "label_subset": "splits", "stratified_sample": "splits", "stratified_split": "splits",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tribyol.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tribyol.eval.{_HOMES[name]}"), name)
