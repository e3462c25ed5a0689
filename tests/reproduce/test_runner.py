"""``reproduce.runner``: cells run, are skipped when done and resume when interrupted; Ctrl+C."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import tribyol.reproduce.runner as runner_module
from tests.reproduce.helpers import FakeRunner, InterruptedRunner, tiny
from tribyol.reproduce.grid import expand_grid
from tribyol.reproduce.runner import Reproduction


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


def test_the_subprocess_runner_waits_for_an_interrupted_child(tmp_path: Path, monkeypatch) -> None:
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
    monkeypatch.setattr(runner_module.subprocess, "Popen",
                        lambda *a, **k: children.append(Child()) or children[-1])
    with pytest.raises(KeyboardInterrupt):
        runner_module.subprocess_runner(["pretrain"], tmp_path / "log.txt")
    (child,) = children
    assert child.waits == 2 and not child.killed  # waited while it saved its checkpoint
