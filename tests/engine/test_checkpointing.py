"""Checkpoints during training: NaN/Inf stops the run and keeps the last good checkpoint, and a
finished run's last checkpoint continues exactly (the resume fallback is in test_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from tribyol.checkpoints import load_checkpoint
from tribyol.cli import main
from tribyol.config import to_dict
from tribyol.engine import NonFiniteLossError, PretrainModule, pretrain


def ckpt_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


# 128 images / 16 = 8 steps per epoch; a checkpoint every 2 steps.
BASE = [("data.limit", 128), ("train.ckpt_every_steps", 2), ("train.deterministic", True)]


# -- NaN / Inf ----------------------------------------------------------------------------------
class BlowUpAt(L.Callback):
    """From step ``step`` on, corrupt training the way a divergence would."""

    def __init__(self, step: int, how: str) -> None:
        self.step, self.how = step, how

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: object) -> None:
        if trainer.global_step != self.step:
            return
        if self.how == "lr":  # a huge learning rate: weights overflow to Inf, then NaN
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e38
        elif self.how == "loss":  # a NaN loss from the method (e.g. a bad op in fp16)
            method = module.method
            forward = method.forward_views

            def nan_loss(*a: object, **k: object):
                out = forward(*a, **k)
                out.loss = out.loss * float("nan")
                return out

            method.forward_views = nan_loss


@pytest.mark.parametrize("how", ["lr", "loss"])
def test_nonfinite_stops_with_step_and_tensor_and_keeps_good_checkpoint(tiny, how) -> None:
    # log_every_steps=3: the flag is read every 3 steps (and before every save), not every step
    cfg = tiny(*BASE, ("train.log_every_steps", 3), ("name", how))
    with pytest.raises(NonFiniteLossError, match=r"loss became NaN/Inf at or before step 5 ") as info:
        pretrain(cfg, extra_callbacks=[BlowUpAt(4, how)])
    last = ckpt_dir(Path(cfg.runs_root) / how) / "last.ckpt"
    assert f"the last good checkpoint ({last}, step 4) is kept" in str(info.value)
    ckpt = load_checkpoint(last)
    assert ckpt["global_step"] == 4  # nothing after the blow-up was saved
    for key, value in ckpt["state_dict"].items():
        assert torch.isfinite(value.float()).all(), key


def test_nonfinite_before_any_checkpoint_does_not_claim_one(tiny) -> None:
    """``optim.lr=1e38`` from step 1: no checkpoint exists, and the message must not say one is kept."""
    cfg = tiny(("train.log_every_steps", 1), ("optim.lr", 1e38), ("name", "early"))
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(cfg)
    assert "no checkpoint had been written yet" in str(info.value)
    assert "is kept" not in str(info.value)
    assert not (ckpt_dir(Path(cfg.runs_root) / "early") / "last.ckpt").exists()


def test_nonfinite_weight_is_named(tiny) -> None:
    """The loss usually trips first; a bad weight alone (e.g. an EMA target) is named too."""
    cfg = tiny()
    module = PretrainModule(to_dict(cfg), {"channels": 1, "image_size": 16, "num_classes": 10,
                                           "num_train_images": 64, "mean": [0.3], "std": [0.35]})
    module.check_finite()  # healthy: silent
    name, param = list(module.method.named_parameters())[-1]
    with torch.no_grad():
        param.view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=rf"weight 'method.{name}' holds NaN/Inf at step 0"):
        module.check_finite()


def test_nonfinite_through_cli_exits_2(tmp_path, capsys) -> None:
    code = main(["pretrain", "--dataset", "digits", "--limit", "64", "--batch-size", "16",
                 "--accelerator", "cpu", "--precision", "32", "--runs-root", str(tmp_path),
                 "--set", "optim.lr=1e38", "--set", "model.width=8", "--set", "train.progress_bar=false",
                 "--set", "train.log_every_steps=1", "--max-steps", "4"])
    assert code == 2
    assert "NaN/Inf" in capsys.readouterr().err


# -- continuing a finished run ------------------------------------------------------------------
def test_finished_run_continues_exactly_with_a_larger_max_steps(tiny) -> None:
    """A run that finished at max_steps, resumed with a larger one, trains the same batches as
    a run given the larger budget from the start (constant schedules: bitwise the same weights).
    Its last checkpoint used to be taken at the epoch's end, which Lightning counts as done:
    the continuation trained the next epoch's batches instead."""
    base = [("data.limit", 128), ("train.epochs", 4), ("train.deterministic", True),
            ("optim.schedule", "constant")]
    for short, long in ((3, 5), (8, 12)):  # mid-epoch, and at an epoch's end
        full = pretrain(tiny(*base, ("train.max_steps", long), ("name", f"full{long}")))
        cont = pretrain(tiny(*base, ("train.max_steps", short), ("name", f"cont{long}")))
        assert json.loads((cont / "run.json").read_text())["status"] == "finished"
        pretrain(tiny(*base, ("train.max_steps", long), ("name", f"cont{long}")), resume=True)
        a = load_checkpoint(full / "checkpoints" / "last.ckpt")
        b = load_checkpoint(cont / "checkpoints" / "last.ckpt")
        assert b["global_step"] == long
        for key, value in a["state_dict"].items():
            torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
        record = json.loads((cont / "run.json").read_text())
        assert (record["status"], record["steps_done"], record["max_steps"]) == ("finished", long, long)
