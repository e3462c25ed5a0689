"""``tribyol reproduce``: the command, end to end in process, and its Ctrl+C."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tribyol.reproduce.cli as reproduce_cli
from tests.reproduce.helpers import TINY_BASE, InterruptedRunner, in_process, tiny
from tribyol.cli import main
from tribyol.reproduce.cost import step_units
from tribyol.reproduce.grid import load_grid
from tribyol.reproduce.runner import Reproduction
from tribyol.reproduce.tables import grid_records


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


def test_ctrl_c_in_reproduce_is_one_line_and_exit_130(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny(axes={"method": ["tribyol", "byol"]}, seeds=[0])))
    monkeypatch.setattr(reproduce_cli, "subprocess_runner", InterruptedRunner(True))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "out")]) == 130
    out, err = capsys.readouterr()
    assert "FAILED" not in out + err and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("stopped by Ctrl+C (SIGINT): 1 running cell(s) stopped "
                           "(tribyol_digits_b16_s0)") and "run the same command again" in line
