"""The engine end to end: a run directory, resume after an interruption, EMA per step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml

from tribyol.checkpoints import load_checkpoint
from tribyol.engine import RunDirExistsError, pretrain


class StopAfterFirstEpoch(L.Callback):
    """Simulates an interruption at the first epoch boundary (the run's config is unchanged)."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def weights(run_dir):
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return ckpt["global_step"], ckpt["state_dict"]


def test_run_directory_layout(tiny):
    run_dir = pretrain(tiny(("method.name", "byol")))
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "logs" / "attempt0" / "metrics.csv").exists()
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["method"]["name"] == "byol" and saved["train"]["batch_size"] == 16


@pytest.mark.parametrize("method", ["tribyol", "byol"])
def test_interrupted_run_resumed_matches_uninterrupted(tiny, method):
    overrides = [("method.name", method), ("train.epochs", 2), ("train.deterministic", True)]
    full = pretrain(tiny(*overrides, ("name", "full")))
    cut_cfg = tiny(*overrides, ("name", "cut"))
    cut = pretrain(cut_cfg, extra_callbacks=[StopAfterFirstEpoch()])
    step_cut, _ = weights(cut)
    step_full, state_full = weights(full)
    assert step_cut == step_full // 2
    pretrain(cut_cfg, resume=True)
    step_resumed, state_resumed = weights(cut)
    assert step_resumed == step_full
    assert state_resumed.keys() == state_full.keys()
    for key, value in state_full.items():
        torch.testing.assert_close(state_resumed[key], value, rtol=0, atol=0, msg=key)


def test_ema_runs_once_per_optimizer_step_with_accumulation(tiny, monkeypatch):
    from tribyol.methods.base import MomentumMethod

    calls = []
    original = MomentumMethod.after_optimizer_step
    monkeypatch.setattr(
        MomentumMethod,
        "after_optimizer_step",
        lambda self, step, total: (calls.append(step), original(self, step, total)),
    )
    cfg = tiny(("method.name", "byol"), ("train.accumulate", 2), ("train.max_steps", 3),
                 ("train.epochs", 2))
    run_dir = pretrain(cfg)
    assert calls == [1, 2, 3]  # 6 micro-batches, 3 optimizer steps, 3 EMA updates
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_existing_run_directory_is_refused(tiny):
    cfg = tiny(("train.max_steps", 1))
    pretrain(cfg)
    with pytest.raises(RunDirExistsError, match="--resume"):
        pretrain(cfg)
    pretrain(cfg, overwrite=True)


def test_pretrain_on_a_folder_of_large_images(tiny, tmp_path):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for c in ("a", "b"):
        (tmp_path / "scans" / c).mkdir(parents=True)
        for i in range(8):
            pixels = torch.randint(0, 256, (96, 128), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(tmp_path / "scans" / c / f"{i}.png")
    cfg = tiny(
        ("data.dataset", "folder"), ("data.root", str(tmp_path / "scans")),
        ("data.channels", 1), ("data.image_size", 32), ("data.resize", 40),
        ("train.batch_size", 8), ("data.limit", None),
    )
    run_dir = pretrain(cfg)
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["data_info"]["channels"] == 1
    assert ckpt["state_dict"]["method.backbone.features.0.0.weight"].shape[1] == 1


def test_warmup_counts_epochs_of_the_loader_even_when_max_steps_cuts_the_run(tiny):
    """optim.warmup_epochs is in epochs of the data (4 steps here), not total // epochs, which
    max_steps would shrink to 1 step."""
    seen = []

    class LearningRates(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = tiny(("train.max_steps", 3), ("train.epochs", 80), ("optim.warmup_epochs", 1.0),
               ("optim.lr", 0.1), ("optim.schedule", "constant"), ("train.batch_size", 16))
    pretrain(cfg, extra_callbacks=[LearningRates()])
    assert seen == pytest.approx([0.025, 0.05, 0.075])  # (step + 1) / 4 of 0.1
