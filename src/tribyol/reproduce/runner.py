"""Running a grid's cells: each cell's ``tribyol`` commands as child processes, skipped when
done and resumed when interrupted, its state in ``out/cells/<id>.json``."""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tribyol.reproduce.cells import Cell, Grid, setting
from tribyol.reproduce.cost import CostModel, applies, duration, planned_steps
from tribyol.reproduce.data import data_paths
from tribyol.reproduce.packing import SlotPool, pool_for

EVAL_KEYS = {"linear", "knn", "finetune", "transfer", "export"}


def subprocess_runner(argv: list[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """``tribyol ARGV`` in a child process (this interpreter), its output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log:
        log.write(f"$ tribyol {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "tribyol.cli", *argv], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # Ctrl+C reached the child too (one process group): it is saving a checkpoint, so
            # wait for it instead of killing it. A second Ctrl+C ends it at once.
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.kill()
                proc.wait()
            raise


class CellFailed(RuntimeError):
    pass


# A child's exit after Ctrl+C: 130 from tribyol (128 + SIGINT), -SIGINT if it died of the signal.
INTERRUPTED_CODES = (128 + signal.SIGINT, -signal.SIGINT)


class CellStopped(Exception):
    """Ctrl+C stopped a cell's command (a pre-training saved its checkpoint); not a failure."""


class GridStopped(Exception):
    """Ctrl+C stopped the grid: ``cells`` were running, no further cell was started."""

    def __init__(self, cells: list[str]) -> None:
        self.cells = cells
        running = (f"{len(cells)} running cell(s) stopped ({', '.join(cells)}), pre-trainings "
                   "with a checkpoint" if cells else "no cell was running")
        super().__init__(f"stopped by Ctrl+C (SIGINT): {running}; run the same command again "
                         "to resume (finished steps are skipped)")


def flags(options: dict[str, Any], skip: Sequence[str] = ()) -> list[str]:
    """``{"test_from_train": 0.2, "force_small_test": true}`` ->
    ``--test-from-train 0.2 --force-small-test``; lists are comma-joined."""
    out: list[str] = []
    for key, value in options.items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


class Reproduction:
    """Runs a grid's cells into ``out``; ``runner(argv, log_file, env) -> exit code``."""

    def __init__(self, grid: Grid, out: Path, runner: Callable[..., int] = subprocess_runner,
                 jobs: int = 1, echo: Callable[[str], None] = print) -> None:
        self.grid, self.out, self.runner, self.jobs, self.echo = grid, Path(out), runner, jobs, echo
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set on Ctrl+C: no cell starts after it

    @functools.cached_property
    def slots(self) -> SlotPool:
        """Where the concurrent cells run: their GPU, threads and memory cap (packing.py)."""
        return pool_for(self.jobs, str(setting(self.grid.spec.get("base") or {}, "train.accelerator")))

    def cost_model(self) -> CostModel:
        # packed onto GPUs, else what the grid's accelerator says
        gpu = True if any(s.gpu is not None for s in self.slots.slots) else None
        return CostModel(self.grid.spec, self.measured(), jobs=self.jobs, gpu=gpu)

    # paths
    def run_dir(self, cell: Cell) -> Path:
        return self.out / "runs" / (cell.same_as or cell.id)

    def state_file(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.id}.json"

    @property
    def store(self) -> Path:
        return self.out / "results.jsonl"

    def state(self, cell: Cell) -> dict[str, Any]:
        try:
            return json.loads(self.state_file(cell).read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, cell: Cell, state: dict[str, Any]) -> None:
        path = self.state_file(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    def is_done(self, cell: Cell) -> bool:
        return bool(self.state(cell).get("done"))

    def run_status(self, cell: Cell) -> str | None:
        """``run.json``'s status of the cell's run (None: no run directory)."""
        run = self.run_dir(cell)
        if not run.exists():
            return None
        try:
            return str(json.loads((run / "run.json").read_text()).get("status"))
        except (OSError, ValueError):
            return "unknown"

    # commands
    def pretrain_argv(self, cell: Cell) -> list[str]:
        config = self.out / "cells" / f"{cell.id}.yaml"
        argv = ["pretrain", "--config", str(config), "--runs-root", str(self.out / "runs"),
                "--name", cell.id, "--set", "train.progress_bar=false"]
        status = self.run_status(cell)
        if status is not None and status != "finished":
            argv.append("--resume")
        return argv

    def pretrain_tree(self, cell: Cell) -> dict[str, Any]:
        tree = copy.deepcopy(cell.tree)
        _root, pre = data_paths(self.grid.spec)
        if pre is not None:
            tree.setdefault("data", {})["root"] = str(pre)
        tree.pop("name", None)
        tree.pop("runs_root", None)
        return tree

    def eval_steps(self, cell: Cell) -> list[tuple[str, list[str]]]:
        """(step name, argv) of each evaluation of the cell."""
        ev = dict(self.grid.eval)
        common = {k: v for k, v in ev.items() if k not in EVAL_KEYS}
        root, _pre = data_paths(self.grid.spec)
        if root is not None:
            common.setdefault("data_root", str(root))
        common.setdefault("seed", 0)  # the evaluation's seed: the same for every cell
        store = ["--store", str(self.store), "--cache-dir", str(self.out / "cache")]
        source = str(self.run_dir(self.by_id(cell.random_init_of)) if cell.random_init_of
                     else self.run_dir(cell))
        extra = ["--random-init"] if cell.random_init_of else []
        steps = [
            ("linear", ["eval", "linear", source, *flags(common), *flags(ev.get("linear") or {}),
                        *extra, *store]),
            ("knn", ["eval", "knn", source, *flags(common), *flags(ev.get("knn") or {}),
                     *extra, *store]),
        ]
        if cell.random_init_of:
            return steps
        finetune = ev.get("finetune") or {}
        for fraction in (finetune.get("fractions") or []) if applies(finetune, cell) else []:
            steps.append((f"finetune-{fraction:g}", [
                "eval", "finetune", source, *flags(common), "--label-fraction", str(fraction),
                "--splits-dir", str(self.out / "splits"), *flags(finetune, skip=("fractions", "batches")),
                *store]))
        transfer = ev.get("transfer") or {}
        if transfer.get("targets") and applies(transfer, cell):
            transfer = {k: v for k, v in transfer.items() if k != "batches"}
            keep = {k: v for k, v in common.items()
                    if k not in ("dataset", "dataset_label", "test_from_train",
                                 "validation_from_train")}
            steps.append(("transfer", ["eval", "transfer", source, *flags({**keep, **transfer}),
                                       *store]))
        if ev.get("export"):
            steps.append(("export", ["export", source, "--out",
                                     str(self.out / "exports" / f"{cell.id}.safetensors"),
                                     "--overwrite"]))
        return steps

    def by_id(self, cell_id: str | None) -> Cell:
        return next(c for c in self.grid.cells if c.id == cell_id)

    def commands(self, cell: Cell) -> list[tuple[str, list[str]]]:
        if cell.same_as:  # its records are those of the run it shares
            return []
        steps = [] if cell.random_init_of else [("pretrain", self.pretrain_argv(cell))]
        return steps + self.eval_steps(cell)

    # one cell
    def run_cell(self, cell: Cell, model: CostModel, env: dict[str, str] | None = None) -> dict[str, Any]:
        """The cell's commands not done yet, each a child with ``env`` (its packing slot's)."""
        state = self.state(cell)
        state.update(id=cell.id, label=cell.label, row=cell.row, seed=cell.seed,
                     run=str(self.run_dir(cell)), same_as=cell.same_as)
        state.setdefault("steps", {})
        env = dict(env or {})
        log_file = self.out / "logs" / f"{cell.id}.log"
        if not cell.random_init_of and not cell.same_as:
            config = self.out / "cells" / f"{cell.id}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(self.pretrain_tree(cell), sort_keys=False))
        for name, argv in self.commands(cell):
            if name == "pretrain":
                if self.run_status(cell) == "finished":
                    continue
            elif name in state["steps"]:
                continue
            start = time.perf_counter()
            code = self.runner(argv, log_file, env)
            seconds = time.perf_counter() - start
            if code != 0 and (code in INTERRUPTED_CODES or self.stopping.is_set()):
                raise CellStopped(cell.id)  # resumes on the next run; nothing failed
            if code != 0:
                state["failed"] = f"{name} exited {code} (log: {log_file})"
                self.save_state(cell, state)
                raise CellFailed(f"{cell.id}: {state['failed']}")
            state["steps"][name] = round(seconds, 2)
            if name == "pretrain":
                units = model.units(cell, self.grid.spec)
                state.update(pretrain_s=round(seconds, 2), units=units,
                             resumed="--resume" in argv, jobs=self.jobs)
            self.save_state(cell, state)
        evals = [n for n in state["steps"] if n not in ("pretrain", "export")]
        state.update(done=True, failed=None, evals=len(evals), jobs=self.jobs,
                     eval_s=round(sum(state["steps"][n] for n in evals), 2))
        self.save_state(cell, state)
        return state

    # the plan
    def measured(self) -> list[dict[str, Any]]:
        out = []
        for cell in self.grid.cells:
            state = self.state(cell)
            if state.get("done") and not state.get("resumed"):
                out.append(state)
        return out

    def plan(self, cells: list[Cell]) -> tuple[str, float]:
        model = self.cost_model()
        todo = [c for c in cells if not self.is_done(c)]
        lines = [f"grid {self.grid.name}: {len(cells)} cell(s), {len(cells) - len(todo)} done, "
                 f"{len(todo)} to run, {self.jobs} job(s) in parallel -> {self.out}",
                 "", "| cell | row | seed | steps | status | est. |", "|---|---|---|---|---|---|"]
        total = 0.0
        for cell in cells:
            if self.is_done(cell):
                status, est = "done", 0.0
            else:
                run = self.run_status(cell)
                status = ("same run as " + cell.same_as if cell.same_as
                          else "random init of " + str(cell.random_init_of) if cell.random_init_of
                          else {None: "to run", "finished": "evaluate"}.get(run, f"resume ({run})"))
                est = model.seconds(cell, self.grid.spec)
                total += est
            steps = ("–" if cell.random_init_of or cell.same_as
                     else planned_steps(cell, self.grid.spec) or "?")
            lines.append(f"| {cell.id} | {cell.label} | {cell.seed} | {steps} | {status} | "
                         f"{duration(est)} |")
        wall = model.wall(total, len(todo))
        lines += ["", f"estimated: {duration(total)} of work, about {duration(wall)} with "
                      f"{self.jobs} job(s) ({model.source}: {model.unit:.3g} s per BYOL-step unit, "
                      f"{model.eval:.3g} s per evaluation{model.packing_note()})",
                  self.slots.describe()]
        return "\n".join(lines), wall

    def run(self, cells: list[Cell]) -> list[str]:
        """Run the cells not done yet; returns the ids that failed. Ctrl+C raises
        ``GridStopped`` once the running cells have stopped (none is reported as failed)."""
        todo = [c for c in cells if not self.is_done(c)]
        # Runs first, then cells that reuse a run (same config, random init).
        todo.sort(key=lambda c: bool(c.same_as or c.random_init_of))
        first_wave = [c for c in todo if not (c.same_as or c.random_init_of)]
        second_wave = [c for c in todo if c.same_as or c.random_init_of]
        progress = _Progress(len(cells), todo, finished=len(cells) - len(todo))
        try:
            for wave in (first_wave, second_wave):
                # a cell that reuses a failed cell's run has nothing to run on
                self._run_wave([c for c in wave if not _needs_failed(c, progress.failed)], progress)
        except KeyboardInterrupt:
            self.stopping.set()
        if self.stopping.is_set():
            raise GridStopped(progress.stopped)
        return progress.failed

    def _run_wave(self, wave: list[Cell], progress: _Progress) -> None:
        if self.jobs <= 1:
            for cell in wave:
                self._run_one(cell, progress)
            return
        pool = concurrent.futures.ThreadPoolExecutor(self.jobs)
        try:
            list(pool.map(functools.partial(self._run_one, progress=progress), wave))
        except KeyboardInterrupt:
            # The running cells' children got Ctrl+C too: wait while they stop.
            self.stopping.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_one(self, cell: Cell, progress: _Progress) -> None:
        """One cell, its outcome counted in ``progress``: stopped (Ctrl+C), failed or done."""
        if self.stopping.is_set():
            return
        model = self.cost_model()
        t0 = time.perf_counter()
        try:
            with self.slots.take() as slot:
                self.run_cell(cell, model, slot.env())
        except (CellStopped, KeyboardInterrupt) as err:
            with self.lock:
                progress.stopped.append(cell.id)
                self.stopping.set()
            if isinstance(err, KeyboardInterrupt):
                raise
            return
        except CellFailed as err:
            with self.lock:
                progress.failed.append(cell.id)
                self.echo(f"FAILED {err}")
            return
        with self.lock:
            progress.finished += 1
            left = [c for c in progress.todo if not self.is_done(c) and c.id not in progress.failed]
            model = self.cost_model()
            rest = model.wall(sum(model.seconds(c, self.grid.spec) for c in left), len(left))
            self.echo(f"[{progress.finished}/{progress.total} done, {len(left)} left] {cell.id} in "
                      f"{duration(time.perf_counter() - t0)}; elapsed "
                      f"{duration(time.perf_counter() - progress.started)}, ETA {duration(rest)}")


@dataclasses.dataclass
class _Progress:
    """A ``Reproduction.run``'s counts, updated under its lock by the cells as they end."""

    total: int  # the cells asked for, done ones included
    todo: list[Cell]
    finished: int
    started: float = dataclasses.field(default_factory=time.perf_counter)
    failed: list[str] = dataclasses.field(default_factory=list)
    stopped: list[str] = dataclasses.field(default_factory=list)  # running when Ctrl+C came


def _needs_failed(cell: Cell, failed: list[str]) -> bool:
    return bool((cell.same_as and cell.same_as in failed)
                or (cell.random_init_of and cell.random_init_of in failed))
