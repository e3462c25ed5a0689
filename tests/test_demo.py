"""The demo end to end, quick budget, on the sklearn-digits fallback (Fashion-MNIST hidden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tribyol.data.registry as registry
from tribyol.demo import run_demo


@pytest.mark.slow
def test_demo_falls_back_to_digits_and_reports_every_row(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-copy")
    rows = run_demo(run_dir=str(tmp_path / "demo"), quick=True, data_root=str(tmp_path / "data"))
    out = capsys.readouterr().out
    assert "Falling back to sklearn's digits" in out
    assert [r["method"] for r in rows] == ["tribyol", "byol", "random init"]
    assert "| tribyol | 32 |" in out and "| random init | - |" in out
    for row in rows:
        assert 0.0 <= row["probe_top1"] <= 100.0
    assert rows[0]["images_per_s"] > 0 and rows[1]["images_per_s"] > 0
    png = tmp_path / "demo" / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert [r["method"] for r in saved] == ["tribyol", "byol", "random init"]
