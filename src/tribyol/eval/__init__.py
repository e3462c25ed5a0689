"""Evaluation protocols on frozen or fine-tuned encoders: linear, kNN, fine-tuning, transfer.

Names are imported on first use, so that ``tribyol.eval.options`` (the CLI's defaults) loads
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "FeatureCache": "eval.features", "extract_features": "eval.features",
    "weights_hash": "eval.features", "knn_predict": "eval.knn", "LinearResult": "eval.linear",
    "linear_probe": "eval.linear", "label_subset": "data.sampling",
    "stratified_sample": "data.sampling", "stratified_split": "data.sampling",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tribyol.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tribyol.{_HOMES[name]}"), name)
