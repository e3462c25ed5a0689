"""``equal_memory``: BYOL rows at the batch whose peak memory matches another arm's.

Grid expansion adds one BYOL cell per (BYOL cell, other arm of the same non-method settings);
its batch is measured before the grid runs (``measure_equal_memory``, the batch finder of
``tribyol.engine.plan``) and kept in ``equal_memory.json`` of the grid's folder, so a rerun,
``--dry-run`` and the tables reuse it. BYOL's epochs stay equal (so it takes fewer, larger steps).
The cell keeps the other arm's batch in its id and table column: the row is that column's
comparison at equal memory.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tribyol.errors import ConfigError
from tribyol.reproduce.cells import Cell, Grid, cell_id, merge
from tribyol.reproduce.data import data_paths
from tribyol.reproduce.equal_compute import matched_rows, only_known_rows
from tribyol.resolve import load_config

EQUAL_MEMORY_LABEL = "equal memory to"
CACHE = "equal_memory.json"


def _shared_settings(cell: Cell) -> dict[str, Any]:
    return {k: v for k, v in cell.overrides.items() if not k.startswith("method.")}


def equal_memory_cells(cells: list[Cell], spec: dict[str, Any], base: dict[str, Any]) -> list[Cell]:
    """One BYOL cell per (BYOL cell, non-BYOL arm with its other settings), batch to measure."""
    out: list[Cell] = []
    rows = matched_rows(spec, "equal_memory")
    for cell in cells:
        if str(cell.setting("method.name")) != "byol":
            continue
        others = [o for o in cells if o.setting("method.name") != "byol"
                  and _shared_settings(o) == _shared_settings(cell)
                  and (rows is None or o.row in rows)]
        for other in others:
            _, _, variant = cell.row.partition("@")
            method = other.row.partition("@")[0]
            row = f"byol@{EQUAL_MEMORY_LABEL} {method}" + (f", {variant}" if variant else "")
            batch = int(other.setting("train.batch_size"))
            record = {"of": other.row, "of_batch": batch, "of_cell": other.id, "batch": None}
            tree = merge(base, cell.overrides)
            out.append(Cell(cell_id(row, tree, spec, cell.seed), row, dict(cell.overrides),
                            cell.seed, tree, memory=record))
    only_known_rows(out, cells, rows, "equal_memory")
    if spec.get("equal_memory") and not out:
        raise ConfigError("grid: equal_memory: true matches each BYOL cell with the other arms "
                          "of the same settings (batch, dataset, ...), and found none; add one "
                          "(e.g. method: [tribyol, byol])")
    return out


def _key(tree: dict[str, Any]) -> str:
    """A config without its seed and name: what peak memory depends on."""
    tree = copy.deepcopy(tree)
    tree.pop("name", None)
    tree.pop("runs_root", None)
    tree.get("train", {}).pop("seed", None)
    return json.dumps(tree, sort_keys=True, default=str)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def apply_cached(grid: Grid, out: Path) -> list[Cell]:
    """Give each equal-memory cell the batch ``equal_memory.json`` holds for it; returns the
    cells that have none yet (to measure)."""
    cache = _read_cache(Path(out) / CACHE)
    missing = []
    for cell in grid.cells:
        if not cell.memory:
            continue
        found = cache.get(_match_key(cell, grid))
        if found is None:
            missing.append(cell)
            continue
        _set_batch(cell, found)
    return missing


def _match_key(cell: Cell, grid: Grid) -> str:
    other = next(c for c in grid.cells if c.id == cell.memory["of_cell"])
    return _key(other.tree) + " | " + _key(cell.tree | {"train": {
        k: v for k, v in cell.tree.get("train", {}).items() if k != "batch_size"}})


def _set_batch(cell: Cell, found: dict[str, Any]) -> None:
    cell.memory = {**cell.memory, **found}
    cell.overrides["train.batch_size"] = int(found["batch"])
    cell.tree = merge(cell.tree, {"train.batch_size": int(found["batch"])})


def _on_grid_data(tree: dict[str, Any], grid: Grid) -> dict[str, Any]:
    """The tree on the grid's pre-training images, as the runner gives them to a cell."""
    _root, pre = data_paths(grid.spec)
    return merge(tree, {"data.root": str(pre)}) if pre is not None else tree


def _write_cache(path: Path, cache: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


Measurer = Callable[[dict[str, Any], int], int | None]


def measure_equal_memory(grid: Grid, out: Path, cells: list[Cell] | None = None,
                         echo: Callable[[str], None] = print, peak: Measurer | None = None) -> None:
    """Measure what ``apply_cached`` lacks: the other arm's peak at its batch, BYOL's at that
    batch and at twice it; memory is affine in the batch, so BYOL's batch is the largest whose
    line stays within the other's peak (at least the other's batch). Cached in ``CACHE``."""
    missing = [c for c in apply_cached(grid, out) if cells is None or c in cells]
    peak = peak or measure_tree
    cache = _read_cache(Path(out) / CACHE)
    for cell in missing:
        key = _match_key(cell, grid)
        if key not in cache:
            other = next(c for c in grid.cells if c.id == cell.memory["of_cell"])
            cache[key] = match_batch(peak, _on_grid_data(other.tree, grid),
                                     _on_grid_data(cell.tree, grid), cell.memory["of_batch"])
            echo(f"equal memory: byol at batch {cache[key]['batch']} ~ {cell.memory['of']} at "
                 f"batch {cell.memory['of_batch']} ({cache[key]['target_peak_gib']:.3f} GiB)")
            _write_cache(Path(out) / CACHE, cache)
        _set_batch(cell, cache[key])


def match_batch(peak: Measurer, other: dict[str, Any], byol: dict[str, Any],
                batch: int) -> dict[str, Any]:
    """BYOL's batch for ``other``'s peak at ``batch``, and the figures it was read from."""
    target = peak(other, batch)
    low, high = peak(byol, batch), peak(byol, 2 * batch)
    if None in (target, low, high):
        raise ConfigError(f"equal_memory: the batch finder could not measure batch {batch} or "
                          f"{2 * batch} (out of memory); lower the grid's batch")
    per_image = (high - low) / batch
    chosen = batch if per_image <= 0 else int(batch + max(0.0, target - low) / per_image)
    gib = 2**30
    return {"batch": max(batch, chosen), "target_peak_gib": target / gib,
            "byol_peaks_gib": {str(batch): low / gib, str(2 * batch): high / gib},
            "rule": "largest batch whose peak, on the line through BYOL's two measured peaks, "
                    "is at most the other arm's measured peak"}


def measure_tree(tree: dict[str, Any], batch: int) -> int | None:
    """Peak bytes of a few training steps of the config ``tree`` at ``batch`` (batch finder)."""
    from tribyol.engine.plan import measure_config

    return measure_config(load_config(tree), batch).peak


def equal_memory_text(cells: list[Cell]) -> str:
    """What each equal-memory row is equal to: BYOL's measured batch against the other arm's."""
    pairs = sorted({(c.memory["of"], c.memory["of_batch"], c.memory.get("batch"),
                     c.memory.get("target_peak_gib")) for c in cells if c.memory},
                   key=lambda p: (p[0], p[1]))
    if not pairs:
        return ""
    parts = [f"{of} b{b}: BYOL at batch {mine if mine is not None else '(not yet measured)'}"
             + (f" ({peak:.3f} GiB)" if peak is not None else "")
             for of, b, mine, peak in pairs]
    return (f"`{EQUAL_MEMORY_LABEL} X` = BYOL at the batch whose measured peak memory (batch "
            "finder, `equal_memory.json`) matches arm X's at the column's batch, the same "
            f"epochs (so fewer, larger steps), shown in X's column: {'; '.join(parts)}. ")
