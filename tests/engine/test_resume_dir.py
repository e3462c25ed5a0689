"""``tribyol pretrain --resume RUN_DIR``: the run's saved config.yaml, no flags retyped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from tribyol.cli import main

FIRST = ["pretrain", "--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "2",
         "--max-steps", "3", "--accelerator", "cpu", "--devices", "1", "--precision", "32",
         "--set", "model.width=8", "--set", "model.hidden_dim=32", "--set", "model.proj_dim=16",
         "--set", "train.progress_bar=false", "--set", "optim.lr=0.05"]


def changed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "changed" in r.getMessage()]


def test_resume_from_the_run_folder_needs_only_the_new_flags(tmp_path: Path, monkeypatch,
                                                             caplog, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(FIRST) == 0
    run_dir = Path(capsys.readouterr().out.split("run directory: ")[1].strip())
    assert run_dir.name == "tribyol_convnet_b16_s3_digits"
    # Elsewhere: the folder is the one given, not the one the config's relative run_dir names.
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    with caplog.at_level(logging.INFO, logger="tribyol"):
        assert main(["pretrain", "--resume", str(tmp_path / run_dir), "--max-steps", "5"]) == 0
    assert capsys.readouterr().out == f"run directory: {tmp_path / run_dir}\n"
    assert changed(caplog) == ["resuming with train.max_steps changed: 3 -> 5"]
    assert not list(other.iterdir())  # no second run made under the new working folder
    ckpt = torch.load(tmp_path / run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5
    # It went on where it stopped: the cut epoch's last batch, then one batch of epoch 2.
    assert ckpt["epoch"] == 1 and ckpt["PretrainData"]["loader"] == {"epoch": 1, "completed": 1}
    config = ckpt["hyper_parameters"]["config"]
    assert config["optim"]["lr"] == 0.05 and config["model"]["width"] == 8  # the saved flags
    record = json.loads((tmp_path / run_dir / "run.json").read_text())
    assert (record["status"], record["steps_done"]) == ("finished", 5)


def test_resume_from_the_run_folder_again_changes_nothing(tmp_path: Path, caplog, capsys) -> None:
    """The saved config read back resolves to itself: no spurious "changed" line."""
    runs = tmp_path / "runs"
    assert main([*FIRST, "--max-steps", "2", "--runs-root", str(runs), "--name", "r"]) == 0
    with caplog.at_level(logging.INFO, logger="tribyol"):
        assert main(["pretrain", "--resume", str(runs / "r")]) == 0
    assert changed(caplog) == []
    assert not list(runs.glob("r/config.attempt*.yaml"))


def test_resume_from_a_folder_refuses_a_second_config_or_folder(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main([*FIRST, "--max-steps", "1", "--runs-root", str(runs), "--name", "r"]) == 0
    capsys.readouterr()
    for extra in (["--config", str(runs / "r" / "config.yaml")], ["--name", "s"]):
        assert main(["pretrain", "--resume", str(runs / "r"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --resume {runs / 'r'}") and err.count("\n") == 1
    assert main(["pretrain", "--resume", str(tmp_path)]) == 2
    assert "holds no config.yaml" in capsys.readouterr().err
