"""A grid file (``configs/grids/*.yaml``) expanded into cells: arms x axes x seeds, then its
equal-compute and random-init rows (docs/reproduce.md)."""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tribyol.config import config_default, dotted_items, read_yaml_file, to_dict
from tribyol.errors import ConfigError
from tribyol.reproduce.cells import Cell, Grid, cell_id, dataset_tag, merge
from tribyol.reproduce.equal_compute import equal_compute_cells, equal_compute_factor
from tribyol.reproduce.equal_memory import equal_memory_cells
from tribyol.reproduce.scoring import check_subset_outside_test, select_on
from tribyol.resolve import load_config

# Axis / arm key aliases -> dotted config keys.
ALIASES = {
    "method": "method.name",
    "batch": "train.batch_size",
    "batch_size": "train.batch_size",
    "dataset": "data.dataset",
    "epochs": "train.epochs",
    "backbone": "model.backbone",
    "seed": "train.seed",
}
GRID_KEYS = {"name", "description", "estimate", "base", "data", "axes", "arms", "seeds",
             "equal_compute", "equal_memory", "random_init", "eval", "cost", "select_on"}
ARM_KEYS = {"label", "set", "axes"}
# Keys a cell's variant text leaves out: columns, or the row's method.
NOT_A_VARIANT = {"method.name", "train.batch_size", "data.dataset", "train.seed"}


def _key(key: str) -> str:
    return ALIASES.get(key, key)


def _variant_text(overrides: dict[str, Any]) -> str:
    """``{"method.target_policy": "shared"}`` -> ``target_policy=shared`` (method, batch,
    dataset and seed are columns or the row's method, not a variant)."""
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    parts = [f"{k.rsplit('.', 1)[-1]}={text(v)}" for k, v in overrides.items()
             if k not in NOT_A_VARIANT]
    return ", ".join(parts)


def _product(axes: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(axes, dict):
        raise ConfigError(f"{where}: expected a mapping of key: [values], got {axes!r}")
    keys, lists = [], []
    for key, values in axes.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{where}.{key}: empty list of values")
        keys.append(_key(key))
        lists.append(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def grid_name(value: Any, fallback: str) -> str:
    """The grid's ``name``: one plain folder name, since results go to results/grids/<name>."""
    if value is None or value == "":
        return fallback
    name = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if (name is None or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0")
            or Path(name).is_absolute()):
        raise ConfigError(f"grid: name {value!r} must be one plain folder name (no '/', not '.' "
                          "or '..'): results go to results/grids/<name>; or pass --out")
    return name


def load_grid(path: str | Path, seeds: Sequence[int] | None = None) -> Grid:
    """Read and expand a grid file: arms x axes x seeds, equal-compute and random-init rows."""
    spec = read_yaml_file(path)
    return expand_grid(spec, seeds, name=Path(path).stem)


def expand_grid(spec: dict[str, Any], seeds: Sequence[int] | None = None, name: str = "grid") -> Grid:
    """The grid ``spec``'s cells, checked: each arm x the axes x the seeds (``seeds`` replace
    the grid's), then its equal-compute rows and one random-init row per dataset and backbone."""
    base = _check_sections(spec)
    name = grid_name(spec.get("name"), name)
    _check_switches(spec)
    seeds = _seeds(spec, seeds)
    arms = spec.get("arms") or [{}]
    if not isinstance(arms, list):
        raise ConfigError("grid: arms must be a list of {label, set, axes}")
    grid_axes = _product(spec.get("axes") or {}, "axes")
    factor = equal_compute_factor(spec)
    cells = [cell for number, arm in enumerate(arms)
             for cell in _arm_cells(spec, base, number, arm, grid_axes, seeds)]
    arm_cells = list(cells)
    if factor:
        cells += equal_compute_cells(arm_cells, spec, factor, base)
    if spec.get("equal_memory"):
        cells += equal_memory_cells(arm_cells, spec, base)
    if spec.get("random_init"):
        cells += _random_init_cells(cells, spec)
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"grid: two cells share the id {duplicates[0]}; give the arms "
                          "distinct labels")
    return Grid(name, spec, cells)


def _check_sections(spec: dict[str, Any]) -> dict[str, Any]:
    """The grid's keys, its ``base`` (returned) and ``eval`` mappings and its carves."""
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise ConfigError(f"grid: unknown key(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(sorted(GRID_KEYS))}")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("grid: base must be a mapping (the keys of a pretrain --config file)")
    eval_spec = spec.get("eval") or {}
    if not isinstance(eval_spec, dict):
        raise ConfigError("grid: eval must be a mapping of eval flags")
    select_on(spec)
    check_subset_outside_test(spec, eval_spec)
    return base


def _check_switches(spec: dict[str, Any]) -> None:
    eval_spec = spec.get("eval") or {}
    for key, value in (("random_init", spec.get("random_init")), ("eval.export", eval_spec.get("export")),
                       ("equal_memory", None if isinstance(spec.get("equal_memory"), list)
                        else spec.get("equal_memory"))):
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"grid: {key} must be true or false, got {value!r}")


def _seeds(spec: dict[str, Any], seeds: Sequence[int] | None) -> list[int]:
    seeds = list(seeds if seeds is not None else spec.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"grid: seeds must be whole numbers >= 0, got {seeds!r}")
    return seeds


def _arm_cells(spec: dict[str, Any], base: dict[str, Any], number: int, arm: Any,
               grid_axes: list[dict[str, Any]], seeds: list[int]) -> list[Cell]:
    """Arm ``number``'s cells: its ``set`` on each combination of the grid's and its own axes,
    once per seed."""
    if not isinstance(arm, dict) or set(arm) - ARM_KEYS:
        raise ConfigError(f"arms[{number}]: expected a mapping with label, set and axes, "
                          f"got {arm!r}")
    fixed = {_key(k): v for k, v in (arm.get("set") or {}).items()}
    cells: list[Cell] = []
    for combo in grid_axes:
        for own in _product(arm.get("axes") or {}, f"arms[{number}].axes"):
            overrides = {**combo, **fixed, **own}
            row = _row(arm.get("label"), merge(base, overrides), {**fixed, **own})
            for seed in seeds:
                cell_over = {**overrides, "train.seed": seed}
                cell_tree = merge(base, cell_over)
                cells.append(Cell(cell_id(row, cell_tree, spec, seed), row, cell_over, seed,
                                  cell_tree))
    return cells


def _row(label: Any, tree: dict[str, Any], varied: dict[str, Any]) -> str:
    """``method`` or ``method@variant``: the arm's label, else what it varies (``default``, or
    the method's own name, is the method's plain row)."""
    method = str((tree.get("method") or {}).get("name", config_default("method.name")))
    variant = _variant_text(varied) if label is None else label
    variant = "" if variant in (None, "default", method) else str(variant)
    return f"{method}@{variant}" if variant else method


def _random_init_cells(cells: list[Cell], spec: dict[str, Any]) -> list[Cell]:
    """One untrained encoder per (dataset, backbone): eval --random-init on the first run."""
    seen = set()
    out: list[Cell] = []
    for cell in cells:
        key = (dataset_tag(cell.tree, spec), cell.setting("model.backbone"))
        if key in seen:
            continue
        seen.add(key)
        out.append(Cell(cell_id("random-init", cell.tree, spec, None), "random-init",
                        {}, cell.seed, cell.tree, random_init_of=cell.id))
    return out


def select(cells: list[Cell], only: str | None) -> list[Cell]:
    """Cells whose id or label matches one of the comma-separated glob patterns (``*b32*``);
    a random-init row comes along only when its source run is selected or itself matches."""
    if not only:
        return cells
    patterns = [p.strip() for p in only.split(",") if p.strip()]

    def hit(cell: Cell) -> bool:
        return any(fnmatch.fnmatchcase(cell.id, p) or fnmatch.fnmatchcase(cell.label, p)
                   or p in cell.id for p in patterns)

    return [c for c in cells if hit(c)]


def mark_same_runs(cells: list[Cell], fingerprint: Callable[[Cell], str]) -> None:
    """Cells whose resolved pre-training configs are equal (an arm that restates the default)
    share one run: the later ones get ``same_as``."""
    first: dict[str, str] = {}
    for cell in cells:
        if cell.random_init_of or (cell.memory and cell.memory.get("batch") is None):
            continue  # an equal-memory cell's config is known once its batch is measured
        key = fingerprint(cell)
        if key in first:
            cell.same_as = first[key]
        else:
            first[key] = cell.id


def resolved_fingerprint(cell: Cell) -> str:
    """The run's resolved config (defaults and dataset presets applied), without its name."""
    tree = copy.deepcopy(cell.tree)
    tree.pop("name", None)
    tree.pop("runs_root", None)
    return json.dumps(to_dict(load_config(None, list(dotted_items(tree).items()))), sort_keys=True,
                      default=str)
