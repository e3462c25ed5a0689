"""``reproduce.equal_memory``: BYOL rows at the batch whose measured peak matches another arm's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reproduce.helpers import tiny
from tribyol.errors import ConfigError
from tribyol.reproduce.equal_memory import (
    CACHE,
    apply_cached,
    match_batch,
    measure_equal_memory,
)
from tribyol.reproduce.grid import expand_grid, mark_same_runs, resolved_fingerprint
from tribyol.reproduce.tables import equality_text


def views_peak(calls: list | None = None):
    """A stand-in for the batch finder: 500 MB of process plus 1 MB per view per image."""
    def peak(tree: dict[str, Any], batch: int) -> int:
        if calls is not None:
            calls.append((tree["method"]["name"], batch))
        views = 3 if tree["method"]["name"] == "tribyol" else 2
        return 500 * 2**20 + views * batch * 2**20
    return peak


def _grid(**extra: Any):
    return expand_grid(tiny(axes={"method": ["tribyol", "byol"], "batch": [16]}, seeds=[0, 1],
                            equal_memory=True, **extra))


def test_equal_memory_adds_one_byol_cell_per_byol_cell_to_measure() -> None:
    grid = _grid()
    eq = [c for c in grid.cells if c.memory]
    assert [c.id for c in eq] == ["byol-equal-memory-to-tribyol_digits_b16_s0",
                                  "byol-equal-memory-to-tribyol_digits_b16_s1"]
    assert eq[0].label == "byol (equal memory to tribyol)"
    assert eq[0].memory == {"of": "tribyol", "of_batch": 16, "of_cell": "tribyol_digits_b16_s0",
                            "batch": None}
    # not yet measured: its config would equal plain BYOL's, so it must not share that run
    mark_same_runs(grid.cells, resolved_fingerprint)
    assert all(c.same_as is None for c in eq)
    with pytest.raises(ConfigError, match="found none"):
        expand_grid(tiny(axes={"method": ["byol"]}, equal_memory=True))
    with pytest.raises(ConfigError, match="equal_memory must be true or false"):
        expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, equal_memory="yes"))


def test_match_batch_reads_the_batch_off_byols_measured_line() -> None:
    calls: list = []
    found = match_batch(views_peak(calls), {"method": {"name": "tribyol"}},
                        {"method": {"name": "byol"}}, 16)
    # TriBYOL: 3 views x 16 images = 48 MB of views; BYOL holds 48 at batch 24
    assert found["batch"] == 24 and calls == [("tribyol", 16), ("byol", 16), ("byol", 32)]
    assert found["target_peak_gib"] == pytest.approx((500 + 48) / 1024)
    # an arm needing less than BYOL's own batch: never below the arm's batch
    assert match_batch(lambda t, b: 10 * b if t == "a" else 20 * b, "a", "b", 16)["batch"] == 16


def test_measured_batches_are_cached_and_reused(tmp_path: Path) -> None:
    grid = _grid()
    calls: list = []
    measure_equal_memory(grid, tmp_path, echo=lambda _: None, peak=views_peak(calls))
    # seeds share a measure: memory does not depend on the seed
    assert len(calls) == 3
    eq = [c for c in grid.cells if c.memory]
    assert {c.value("train.batch_size") for c in eq} == {24}
    assert all(c.overrides["train.batch_size"] == 24 for c in eq)
    cache = json.loads((tmp_path / CACHE).read_text())
    assert [v["batch"] for v in cache.values()] == [24]
    again = _grid()  # a rerun (or --dry-run) reads it back without measuring
    assert apply_cached(again, tmp_path) == []
    assert {c.value("train.batch_size") for c in again.cells if c.memory} == {24}
    mark_same_runs(again.cells, resolved_fingerprint)
    assert all(c.same_as is None for c in again.cells if c.memory)  # its own run at b24
    text = equality_text(again.cells)
    assert "tribyol b16: BYOL at batch 24" in text and "`byol` = the same batch and epochs" in text


def test_a_list_names_the_rows_to_match() -> None:
    spec = tiny(arms=[{"label": "default", "axes": {"method": ["tribyol", "byol"]}},
                      {"label": "gn", "set": {"model.norm": "gn"},
                       "axes": {"method": ["tribyol", "byol"]}}],
                seeds=[0], equal_memory=["tribyol"], equal_compute=["tribyol"])
    cells = expand_grid(spec).cells
    assert [c.row for c in cells if c.memory] == ["byol@equal memory to tribyol"]
    assert [c.row for c in cells if c.compute] == ["byol@equal compute x1.5"]
    both = expand_grid({**spec, "equal_memory": True, "equal_compute": True}).cells
    assert sorted(c.row for c in both if c.memory) == ["byol@equal memory to tribyol",
                                                       "byol@equal memory to tribyol, gn"]
    with pytest.raises(ConfigError, match="names row\\(s\\) tribyl the grid does not have"):
        expand_grid({**spec, "equal_memory": ["tribyl"]})
