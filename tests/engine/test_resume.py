"""Resume: a broken last.ckpt falls back to previous.ckpt, a run of no readable checkpoint is
an error, a different network is refused, allowed config changes are listed and kept, and
``tribyol pretrain --resume RUN_DIR`` resumes from the run's saved config.yaml."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from tests.helpers import TINY_FLAGS as TINY
from tests.helpers import error_line
from tribyol.checkpoints import load_checkpoint
from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.errors import CheckpointError

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


def ckpt_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


# 128 images / 16 = 8 steps per epoch; a checkpoint every 2 steps.
BASE = [("data.limit", 128), ("train.ckpt_every_steps", 2), ("train.deterministic", True)]


class StopAt(L.Callback):
    """Ends fit after ``step`` optimizer steps, like an interruption (the config is unchanged)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_broken_last_checkpoint_falls_back_to_previous(tiny, caplog, damage: str) -> None:
    full = pretrain(tiny(*BASE, ("name", "full")))
    cfg = tiny(*BASE, ("name", "cut"))
    cut = pretrain(cfg, extra_callbacks=[StopAt(5)])  # saves at 2, 4 and (on stop) 5
    last, previous = ckpt_dir(cut) / "last.ckpt", ckpt_dir(cut) / "previous.ckpt"
    assert load_checkpoint(last)["global_step"] == 5
    assert load_checkpoint(previous)["global_step"] == 4
    data = last.read_bytes()
    last.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 999, "empty": b""}[damage])
    # a save killed half-way leaves a temporary file behind: it must be ignored
    (ckpt_dir(cut) / ".last.ckpt.tmp").write_bytes(data[:100])

    readable = r"previous checkpoint .*previous\.ckpt \(step 4\) is readable"
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*last\.ckpt.*" + readable):
        load_checkpoint(last)
    with caplog.at_level(logging.INFO, logger="tribyol"):
        pretrain(cfg, resume=True)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "last.ckpt is unreadable" in messages
    assert f"resuming from {previous} (step 4)" in messages
    assert (ckpt_dir(cut) / "last.ckpt.corrupt").exists()  # kept for inspection, out of the rotation
    assert load_checkpoint(last)["global_step"] == 8
    assert_same_weights(last, ckpt_dir(full) / "last.ckpt")  # only steps 5..8 were redone


def test_no_readable_checkpoint_is_an_error_not_a_silent_restart(tiny, tmp_path, capsys) -> None:
    cfg = tiny(*BASE, ("name", "broken"), ("train.max_steps", 3))
    run_dir = pretrain(cfg)
    for name in ("last.ckpt", "previous.ckpt"):
        (ckpt_dir(run_dir) / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="no readable checkpoint to resume from"):
        pretrain(cfg, resume=True)
    # the same through the CLI: one line, exit 2
    code = main(["pretrain", "--dataset", "digits", "--runs-root", str(tmp_path / "runs"),
                 "--name", "broken", "--resume", "--accelerator", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: no readable checkpoint to resume from" in err and "--overwrite" in err


def test_resume_with_another_method_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["pretrain", *TINY, "--max-steps", "2", "--runs-root", str(runs), "--name", "r"]
    assert main(args) == 0
    config = runs / "r" / "config.yaml"
    saved = config.read_text()
    assert main([*args, "--method", "byol", "--backbone", "resnet18", "--resume"]) == 2
    line = error_line(capsys)
    assert "cannot resume" in line and "method.name: 'tribyol' -> 'byol'" in line
    assert "model.backbone: 'convnet' -> 'resnet18'" in line
    assert config.read_text() == saved
    # the saved config still resumes the run
    assert main(["pretrain", "--config", str(config), "--resume"]) == 0
    assert yaml.safe_load(config.read_text()) == yaml.safe_load(saved)


def test_resume_with_allowed_changes_lists_them_and_keeps_the_old_config(tiny, caplog) -> None:
    cfg = tiny(("train.max_steps", 2), ("name", "r"))
    run_dir = pretrain(cfg)
    old = (run_dir / "config.yaml").read_text()
    with caplog.at_level(logging.WARNING, logger="tribyol"):
        pretrain(tiny(("train.max_steps", 3), ("optim.lr", 0.01), ("name", "r")), resume=True)
    messages = [r.getMessage() for r in caplog.records]
    assert "resuming with optim.lr changed: 0.03 -> 0.01" in messages
    assert "resuming with train.max_steps changed: 2 -> 3" in messages
    assert (run_dir / "config.attempt0.yaml").read_text() == old
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"] == 0.01


def test_checkpoint_that_does_not_fit_is_refused_by_name(tiny) -> None:
    """A width change the config comparison cannot see (config.yaml edited) is still caught."""
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    edited = yaml.safe_load((run_dir / "config.yaml").read_text())
    edited["model"]["width"] = 16
    (run_dir / "config.yaml").write_text(yaml.safe_dump(edited))
    from tribyol.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not fit the network"):
        pretrain(tiny(("train.max_steps", 2), ("model.width", 16), ("name", "r")), resume=True)


def test_resume_with_the_same_flags_after_resolution_sees_no_change(tiny, caplog) -> None:
    cfg = tiny(("train.max_steps", 1), ("name", "r"))
    run_dir = pretrain(cfg)
    with caplog.at_level(logging.WARNING, logger="tribyol"):
        pretrain(tiny(("train.max_steps", 1), ("name", "r")), resume=True)
    assert not any("changed" in r.getMessage() for r in caplog.records)
    assert not list(run_dir.glob("config.attempt*.yaml"))
