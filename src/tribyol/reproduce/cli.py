"""``tribyol reproduce GRID.yaml``: the sub-command (docs/reproduce.md)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import yaml

from tribyol.errors import ConfigError
from tribyol.reproduce.cells import Cell, Grid
from tribyol.reproduce.data import prepare_data
from tribyol.reproduce.equal_memory import apply_cached, measure_equal_memory
from tribyol.reproduce.grid import load_grid, mark_same_runs, resolved_fingerprint, select
from tribyol.reproduce.runner import GridStopped, Reproduction, subprocess_runner
from tribyol.reproduce.tables import write_tables


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated seeds, e.g. 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds >= 0, got {text!r}")
    return seeds


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Print the plan of the grid's cells (``--only``), then run them and write the tables;
    ``--dry-run`` prints their commands instead."""
    grid = load_grid(args.grid, args.seeds)
    cells = list(select(grid.cells, args.only))
    if not cells:
        raise ConfigError(f"--only {args.only!r} matches none of the grid's {len(grid.cells)} "
                          f"cells (ids look like {grid.cells[0].id})")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out or Path("results") / "grids" / grid.name)
    _equal_memory_batches(grid, cells, out, args.dry_run)
    cells = _with_their_sources(grid, cells)
    repro = Reproduction(grid, out, runner=subprocess_runner, jobs=args.jobs)
    plan, _wall = repro.plan(cells)
    print(plan, flush=True)
    if args.dry_run:
        print("\ncommands (dry run; nothing is run):")
        for cell in cells:
            for _name, argv in repro.commands(cell):
                print("  tribyol " + " ".join(argv))
        return 0
    return _run(repro, cells)


def _equal_memory_batches(grid: Grid, cells: list[Cell], out: Path, dry_run: bool) -> None:
    """Equal-memory cells get their measured batch (``equal_memory.json``, else the batch
    finder on the grid's data, before anything runs; a dry run measures nothing)."""
    missing = [c for c in apply_cached(grid, out) if c in cells]
    if not missing:
        return
    if dry_run:
        print(f"{len(missing)} equal-memory cell(s): BYOL's batch is measured before the run "
              "(the batch finder; the commands below show the other arm's batch)")
        return
    prepare_data(grid.spec, out=out)
    measure_equal_memory(grid, out, missing)


def _with_their_sources(grid: Grid, cells: list[Cell]) -> list[Cell]:
    """``cells`` with the cells whose runs they reuse (same config, random init), in the
    grid's order."""
    mark_same_runs(cells, resolved_fingerprint)
    wanted = {c.id for c in cells}
    cells = cells + [c for c in grid.cells if c.id not in wanted and any(
        x.same_as == c.id or x.random_init_of == c.id for x in cells)]
    order = {c.id: i for i, c in enumerate(grid.cells)}
    return sorted(cells, key=lambda c: order[c.id])


def _run(repro: Reproduction, cells: list[Cell]) -> int:
    """Run the cells into ``repro.out``, then its report and tables: 0, 1 (a cell failed) or
    130 (Ctrl+C)."""
    out = repro.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.yaml").write_text(yaml.safe_dump(repro.grid.spec, sort_keys=False))
    prepare_data(repro.grid.spec, out=out)
    try:
        failed = repro.run(cells)
    except GridStopped as err:
        print(str(err), file=sys.stderr)
        return 128 + signal.SIGINT  # as a shell reports a command ended by Ctrl+C
    report_log = out / "logs" / "report.log"
    if repro.store.exists():
        code = repro.runner(["report", "--store", str(repro.store), "--out", str(out / "report"),
                             "--tsne-plots", "0"], report_log, {})
        if code != 0:
            print(f"tribyol report exited {code} (log: {report_log})")
    write_tables(repro, cells)
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(failed)}; their logs are in {out / 'logs'}; "
              "run the same command again to retry (finished steps are skipped)")
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce", help="run a grid of pre-trainings + evaluations (configs/grids/*.yaml)",
        description="Expand GRID.yaml into cells (arms x axes x seeds), print the plan and its "
                    "estimated cost, pre-train and evaluate each cell not done yet (resuming "
                    "interrupted runs), then write poster-shaped tables (docs/reproduce.md).")
    p.add_argument("grid", help="grid file, e.g. configs/grids/cpu_ablation.yaml")
    p.add_argument("--seeds", type=parse_seeds, help="comma-separated seeds (default: the grid's)")
    p.add_argument("--only", metavar="PATTERN",
                   help="only cells whose id or label matches a glob (comma-separated), e.g. '*b32*'")
    p.add_argument("--out", help="output folder (default results/grids/<grid name>)")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells run in parallel as subprocesses (default 1), packed: GPUs "
                        "round-robin, cores // N threads each (unless OMP_NUM_THREADS is set), "
                        "a 1/N share of the GPU's memory (docs/reproduce.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and commands only")
    p.set_defaults(func=cmd_reproduce)
