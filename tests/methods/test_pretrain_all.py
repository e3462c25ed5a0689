"""Every method runs through the one engine (`pretrain`), resumes, and exports its encoder."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tribyol.checkpoints import encoder_state, load_checkpoint, load_encoder
from tribyol.engine import pretrain
from tribyol.engine.run import read_metrics
from tribyol.export import export_encoder

METHODS = ["simsiam", "simclr", "cross", "pirl-jigsaw", "pirl-rotation", "supervised"]


@pytest.mark.parametrize("name", METHODS)
def test_tiny_pretrain_learns_without_collapse_and_exports(tiny, tmp_path, name):
    run = pretrain(tiny(("method.name", name), ("train.epochs", 3)))
    rows = read_metrics(run)
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)  # 64 images / batch 16
    # the loss falls: the last epoch's mean is below the first's by more than 1 % of its size
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.01 * abs(first), losses
    # nothing collapses: the std of normalised projections stays a sizeable fraction of the
    # healthy 1/sqrt(d) (collapse sends it to ~0); d = proj_dim 16, or the encoder's 64
    # features for the supervised method (no projector)
    z_std = [r["train/z_std"] for r in rows if "train/z_std" in r]
    dim = 64 if name == "supervised" else 16
    assert len(z_std) == 12 and min(z_std[-4:]) > 0.1 / math.sqrt(dim), z_std
    out = export_encoder(run, tmp_path / f"{name}.safetensors")
    encoder, meta = load_encoder(out)
    assert meta["method"] == name
    saved = encoder_state(load_checkpoint(run / "checkpoints" / "last.ckpt"))
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, saved[key])


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_pirl_resumed_run_matches_uninterrupted_memory_bank_included(tiny):
    """PIRL's bank (one row per image) travels in the checkpoint, and its jigsaw permutations
    and negatives come from the step's generator: a run cut after one epoch and resumed ends
    with exactly the weights and bank of an uninterrupted one."""
    overrides = [("method.name", "pirl-jigsaw"), ("train.epochs", 2), ("train.deterministic", True)]
    full = pretrain(tiny(*overrides, ("name", "full")))
    cut_cfg = tiny(*overrides, ("name", "cut"))
    cut = pretrain(cut_cfg, extra_callbacks=[StopAfterFirstEpoch()])
    assert load_checkpoint(cut / "checkpoints" / "last.ckpt")["global_step"] == 4
    pretrain(cut_cfg, resume=True)
    state_full = load_checkpoint(full / "checkpoints" / "last.ckpt")["state_dict"]
    state_cut = load_checkpoint(cut / "checkpoints" / "last.ckpt")["state_dict"]
    assert state_full["method.bank.memory"].shape == (64, 16)  # one row per training image
    assert state_cut.keys() == state_full.keys()
    for key, value in state_full.items():
        torch.testing.assert_close(state_cut[key], value, rtol=0, atol=0, msg=key)
