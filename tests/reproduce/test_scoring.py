"""``reproduce.scoring``: ``select_on``, and the pre-training subset outside the scored carves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.reproduce.helpers import GRIDS, validation_spec
from tribyol.cli import main
from tribyol.errors import ConfigError
from tribyol.reproduce.data import prepare_data
from tribyol.reproduce.grid import expand_grid, load_grid


def test_select_on_is_checked(tmp_path: Path, capsys) -> None:
    spec = validation_spec(tmp_path / "data")
    expand_grid(spec)
    ev, subset = spec["eval"], spec["data"]["pretrain_subset"]
    bad = [
        ({"select_on": "train"}, "select_on must be test or validation, got 'train'"),
        ({"select_on": "test"}, "eval.validation_from_train scores a validation carve, but "
                                "select_on is test"),
        ({"eval": {**ev, "validation_from_train": None}}, "needs eval.validation_from_train"),
        ({"eval": {**ev, "validation_from_train": 1.5}}, "needs eval.validation_from_train"),
        ({"eval": {**ev, "validation_from_train": 0.8}}, "leave no training images"),
        ({"eval": {k: v for k, v in ev.items() if k != "test_from_train"}},
         "give eval.test_from_train"),
        ({"data": {"root": str(tmp_path)}}, "needs data.pretrain_subset"),
        ({"data": {"root": str(tmp_path), "pretrain_subset": {
            k: v for k, v in subset.items() if k != "validation_fraction"}}},
         "pre-training would see validation images"),
        ({"eval": {**ev, "transfer": {"targets": ["mnist"]}}}, "cannot run eval.transfer"),
    ]
    for over, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            expand_grid({**spec, **over})
    # from the command line: one line, exit 2, nothing written
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**spec, "select_on": "train"}))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: grid: select_on must be test or validation") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_pretraining_subset_must_lie_outside_the_evaluated_carve(tmp_path) -> None:
    """The subset is drawn outside a carve; scoring on another carve (fraction or seed) would
    put pre-training images in the test set, so the grid is refused; and a subset folder made
    for another carve is not reused."""
    spec = {"base": {}, "data": {"root": str(tmp_path / "data"),
                                 "pretrain_subset": {"per_class": 2, "test_fraction": 0.2, "seed": 0}},
            "eval": {"test_from_train": 0.2}}
    expand_grid(spec)  # the same carve: accepted
    expand_grid({**spec, "eval": {"test_from_train": 0.2, "seed": 1}})  # --seed moves no carve
    for eval_spec in ({"test_from_train": 0.3}, {"test_from_train": 0.2, "split_seed": 1}, {}):
        with pytest.raises(ConfigError, match="pre-training would see test images"):
            expand_grid({**spec, "eval": eval_spec})
    old = tmp_path / "data-pretrain2" / "train"  # a subset folder from before, unrecorded
    old.mkdir(parents=True)
    with pytest.raises(ConfigError, match="was made for another pre-training subset"):
        prepare_data(spec, log=lambda _: None)


def test_the_shipped_extra_views_grid_chooses_on_validation() -> None:
    grid = load_grid(GRIDS / "third_view_validation.yaml")
    assert grid.spec["select_on"] == "validation"
    assert sorted({c.value("augment.extra_views") for c in grid.cells}) == ["byol-pairs", "cycle",
                                                                         "uniform"]
    assert len(grid.cells) == 9 and {c.seed for c in grid.cells} == {0, 1, 2}
    ablation = load_grid(GRIDS / "cpu_ablation.yaml")
    for key in ("base", "cost"):  # everything else as the ablation
        assert grid.spec[key] == ablation.spec[key]
    for key in ("limit_train", "limit_test", "test_from_train", "knn"):
        assert grid.spec["eval"][key] == ablation.spec["eval"][key]
