"""Fast paths in the engine: channels_last weights, log-step-only metrics, concat via config."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from tribyol.config import to_dict
from tribyol.engine import pretrain
from tribyol.engine.module import DataInfo, PretrainModule

INFO = DataInfo(channels=1, image_size=8, num_classes=10, num_train_images=64,
                mean=(0.5,), std=(0.5,))


def test_channels_last_converts_the_networks_weights(tiny):
    cfg = tiny(("model.channels_last", True))
    module = PretrainModule(to_dict(cfg), vars(INFO))
    convs = [m for m in module.method.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs
    )


def _rows(run_dir: Path) -> list[dict[str, str]]:
    (path,) = run_dir.glob("logs/**/metrics.csv")
    return list(csv.DictReader(path.open()))


def test_metrics_still_written_on_every_log_step(tiny):
    # 4 steps, logging every 2: both log steps carry every metric, as before the gating.
    cfg = tiny(("train.log_every_steps", 2), ("method.name", "tribyol"),
               ("method.concat_views", True), ("model.channels_last", True))
    rows = [r for r in _rows(pretrain(cfg)) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [1, 3]
    for r in rows:
        assert r["train/z_std"] and r["train/probe_acc"] and r["train/tau"]
