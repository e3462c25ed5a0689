"""``tribyol reproduce``: grid expansion, equal compute, skip / resume, plan and tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tribyol.cli import main
from tribyol.errors import ConfigError
from tribyol.reproduce import (
    CostModel,
    Reproduction,
    expand_grid,
    grid_records,
    load_grid,
    mark_same_runs,
    resolved_fingerprint,
    select,
    step_units,
    tables_markdown,
)

GRIDS = Path(__file__).resolve().parents[1] / "configs" / "grids"

TINY_BASE = {
    "method": {"name": "tribyol"},
    "data": {"dataset": "digits", "limit": 64},
    "model": {"backbone": "convnet", "width": 8, "hidden_dim": 16, "proj_dim": 8},
    "train": {"batch_size": 16, "epochs": 2, "precision": "32", "accelerator": "cpu"},
}
TINY_EVAL = {"limit_train": 200, "limit_test": 100, "device": "cpu"}


def tiny(**spec: Any) -> dict[str, Any]:
    return {"base": TINY_BASE, "eval": TINY_EVAL, **spec}


# -- expansion -----------------------------------------------------------------------------------


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
        {"set": {"views": 4}},
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
        cfg = load_config(None, [(k, v) for k, v in _flat(cell.tree).items()])
        assert cfg.train.seed == cell.seed


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


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


# -- running with a stub runner ------------------------------------------------------------------


class FakeRunner:
    """Stands in for ``tribyol ...`` subprocesses: records the argv, writes what a real
    command writes (a run.json, one store record), and can stop a pretrain midway."""

    def __init__(self, stop_pretrain: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.stop_pretrain = stop_pretrain or set()

    def __call__(self, argv: list[str], log_file: Path, env: dict) -> int:
        self.calls.append(list(argv))
        if argv[0] == "pretrain":
            run = Path(argv[argv.index("--runs-root") + 1]) / argv[argv.index("--name") + 1]
            run.mkdir(parents=True, exist_ok=True)
            stopped = run.name in self.stop_pretrain
            self.stop_pretrain.discard(run.name)
            (run / "run.json").write_text(json.dumps(
                {"format": "tribyol-run-v1", "status": "stopped" if stopped else "finished"}))
            return 143 if stopped else 0
        if argv[0] == "eval":
            source = Path(argv[2])
            store = Path(argv[argv.index("--store") + 1])
            config = yaml.safe_load((source.parent.parent / "cells" / f"{source.name}.yaml")
                                    .read_text()) if (source.parent.parent / "cells").is_dir() else {}
            method = "random-init" if "--random-init" in argv else config["method"]["name"]
            record = {"run_id": source.name + ("+random-init" if "--random-init" in argv else ""),
                      "method": method, "dataset": "digits", "protocol": argv[1], "metric": "top1",
                      "value": 50.0 + config["train"]["seed"], "seed": 0, "test_split": "test",
                      "pretrain_batch_size": config["train"]["batch_size"],
                      "pretrain_epochs": config["train"]["epochs"], "source": str(source),
                      "params": {"num_train": 200, "num_test": 100}}
            with open(store, "a") as f:
                f.write(json.dumps(record) + "\n")
        return 0

    def names(self) -> list[str]:
        return [a[0] if a[0] != "eval" else f"{a[1]}:{Path(a[2]).name}" for a in self.calls]


def test_cells_run_then_are_skipped_and_interrupted_runs_resume(tmp_path: Path) -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0]))
    runner = FakeRunner(stop_pretrain={"byol_digits_b16_s0"})
    messages: list[str] = []
    repro = Reproduction(grid, tmp_path, runner=runner, echo=messages.append)
    failed = repro.run(grid.cells)
    assert failed == ["byol_digits_b16_s0"]  # stopped: exit 143
    assert runner.names() == ["pretrain", "linear:tribyol_digits_b16_s0", "knn:tribyol_digits_b16_s0",
                              "pretrain"]
    assert repro.is_done(grid.cells[0]) and not repro.is_done(grid.cells[1])
    assert repro.run_status(grid.cells[1]) == "stopped"
    assert any("[1/2 done, 1 left]" in m and "ETA" in m for m in messages)
    assert any(m.startswith("FAILED byol_digits_b16_s0") for m in messages)

    runner.calls.clear()
    assert repro.run(grid.cells) == []
    # the done cell is skipped; the stopped one resumes and is evaluated
    assert runner.names() == ["pretrain", "linear:byol_digits_b16_s0", "knn:byol_digits_b16_s0"]
    assert "--resume" in runner.calls[0]

    runner.calls.clear()
    assert repro.run(grid.cells) == [] and runner.calls == []  # everything done


def test_a_finished_run_with_missing_evals_runs_only_those(tmp_path: Path) -> None:
    grid = expand_grid(tiny(seeds=[0]))
    cell = grid.cells[0]
    run = tmp_path / "runs" / cell.id
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "finished"}))
    repro = Reproduction(grid, tmp_path, runner=FakeRunner(), echo=lambda m: None)
    repro.save_state(cell, {"steps": {"linear": 3.0}})  # linear done before an interruption
    repro.runner = runner = FakeRunner()
    (tmp_path / "cells" / f"{cell.id}.yaml").write_text(yaml.safe_dump(repro.pretrain_tree(cell)))
    repro.run(grid.cells)
    assert runner.names() == [f"knn:{cell.id}"]


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


def test_tables_show_rows_by_cell_with_n_and_the_poster(tmp_path: Path) -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1],
                            equal_compute=True, random_init=True))
    runner = FakeRunner()
    repro = Reproduction(grid, tmp_path, runner=runner, jobs=2, echo=lambda m: None)
    assert repro.run(grid.cells) == []  # two cells at a time, random init after its source
    assert len([a for a in runner.calls if a[0] == "pretrain"]) == 6
    assert [a[1] for a in runner.calls[-2:] if "--random-init" in a] == ["linear", "knn"]
    records = grid_records(repro, grid.cells)
    assert {r["method"] for r in records} == {"tribyol", "byol", "byol@equal compute x1.5",
                                              "random-init"}
    assert {r["equal_compute"]["factor"] for r in records if "equal_compute" in r} == {1.5}
    text = tables_markdown(records, grid)
    assert "| BYOL (equal compute x1.5) |" in text and "| Random init |" in text
    assert "x1.5 = the cost of tribyol" in text
    assert "50.50±0.71 (n=2)" in text  # seeds 0 and 1 score 50 and 51
    # the poster's numbers need the poster's datasets; here the digits column has none
    assert "/ –" in text


# -- end to end, in process --------------------------------------------------------------------


def in_process(argv: list[str], log_file: Path, env: dict) -> int:
    return main(argv)


def test_a_tiny_digits_grid_end_to_end(tmp_path: Path, capsys) -> None:
    spec = tiny(axes={"method": ["tribyol"]}, seeds=[0])
    spec["base"] = {**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": 1}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "1 cell(s), 0 done, 1 to run" in printed and "tribyol eval knn" in printed
    assert not out.exists()  # a dry run writes nothing

    grid = load_grid(path)
    repro = Reproduction(grid, out, runner=in_process, echo=lambda m: None)
    assert repro.run(grid.cells) == []
    cell = grid.cells[0]
    assert repro.run_status(cell) == "finished"
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["protocol"] for r in records) == ["knn", "linear"]
    assert all(r["run_id"] == cell.id and r["method"] == "tribyol" for r in records)
    assert sorted(r["protocol"] for r in grid_records(repro, grid.cells)) == ["knn", "linear"]
    state = repro.state(cell)
    assert state["done"] and set(state["steps"]) == {"pretrain", "linear", "knn"}
    assert state["units"] == pytest.approx(4 * step_units(cell))  # 64 images / 16 = 4 steps


def test_a_pretraining_subset_must_lie_outside_the_evaluated_carve(tmp_path) -> None:
    """The subset is drawn outside a carve; scoring on another carve (fraction or seed) would
    put pre-training images in the test set, so the grid is refused; and a subset folder made
    for another carve is not reused."""
    from tribyol.reproduce import expand_grid, prepare_data

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


def test_equal_compute_refuses_a_step_cap() -> None:
    from tribyol.reproduce import expand_grid

    spec = {"base": {"train": {"epochs": 2, "max_steps": 5}},
            "axes": {"method": ["tribyol", "byol"]}, "equal_compute": True}
    with pytest.raises(ConfigError, match="equal_compute with train.max_steps"):
        expand_grid(spec)
    spec["base"]["train"].pop("max_steps")
    assert any("equal compute" in cell.row for cell in expand_grid(spec).cells)


def test_tables_print_the_paired_difference_of_each_row_from_the_reference(tmp_path: Path) -> None:
    """Issue 20: rows run with the same seeds and carve are compared seed by seed, and the
    tables say the mean difference with its 95 % t-interval beside each row's mean ± std."""
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0, 1, 2]))
    repro = Reproduction(grid, tmp_path, runner=FakeRunner(), echo=lambda m: None)
    assert repro.run(grid.cells) == []
    lines = []
    for line in repro.store.read_text().splitlines():  # BYOL: TriBYOL's score + 1, 2, 3
        record = json.loads(line)
        if record["method"] == "byol":
            record["value"] += 1 + int(record["run_id"][-1])
        lines.append(json.dumps(record))
    repro.store.write_text("\n".join(lines) + "\n")
    text = tables_markdown(grid_records(repro, grid.cells), grid)
    assert "| TriBYOL | 51.00±1.00 (n=3) / – |" in text and "| BYOL | 53.00±2.00 (n=3) / – |" in text
    # differences 1, 2, 3: mean 2, se 1/sqrt(3), t(0.975, 2) = 4.3027; p = 1 - t/sqrt(2 + t^2)
    assert "| Row − TriBYOL | Digits b16 |" in text
    assert "| BYOL | +2.00 [-0.48, +4.48] p 0.07 (n 3) |" in text


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


class InterruptedRunner(FakeRunner):
    """Ctrl+C during the first pretrain: ``raise_in_parent`` as the parent's wait sees it
    (jobs 1), else the child's exit code 130 only (a worker thread, jobs > 1)."""

    def __init__(self, raise_in_parent: bool) -> None:
        super().__init__()
        self.raise_in_parent = raise_in_parent

    def __call__(self, argv: list[str], log_file: Path, env: dict) -> int:
        if argv[0] == "pretrain" and not any(a[0] == "pretrain" for a in self.calls):
            self.calls.append(list(argv))
            if self.raise_in_parent:
                raise KeyboardInterrupt
            return 130
        return super().__call__(argv, log_file, env)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_reports_the_cells_as_stopped_not_failed(tmp_path: Path, jobs: int) -> None:
    grid = expand_grid(tiny(axes={"method": ["tribyol", "byol", "simsiam"]}, seeds=[0]))
    messages: list[str] = []
    repro = Reproduction(grid, tmp_path, runner=InterruptedRunner(jobs == 1), jobs=jobs,
                         echo=messages.append)
    raised: BaseException | None = None
    try:
        repro.run(grid.cells)
    except BaseException as err:  # noqa: BLE001 (KeyboardInterrupt was what escaped)
        raised = err
    assert not any("FAILED" in m for m in messages), messages
    assert not any(repro.state(c).get("failed") for c in grid.cells)
    assert type(raised).__name__ == "GridStopped", repr(raised)
    (stopped,) = raised.cells  # the cell whose pretrain got Ctrl+C (threads: either)
    assert stopped in {c.id for c in grid.cells}
    if jobs == 1:  # no cell starts after Ctrl+C
        assert [a[0] for a in repro.runner.calls] == ["pretrain"]


def test_ctrl_c_in_reproduce_is_one_line_and_exit_130(tmp_path: Path, capsys, monkeypatch) -> None:
    import tribyol.reproduce as reproduce

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0])))
    monkeypatch.setattr(reproduce, "subprocess_runner", InterruptedRunner(True))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "out")]) == 130
    out, err = capsys.readouterr()
    assert "FAILED" not in out + err and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("stopped by Ctrl+C (SIGINT): 1 running cell(s) stopped "
                           "(tribyol_digits_b16_s0)") and "run the same command again" in line


def test_the_subprocess_runner_waits_for_an_interrupted_child(tmp_path: Path, monkeypatch) -> None:
    import tribyol.reproduce as reproduce

    class Child:
        """Ctrl+C arrives during the first wait; the child then exits 130 on its own."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.waits, self.killed = 0, False

        def wait(self) -> int:
            self.waits += 1
            if self.waits == 1:
                raise KeyboardInterrupt
            return 130

        def kill(self) -> None:
            self.killed = True

    children: list[Child] = []
    monkeypatch.setattr(reproduce.subprocess, "Popen",
                        lambda *a, **k: children.append(Child()) or children[-1])
    with pytest.raises(KeyboardInterrupt):
        reproduce.subprocess_runner(["pretrain"], tmp_path / "log.txt")
    (child,) = children
    assert child.waits == 2 and not child.killed  # waited while it saved its checkpoint


# -- select_on: choosing on a validation carve (issue 20, item 5) ------------------------------


def validation_spec(root: Path, **over: Any) -> dict[str, Any]:
    spec = {"select_on": "validation",
            "data": {"root": str(root), "pretrain_subset": {
                "per_class": 6, "test_fraction": 0.2, "seed": 0, "validation_fraction": 0.1}},
            "base": {"method": {"name": "tribyol"}, "data": {"dataset": "folder", "image_size": 8},
                     "model": {"backbone": "convnet", "width": 8, "hidden_dim": 16, "proj_dim": 8},
                     "train": {"batch_size": 16, "epochs": 1, "precision": "32",
                               "accelerator": "cpu"}},
            "seeds": [0],
            "eval": {"dataset": "folder", "test_from_train": 0.2, "validation_from_train": 0.1,
                     "force_small_test": True, "device": "cpu", "knn": {"k": 5}}}
    spec.update(over)
    return spec


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


def test_a_validation_grid_never_scores_the_test_carve(tmp_path: Path) -> None:
    from tests.helpers import random_png_folder
    from tribyol.reproduce import VALIDATION_MANIFEST, prepare_data

    root = random_png_folder(tmp_path / "toy")
    grid = expand_grid(validation_spec(root))
    out = tmp_path / "out"
    out.mkdir()
    prepare_data(grid.spec, log=lambda _: None, out=out)
    made = json.loads((tmp_path / "toy-pretrain6-val0.1" / "subset.json").read_text())
    assert made["validation_fraction"] == 0.1  # the subset lies outside both carves
    manifest = json.loads((out / VALIDATION_MANIFEST).read_text())
    assert manifest["images"] == 10 and set(manifest["per_class"].values()) == {1}
    repro = Reproduction(grid, out, runner=in_process, echo=lambda m: None)
    assert repro.run(grid.cells) == []
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["protocol"] for r in records) == ["knn", "linear"]
    for r in records:  # scored on the validation carve (10 images), named by its digest
        assert r["test_split"] == ("validation 0.1 of train outside the test carve 0.2 (split "
                                   f"seed 0, sha256 {manifest['sha256'][:12]})")
        assert r["params"]["num_test"] == 10
    text = tables_markdown(grid_records(repro, grid.cells), grid)
    assert "**Scored on: the validation carve** (`select_on: validation`)" in text
    plain = expand_grid(tiny(seeds=[0]))
    assert "(`select_on: test`)" in tables_markdown([], plain)


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
