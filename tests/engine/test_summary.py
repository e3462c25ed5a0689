"""The start and end summaries of a run: on stderr, saying what the run is and what it did."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tribyol.data.pretrain import DataInfo
from tribyol.engine import pretrain
from tribyol.engine.run import build_module
from tribyol.engine.summary import end_summary, nondefault_config, start_summary
from tribyol.resolve import load_config


def test_nondefault_config_lists_exactly_the_changed_keys(tiny) -> None:
    cfg = tiny(("optim.lr", 0.05), ("method.tau", 0.99))
    changed = nondefault_config(cfg)
    assert changed["data.dataset"] == "digits" and changed["model.width"] == 8
    assert changed["optim.lr"] == 0.05 and changed["method.tau"] == 0.99
    # Defaults, the method's own included, are left out.
    assert "optim.momentum" not in changed and "method.num_views" not in changed
    assert "method.name" not in changed and "train.seed" not in changed


def test_start_summary_names_data_networks_plan_and_config(tiny, tmp_path: Path) -> None:
    cfg = tiny(("train.accumulate", 2))
    info = DataInfo(channels=1, image_size=16, num_classes=10, num_train_images=64,
                    mean=(0.3,), std=(0.35,))
    text = start_summary(tmp_path / "r", cfg, info, 1234, 567, total_steps=6, per_epoch=2,
                         world_size=4, accumulate=2, start_step=3)
    assert text.splitlines()[0] == f"tribyol: resuming run {tmp_path / 'r'} at step 3"
    assert "digits, 64 images, 10 classes, 16 px views, 1 channel" in text
    assert "1,234 parameters in the online network (encoder 567)" in text
    assert "6 steps (2 per epoch, 1 epoch)" in text  # epochs=1 caps the run
    assert "batch 16 per device x 2 accumulation x 4 world size = 128 images per step" in text
    assert "train.accumulate=2" in text and "optim.lr" not in text


def test_end_summary_says_loss_steps_time_and_rate() -> None:
    line = end_summary("finished", 5, 5, 0.123456, 2.0, 160)
    assert line == ("tribyol: finished at step 5/5; final loss 0.1235 (last logged); "
                    "wall time 0:00:02 (2.0 s); 80 images/s")
    assert "final loss not logged" in end_summary("stopped", 3, 5, None, 1.0, 16)


def test_a_run_prints_both_summaries_on_stderr_and_nothing_on_stdout(tiny, capsys) -> None:
    run_dir = pretrain(tiny(("name", "s")))
    out, err = capsys.readouterr()
    assert out == ""
    assert f"tribyol: starting run {run_dir}" in err
    assert "digits, 64 images, 10 classes, 16 px views, 1 channel" in err
    assert "4 steps (4 per epoch, 1 epoch), batch 16 per device x 1 accumulation x 1 world size" in err
    # The count is the trainable (online) part of the networks the run built, not the targets.
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    module = build_module(load_config(run_dir / "config.yaml"),
                          DataInfo.from_dict(ckpt["hyper_parameters"]["data_info"]))
    online = sum(p.numel() for p in module.method.trainable_parameters())
    assert online < sum(p.numel() for p in module.method.parameters())
    assert f"{online:,} parameters in the online network" in err
    end = re.search(r"tribyol: finished at step 4/4; final loss (\d+\.\d{4}) \(last logged\); "
                    r"wall time \d+:\d\d:\d\d \(\d+\.\d s\); \d+ images/s", err)
    assert end is not None, err
