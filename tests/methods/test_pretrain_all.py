"""Every method runs through the one engine (`pretrain`), resumes, and exports its encoder."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tribyol.checkpoints import encoder_state, load_checkpoint, load_encoder
from tribyol.engine import pretrain
from tribyol.engine.logs import read_metrics
from tribyol.export import export_encoder

# Per method: how much the last epoch's mean loss is below the first's, as a share of the
# first's size, and the floor of train/z_std over the last epoch (healthy: 1/sqrt(d) = 0.25 for
# proj_dim 16; 0.125 for the supervised method's 64 features; collapse sends it to ~0).
# Measured at this test's seed 0 (seeds 1, 2 in brackets), then given slack:
# - simsiam: loss -0.08 -> -0.23, falls by 1.7x its size (3.3x, 1.5x); with optim.lr=1e-9 it
#   still "falls" 0.23x (batch noise near 0), which the old 1 % bound let pass. z 0.17 (0.18, 0.19)
# - simclr: falls 2.3 % (1.5 %, -4.6 %): NT-Xent at batch 16 barely moves in 12 steps, so its
#   loss bound stays 1 % (6 epochs give 8 %, 9 %, 1.4 %: no better). z 0.17 (0.17, 0.16)
# - cross: falls 67 % (56 %, 60 %); lr=1e-9: -1.4 %. z 0.19 (0.16, 0.19)
# - pirl-*: fall 48-50 % (43-47 %), but 41 % of that comes from the memory bank filling in, with
#   no learning at all (lr=1e-9): their bound catches divergence, not weak learning. z falls
#   with training from 0.14 to 0.042-0.055 (0.044-0.06; it stays 0.135 at lr=1e-9)
# - supervised: falls 9.6 % (7.4 %, 4.5 %); lr=1e-9: 0.3 %. z 0.070 (0.072, 0.068)
BOUNDS = {  # name: (loss falls by more than this share, z_std floor)
    "simsiam": (1.0, 0.1),
    "simclr": (0.01, 0.1),
    "cross": (0.4, 0.1),
    "pirl-jigsaw": (0.3, 0.03),
    "pirl-rotation": (0.3, 0.03),
    "supervised": (0.04, 0.05),
}
METHODS = list(BOUNDS)


@pytest.mark.parametrize("name", METHODS)
def test_tiny_pretrain_learns_without_collapse_and_exports(tiny, tmp_path, name):
    run = pretrain(tiny(("method.name", name), ("train.epochs", 3)))
    rows = read_metrics(run)
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)  # 64 images / batch 16
    falls, z_floor = BOUNDS[name]
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - falls * abs(first), losses
    z_std = [r["train/z_std"] for r in rows if "train/z_std" in r]
    assert len(z_std) == 12 and min(z_std[-4:]) > z_floor, z_std
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
