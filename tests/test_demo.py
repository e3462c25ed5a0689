"""The demo end to end, quick budget, on the sklearn-digits fallback (Fashion-MNIST hidden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tribyol.data.readers as readers
from tribyol.demo import run_demo


@pytest.mark.slow
def test_demo_falls_back_to_digits_and_reports_every_row(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-copy")
    rows = run_demo(runs_root=str(tmp_path / "demo"), quick=True, data_root=str(tmp_path / "data"))
    out = capsys.readouterr().out
    assert "Falling back to sklearn's digits" in out
    assert [r["method"] for r in rows] == ["tribyol", "byol", "random init"]
    assert "| tribyol | 32 |" in out and "| random init | - |" in out
    top1 = {r["method"]: r["probe_top1"] for r in rows}
    # Digits have 10 classes: a probe on misaligned features or labels would sit near 10 %.
    # Even the random ConvNet's features are linearly separable enough for 97.5 % (measured).
    assert min(top1.values()) >= 90.0, top1
    # Pre-training helps: measured tribyol 98.33, byol 98.61, random init 97.50 (360 images).
    assert top1["tribyol"] >= top1["random init"] and top1["byol"] >= top1["random init"], top1
    # Not strictly above: on an AMD EPYC in fp32 (no bf16 there) the quick demo's few steps
    # left all three at 97.50 (seen 2026-12-02); the full demo's rows are in README.md.
    assert rows[0]["images_per_s"] > 0 and rows[1]["images_per_s"] > 0
    png = tmp_path / "demo" / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert [r["method"] for r in saved] == ["tribyol", "byol", "random init"]
