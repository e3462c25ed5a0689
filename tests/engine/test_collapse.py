"""The collapse monitors: z-std and effective rank at log steps, a warning and run.json's
``collapse_warning`` when the z-std falls below ``train.collapse_threshold / sqrt(d)``."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch

from tribyol.engine import module as engine_module
from tribyol.engine import pretrain
from tribyol.engine.logs import read_metrics
from tribyol.engine.module import collapse_std, effective_rank
from tribyol.methods.tribyol import TriBYOL


def test_effective_rank_of_hand_made_matrices() -> None:
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 16, generator=g)
    scales = torch.rand(32, 1, generator=g) + 0.5
    assert float(effective_rank(scales * direction)) == pytest.approx(1.0, abs=1e-3)  # rank 1
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert float(effective_rank(q)) == pytest.approx(16.0, rel=1e-4)  # orthonormal rows: d
    # two orthogonal directions, equally used: 2
    two = torch.cat([q[:1].expand(8, 16), q[1:2].expand(8, 16)])
    assert float(effective_rank(two)) == pytest.approx(2.0, rel=1e-4)
    # rows are L2-normalised first: their lengths do not change the rank
    assert float(effective_rank(q * torch.arange(1, 17.0)[:, None])) == pytest.approx(16.0, rel=1e-4)
    # a diverged batch gives a number, not an SVD error (the NaN guard reports it)
    bad = q.clone()
    bad[0, 0] = float("nan")
    assert math.isfinite(float(effective_rank(bad)))


def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often the engine computes the monitors (each needs its value on the host later)."""
    calls = [0]
    original = engine_module.effective_rank

    def counted(z):
        calls[0] += 1
        return original(z)

    monkeypatch.setattr(engine_module, "effective_rank", counted)
    return calls


def test_stats_only_on_log_steps_and_healthy_run_has_no_warning(tiny, monkeypatch, caplog) -> None:
    calls = count_calls(monkeypatch)
    # 64 images / batch 16 = 4 steps an epoch, 2 epochs: log steps 3, 6 and the last one, 8
    run = pretrain(tiny(("train.epochs", 2), ("train.log_every_steps", 3)))
    rows = [r for r in read_metrics(run) if "train/z_std" in r]
    assert [int(r["step"]) for r in rows] == [2, 5, 7]
    assert calls[0] == 3  # computed at the 3 log steps only: nothing on the other 5
    assert all(r.keys() >= {"train/z_std", "train/z_rank"} for r in rows)
    # healthy: well above the threshold 0.1/sqrt(16), and many directions in use
    assert all(r["train/z_std"] > 0.1 / 4 and 2.0 < r["train/z_rank"] <= 16.0 for r in rows), rows
    marker = json.loads((run / "run.json").read_text())
    assert marker["status"] == "finished" and "collapse_warning" not in marker
    assert "collapsed" not in caplog.text


def collapse_projections(monkeypatch: pytest.MonkeyPatch) -> None:
    """TriBYOL whose online projections are all the same vector (a collapsed network)."""
    original = TriBYOL.forward_views

    def collapsed(self, views, labels=None):
        out = original(self, views, labels)
        return dataclasses.replace(out, projections=torch.ones_like(out.projections))

    monkeypatch.setattr(TriBYOL, "forward_views", collapsed)


def test_collapsed_projections_warn_once_and_record_it(tiny, monkeypatch, caplog) -> None:
    collapse_projections(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tribyol.engine.module"):
        run = pretrain(tiny(("train.log_every_steps", 2)))
    rows = [r for r in read_metrics(run) if "train/z_std" in r]
    assert len(rows) == 2 and all(r["train/z_std"] == 0.0 for r in rows)
    assert all(r["train/z_rank"] == pytest.approx(1.0, abs=1e-3) for r in rows)
    warnings = [r for r in caplog.records if "collapsed" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once, not at every log step
    assert "train/z_std 0 < 0.025" in warnings[0].getMessage()
    marker = json.loads((run / "run.json").read_text())
    assert marker["status"] == "finished"
    assert marker["collapse_warning"] == {"step": 2, "z_std": 0.0,
                                          "rank": pytest.approx(1.0, abs=1e-3), "threshold": 0.025}


def test_collapse_threshold_zero_turns_the_warning_off(tiny, monkeypatch, caplog) -> None:
    collapse_projections(monkeypatch)
    run = pretrain(tiny(("train.collapse_threshold", 0.0)))
    assert "collapse_warning" not in json.loads((run / "run.json").read_text())
    assert "collapsed" not in caplog.text
    assert any("train/z_rank" in r for r in read_metrics(run))  # still measured


def test_collapse_std_of_normalised_rows() -> None:
    spread = torch.cat([torch.eye(64), -torch.eye(64)]) * 3.0  # lengths do not count
    # each dimension: 0 on average, 1 or -1 in 2 of 128 rows: std sqrt(2/127) ~ 1/sqrt(d)
    assert float(collapse_std(spread)) == pytest.approx(math.sqrt(2 / 127), rel=1e-5)
    assert float(collapse_std(torch.ones(8, 64))) == 0.0
