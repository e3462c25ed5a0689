"""tribyol: self-supervised representation learning that stays accurate with small batches.

The Python API (docs/api.md)::

    import tribyol
    run = tribyol.pretrain(None, {"data.dataset": "digits", "train.max_steps": 50})
    encoder, meta = tribyol.load_encoder(run.directory)
    top1 = tribyol.evaluate(run.directory, "knn")
    method = tribyol.build_method("tribyol", encoder)   # your own loop: views in, StepOutput out

Names are imported on first use: ``import tribyol.config`` must stay free of torch, so that the
CLI reports config errors at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("Run", "build_method", "evaluate", "load_encoder", "pretrain")
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("tribyol.api"), name)
    raise AttributeError(f"module 'tribyol' has no attribute {name!r}")
