"""Every method runs through the one engine (`pretrain`), resumes, and exports its encoder."""

from __future__ import annotations

import math

import pytest
import torch

from tribyol.engine import pretrain
from tribyol.engine.run import read_metrics
from tribyol.export import encoder_state, export_encoder, load_checkpoint, load_encoder

METHODS = ["simsiam", "simclr", "cross", "pirl-jigsaw", "pirl-rotation", "supervised"]


@pytest.mark.parametrize("name", METHODS)
def test_tiny_pretrain_and_export(tiny, tmp_path, name):
    run = pretrain(tiny(("method.name", name)))
    rows = read_metrics(run)
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)  # 64 images / batch 16
    assert any("train/z_std" in r for r in rows)
    out = export_encoder(run, tmp_path / f"{name}.safetensors")
    encoder, meta = load_encoder(out)
    assert meta["method"] == name
    saved = encoder_state(load_checkpoint(run / "checkpoints" / "last.ckpt"))
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, saved[key])


def test_pirl_resume_restores_the_memory_bank(tiny):
    cfg = tiny(("method.name", "pirl-rotation"), ("method.bank_size", 40), ("train.epochs", 2))
    first = tiny(("method.name", "pirl-rotation"), ("method.bank_size", 40), ("train.max_steps", 2),
                 ("train.epochs", 2), ("train.ckpt_every_steps", 1))
    run = pretrain(first)
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert int(state["method.bank.ptr"]) == 32  # two batches of 16 keys
    pretrain(cfg, resume=True)
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert int(state["method.bank.ptr"]) == (8 * 16) % 40  # 8 steps of 16 keys, wrapped
