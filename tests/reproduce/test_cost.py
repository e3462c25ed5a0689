"""``reproduce.cost``: planned steps, step units, and the plan's estimate until cells measure it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reproduce.helpers import FakeRunner, tiny
from tribyol.reproduce.cost import CostModel, step_units
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.runner import Reproduction


def test_plan_prints_cells_and_an_estimate_then_uses_measured_cost(tmp_path: Path) -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1], equal_compute=True,
                            cost={"byol_step_seconds": 1.0, "eval_seconds": 10}))
    repro = Reproduction(grid, tmp_path, runner=FakeRunner(), jobs=2)
    text, wall = repro.plan(grid.cells)
    assert "6 cell(s), 0 done, 6 to run, 2 job(s)" in text
    assert ("| byol-equal-compute-x1.5_digits_b16_s0 | byol (equal compute x1.5) | 0 | 12 | "
            "to run |") in text
    assert "estimated:" in text and "cost model (defaults" in text
    # 64 images / batch 16 = 4 steps per epoch: tribyol 8 steps x 1.5 units, byol 8, byol eq 12
    model = CostModel(grid.spec, [])
    tribyol, byol = grid.cells[0], grid.cells[2]
    assert step_units(tribyol) == pytest.approx(1.5 * step_units(byol))
    # digits: 16 px, width 8, batch 16 -> 1/4 x 1/16 x 1/2 of the ConvNet-32 px-b32 unit
    assert step_units(byol) == pytest.approx(0.25 / 16 / 2)
    tri = model.seconds(tribyol, grid.spec)
    assert tri == pytest.approx(8 * step_units(tribyol) * 1.0 + 2 * 10 + 3 * 8.0)
    assert wall == pytest.approx(sum(model.seconds(c, grid.spec) for c in grid.cells) / 2)
    # a finished cell measures the cost: 2 s per unit instead of 1
    repro.save_state(grid.cells[0], {"done": True, "pretrain_s": 24.0, "units": 12.0,
                                     "eval_s": 8.0, "evals": 2})
    text, _ = repro.plan(grid.cells)
    assert "5 to run" in text and "measured on 1 finished cell(s): 2 s per BYOL-step unit" in text
    assert CostModel(grid.spec, repro.measured()).seconds(tribyol, grid.spec) == pytest.approx(
        8 * step_units(tribyol) * 2.0 + 2 * 4 + 3 * 8.0)
