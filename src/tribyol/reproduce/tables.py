"""A grid's results as poster-shaped tables: ``out/tables.md`` and the batch-size plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tribyol.reproduce.cells import Cell, Grid
from tribyol.reproduce.equal_compute import equal_compute_text
from tribyol.reproduce.equal_memory import equal_memory_text
from tribyol.reproduce.runner import Reproduction
from tribyol.reproduce.scoring import SPLIT_SEED, VALIDATION_MANIFEST, select_on
from tribyol.store import read_results


def grid_records(repro: Reproduction, cells: list[Cell]) -> list[dict[str, Any]]:
    """The store's records of the grid's cells, each under its cell's row (``method@variant``)
    as the method, so report's tables group by the grid's rows."""
    if not repro.store.exists():
        return []
    by_source: dict[str, list[Cell]] = {}
    for cell in cells:
        run = repro.run_dir(repro.by_id(cell.random_init_of) if cell.random_init_of else cell)
        by_source.setdefault(f"{run.resolve()}|{bool(cell.random_init_of)}", []).append(cell)
    out = []
    for record in read_results(repro.store):
        source = str(Path(str(record.get("source", ""))).resolve())
        random = str(record.get("run_id", "")).endswith("+random-init")
        for cell in by_source.get(f"{source}|{random}", []):
            copy_ = dict(record)
            copy_["method"] = cell.row
            copy_["run_id"] = f"{record.get('run_id')}#{cell.id}"
            if cell.compute:
                copy_["equal_compute"] = cell.compute  # the factor and the rows it came from
            if cell.memory:  # in the other arm's column: that column's equal-memory comparison
                copy_["equal_memory"] = cell.memory
                copy_["pretrain_batch_size"] = cell.memory["of_batch"]
            out.append(copy_)
    return out


def tables_markdown(records: list[dict[str, Any]], grid: Grid) -> str:
    """Poster-shaped tables (report.tables), each cell ``mean ± std (n) / poster``."""
    from tribyol.report.tables import CARVED, build_tables, row_name  # not needed by --help

    parts = [f"# {grid.name}: results", "",
             "Cells: ours as mean ± std over seeds (n = the number of seeds) / the poster's "
             f"number for the method (– none). {CARVED} = "
             + ("scored on a carve of train (here the validation carve, below). "
                if select_on(grid.spec) == "validation" else "test set carved out of train. ")
             + equality_text(grid.cells) + "Under each table: every row's mean "
             "paired difference from the reference row over the seeds both ran.", ""]
    if grid.spec.get("description"):
        parts += [str(grid.spec["description"]).strip(), ""]
    parts += [scored_on_text(grid.spec), ""]
    for table in build_tables(records):
        if not any(table.ours.values()):
            continue
        labels = [table.column_label(*c) for c in table.columns]
        keep = [i for i, col in enumerate(table.columns)
                if any(col in row for row in table.ours.values())]
        lines = [f"### {table.title}", "",
                 "| Row | " + " | ".join(labels[i] for i in keep) + " | Eval images (train / test) |",
                 "|---" * (len(keep) + 2) + "|"]
        for method in table.methods():
            if method not in table.ours:
                continue
            row = []
            for i in keep:
                ours, theirs = table.cells(method, table.columns[i])
                n = f" (n={len(ours.values)})" if ours.values else ""
                row.append(f"{ours.text()}{n} / {'–' if theirs is None else f'{theirs:.2f}'}")
            lines.append(f"| {row_name(method)} | " + " | ".join(row) + f" | {table.sizes_text(method)} |")
        parts += lines + [""]
        # seeds are paired across rows (same seed, same carve): the difference, not two stds,
        # says whether two rows differ
        for extra in (table.separation_text(), table.paired_markdown([table.columns[i] for i in keep])):
            parts += [extra, ""] if extra else []
    return "\n".join(parts) + "\n"


def equality_text(cells: list[Cell]) -> str:
    """In which sense each BYOL row is equal to the arm it is compared with."""
    byol = [c for c in cells if c.row.partition("@")[0] == "byol"]
    plain = any(not (c.compute or c.memory) for c in byol)
    text = ("Equal in which sense: `byol` = the same batch and epochs as the other rows of its "
            "column (so fewer counted passes than TriBYOL's). " if plain else "")
    return text + equal_compute_text(cells) + equal_memory_text(cells)


def scored_on_text(spec: dict[str, Any]) -> str:
    """The line of ``tables.md`` that says what the grid was scored on (``select_on``)."""
    ev = spec.get("eval") or {}
    if select_on(spec) == "validation":
        return (f"**Scored on: the validation carve** (`select_on: validation`): "
                f"{float(ev['validation_from_train']):g} of train drawn outside the test carve "
                f"{float(ev['test_from_train']):g} (split seed {int(ev.get('split_seed', SPLIT_SEED))}; "
                f"{VALIDATION_MANIFEST} names its images). For choosing a setting; no cell was "
                "scored on the test carve.")
    carve = ev.get("test_from_train")
    where = (f"the test carve {float(carve):g} of train (split seed {int(ev.get('split_seed', SPLIT_SEED))})"
             if carve else "the datasets' test sets")
    return (f"**Scored on: {where}** (`select_on: test`): final figures; a setting chosen on "
            "these would bias them (choose on a `select_on: validation` grid).")


def write_tables(repro: Reproduction, cells: list[Cell], echo: Callable[[str], None] = print) -> Path | None:
    from tribyol.report.plots import plot_batch_curves

    records = grid_records(repro, cells)
    if not records:
        echo("no results yet; no tables written")
        return None
    path = repro.out / "tables.md"
    text = tables_markdown(records, repro.grid)
    path.write_text(text)
    plot = plot_batch_curves(records, repro.out / "linear_vs_batch.png")
    echo(text)
    echo(f"wrote {path}" + (f" and {plot}" if plot else ""))
    return path
