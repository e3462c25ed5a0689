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


TINY_RUN_STEPS = 2  # of the 4 steps an epoch that 64 digits in batches of 16 make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run pre-trained once a session (``tiny_config`` with ``train.max_steps`` 2, the
    default name): read it as it is; tests that change it change a ``tests.helpers.copy_run``."""
    from tribyol.engine import pretrain

    return pretrain(tiny_config(tmp_path_factory.mktemp("tiny_run"), ("train.max_steps", TINY_RUN_STEPS)))
