"""``reproduce.grid``: a grid file expanded into cells (arms x axes x seeds), checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reproduce.helpers import GRIDS, TINY_EVAL, flat, tiny
from tribyol.errors import ConfigError
from tribyol.reproduce.grid import expand_grid, load_grid, mark_same_runs, resolved_fingerprint, select


def test_axes_are_a_product_times_seeds() -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"], "batch": [16, 32]}, seeds=[0, 1]))
    assert len(grid.cells) == 2 * 2 * 2
    ids = {c.id for c in grid.cells}
    assert "tribyol_digits_b16_s0" in ids and "byol_digits_b32_s1" in ids
    cell = next(c for c in grid.cells if c.id == "byol_digits_b32_s1")
    assert cell.value("method.name") == "byol" and cell.value("train.batch_size") == 32
    assert cell.value("train.seed") == 1 and cell.value("model.width") == 8  # base kept
    assert cell.label == "byol"
    # --seeds replaces the grid's seeds
    assert {c.seed for c in expand_grid(grid.spec, seeds=[5]).cells} == {5}


def test_arms_vary_one_factor_each() -> None:
    grid = expand_grid(tiny(arms=[
        {"label": "default"},
        {"set": {"method.target_policy": "alternating-ema"}},
        {"set": {"method.symmetric": False}},
        {"set": {"method": "byol"}},
    ], seeds=[0, 1, 2]))
    assert len(grid.cells) == 4 * 3
    labels = sorted({c.label for c in grid.cells})
    assert labels == ["byol", "tribyol", "tribyol (symmetric=false)",
                      "tribyol (target_policy=alternating-ema)"]
    arm = [c for c in grid.cells if "alternating" in c.id]
    assert len(arm) == 3
    for cell in arm:  # only the arm's factor (and the seed) differs from the base
        assert set(cell.overrides) == {"method.target_policy", "train.seed"}
        assert cell.value("method.symmetric") is None  # the default, untouched


def test_only_selects_by_glob_or_substring() -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1]))
    assert [c.id for c in select(grid.cells, "byol_*")] == ["byol_digits_b16_s0",
                                                            "byol_digits_b16_s1"]
    assert {c.id for c in select(grid.cells, "*_s1")} == {"tribyol_digits_b16_s1",
                                                          "byol_digits_b16_s1"}
    assert len(select(grid.cells, "tribyol_digits_b16_s0,byol_digits_b16_s0")) == 2
    assert select(grid.cells, "nothing") == []


def test_an_arm_restating_the_default_shares_its_run() -> None:
    grid = expand_grid(tiny(arms=[{"label": "default"},
                                  {"set": {"augment.extra_views": "byol-pairs"}},
                                  {"set": {"augment.extra_views": "uniform"}}], seeds=[0]))
    mark_same_runs(grid.cells, resolved_fingerprint)
    same = {c.id: c.same_as for c in grid.cells}
    assert same["tribyol-extra_views-byol-pairs_digits_b16_s0"] == "tribyol_digits_b16_s0"
    assert same["tribyol-extra_views-uniform_digits_b16_s0"] is None


def test_bad_grids_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        expand_grid(tiny(axis={"method": ["byol"]}))
    with pytest.raises(ConfigError, match="share the id"):
        expand_grid(tiny(arms=[{"label": "x"}, {"label": "x"}]))


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_expand_to_valid_configs(path: Path) -> None:
    from tribyol.resolve import load_config

    grid = load_grid(path)
    assert grid.cells and grid.name == path.stem
    for cell in grid.cells:
        cfg = load_config(None, [(k, v) for k, v in flat(cell.tree).items()])
        assert cfg.train.seed == cell.seed


def test_shipped_ablation_and_methods_grids_have_the_asked_arms() -> None:
    ablation = load_grid(GRIDS / "cpu_ablation.yaml")
    for label in ("tribyol", "byol", "byol (equal compute x1.5)", "tribyol (views=4)",
                  "tribyol (symmetric=false)", "tribyol (target_policy=independent-init)",
                  "tribyol (target_policy=alternating-ema)", "tribyol (third_view=cycle)",
                  "tribyol (third_view=byol-pairs)", "tribyol (third_view=uniform)"):
        assert sum(c.label == label for c in ablation.cells) == 3, label
    assert ablation.spec["data"]["pretrain_subset"]["test_fraction"] == \
        ablation.spec["eval"]["test_from_train"]  # pre-training excludes the carved test split
    methods = load_grid(GRIDS / "cpu_methods.yaml")
    b32 = {c.label for c in methods.cells if c.value("train.batch_size") == 32}
    assert {"tribyol", "byol", "cross", "simsiam", "simclr", "random-init"} <= b32
    for batch in (64, 128):
        assert {c.value("method.name") for c in methods.cells
                if c.value("train.batch_size") == batch} == {"tribyol", "byol"}
    paper = load_grid(GRIDS / "paper.yaml")
    assert {(c.value("data.dataset"), c.value("train.batch_size")) for c in paper.cells} == {
        (d, b) for d in ("cifar10", "cifar100", "stl10") for b in (32, 64, 128)}
    assert all(c.value("model.backbone") == "resnet50" for c in paper.cells)
    assert all(c.value("train.epochs") in (80, 120) for c in paper.cells)


def test_a_grid_name_must_be_one_plain_folder_name() -> None:
    # results go to results/grids/<name>: "../../escape" wrote outside it
    for name in ("../../escape", "a/b", "..", "/abs", "  "):
        with pytest.raises(ConfigError, match="must be one plain folder name"):
            expand_grid(tiny(name=name))
    assert expand_grid(tiny(name="my-grid")).name == "my-grid"
    assert expand_grid(tiny(), name="from_file").name == "from_file"


def test_random_init_and_export_must_be_booleans() -> None:
    with pytest.raises(ConfigError, match=r"random_init must be true or false, got 'maybe'"):
        expand_grid(tiny(random_init="maybe"))
    with pytest.raises(ConfigError, match=r"eval.export must be true or false, got 1"):
        expand_grid({**tiny(), "eval": {**TINY_EVAL, "export": 1}})
    assert any(c.random_init_of for c in expand_grid(tiny(random_init=True)).cells)


def test_views_is_no_alias_of_tribyols_num_views() -> None:
    """Issue 21: "views" means the tensors only; an arm sets TriBYOL's by method.num_views."""
    (cell,) = expand_grid(tiny(arms=[{"set": {"method.num_views": 4}}], seeds=[0])).cells
    assert cell.value("method.num_views") == 4 and cell.label == "tribyol (num_views=4)"
    (old,) = expand_grid(tiny(arms=[{"set": {"views": 4}}], seeds=[0])).cells
    assert old.value("method.num_views") is None and old.overrides["views"] == 4
