"""Shared fixtures: tiny configs that run a few steps in well under a second each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribyol.config import RunConfig
from tribyol.resolve import load_config

TINY = [
    ("data.dataset", "digits"),
    ("data.limit", 64),
    ("model.backbone", "convnet"),
    ("model.width", 8),
    ("model.hidden_dim", 32),
    ("model.proj_dim", 16),
    ("train.batch_size", 16),
    ("train.epochs", 1),
    ("train.progress_bar", False),
    ("train.precision", "32"),
    ("train.accelerator", "cpu"),
    ("train.devices", 1),
    ("train.log_every_steps", 1),
]


def tiny_config(tmp_path: Path, *overrides: tuple[str, object] | str) -> RunConfig:
    """A config for a few fast CPU steps on sklearn digits; extra overrides win."""
    return load_config(None, [*TINY, ("runs_root", str(tmp_path / "runs")), *overrides])


@pytest.fixture
def tiny(tmp_path: Path):
    """``tiny(*overrides)`` -> RunConfig writing runs under this test's tmp_path."""
    return lambda *overrides: tiny_config(tmp_path, *overrides)
