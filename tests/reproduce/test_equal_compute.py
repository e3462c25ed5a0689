"""``reproduce.equal_compute``: BYOL rows trained as long as another arm costs."""

from __future__ import annotations

import pytest

from tests.reproduce.helpers import tiny
from tribyol.errors import ConfigError
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.tables import tables_markdown


def test_equal_compute_adds_a_byol_cell_at_tribyols_cost() -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"], "batch": [16, 32]}, seeds=[0],
                            equal_compute=True))
    eq = [c for c in grid.cells if c.row.startswith("byol@")]
    assert len(eq) == 2  # one per BYOL cell, none for TriBYOL
    for cell in eq:
        assert cell.label == "byol (equal compute x1.5)"
        assert cell.value("method.name") == "byol" and cell.value("train.epochs") == 3  # 2 x 1.5
        assert cell.compute == {"factor": 1.5, "of": ["tribyol"], "epochs": 3.0}
    assert {c.value("train.batch_size") for c in eq} == {16, 32}
    with pytest.raises(ConfigError, match="found none whose method counts its passes"):
        expand_grid(tiny(axes={"method": ["byol"], "epochs": [3]}, equal_compute=True))
    fixed = expand_grid(tiny(axes={"method": ["byol"]}, equal_compute=1.5)).cells[-1]
    assert fixed.row == "byol@equal compute x1.5" and fixed.compute["of"] == []


def test_equal_compute_is_each_arms_counted_cost() -> None:
    """Issue 23: BYOL's equal-compute epochs are the arm's epochs x the arm's counted passes
    over BYOL's (was a fixed 1.5 for every arm); a fractional budget becomes train.max_steps."""
    grid = expand_grid(tiny(arms=[
        {"label": "default"},
        {"set": {"method.target_policy": "independent-init"}},
        {"set": {"method.target_policy": "alternating-ema"}},
        {"set": {"method.num_views": 4}},
        {"set": {"method.symmetric": False}},
        {"set": {"method": "byol"}},
    ], seeds=[0], equal_compute=True))
    eq = {c.compute["factor"]: c for c in grid.cells if c.compute}
    assert sorted(eq) == [0.625, 1.5, 1.625, 2.0]
    assert eq[1.625].compute["of"] == ["tribyol (target_policy=independent-init)",
                                       "tribyol (target_policy=alternating-ema)"]
    assert eq[1.625].label == "byol (equal compute x1.625)"
    assert eq[1.625].id == "byol-equal-compute-x1.625_digits_b16_s0"
    # 64 images / batch 16 = 4 steps an epoch: 2 epochs x 1.625 = 3.25 epochs = 13 steps
    assert (eq[1.625].value("train.epochs"), eq[1.625].value("train.max_steps")) == (4, 13)
    assert eq[1.625].compute == {"factor": 1.625, "of": eq[1.625].compute["of"],
                                 "epochs": 3.25, "max_steps": 13}
    assert (eq[2.0].value("train.epochs"), eq[2.0].value("train.max_steps")) == (4, None)
    assert eq[2.0].compute["of"] == ["tribyol (num_views=4)"]
    assert (eq[0.625].value("train.epochs"), eq[0.625].value("train.max_steps")) == (2, 5)
    assert eq[1.5].value("train.epochs") == 3
    assert {c.value("method.name") for c in eq.values()} == {"byol"}
    text = tables_markdown([], grid)  # the note names each factor's arms
    assert "x1.625 = the cost of tribyol (target_policy=independent-init), tribyol " \
           "(target_policy=alternating-ema)" in text
    assert "x0.625 = the cost of tribyol (symmetric=false)" in text


def test_equal_compute_refuses_a_step_cap() -> None:
    spec = {"base": {"train": {"epochs": 2, "max_steps": 5}},
            "axes": {"method": ["tribyol", "byol"]}, "equal_compute": True}
    with pytest.raises(ConfigError, match="equal_compute with train.max_steps"):
        expand_grid(spec)
    spec["base"]["train"].pop("max_steps")
    assert any("equal compute" in cell.row for cell in expand_grid(spec).cells)
