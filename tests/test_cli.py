"""CLI smoke tests: pretrain -> export -> errors, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from tribyol.cli import main
from tribyol.resolve import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY_FLAGS = [
    "--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "1",
    "--backbone", "convnet", "--precision", "32", "--accelerator", "cpu",
    "--set", "model.width=8", "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
    "--set", "train.progress_bar=false",
]


def test_pretrain_then_export(tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    assert main(["pretrain", "--method", "tribyol", *TINY_FLAGS, "--runs-root", str(runs)]) == 0
    run_dir = runs / "tribyol_convnet_b16_e1_digits"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        assert meta["method"] == "tribyol" and meta["in_channels"] == "1"
        assert all(not k.startswith(("fc.", "projector")) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)
    # the same run again is refused with a remedy, and exits 2
    assert main(["pretrain", "--method", "tribyol", *TINY_FLAGS, "--runs-root", str(runs)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_unknown_key_names_the_closest(capsys):
    assert main(["pretrain", "--set", "optim.lrr=0.1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("cpu/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path):
    # configs/grids/*.yaml (the poster's runs among them) are checked in tests/reproduce/test_grid.py
    cfg = load_config(path)
    method, backbone, batch = path.stem.split("_")[:3]
    assert cfg.method.name == method and cfg.model.backbone == backbone
    assert f"b{cfg.train.batch_size}" == batch
