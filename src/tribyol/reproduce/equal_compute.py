"""``equal_compute``: BYOL rows trained longer, so their counted passes equal another arm's."""

from __future__ import annotations

from typing import Any

from tribyol.errors import ConfigError
from tribyol.reproduce.cells import Cell, cell_id, merge
from tribyol.reproduce.cost import cell_compute_factor, planned_steps

EQUAL_COMPUTE_LABEL = "equal compute"


def equal_compute_factor(spec: dict[str, Any]) -> float | bool | None:
    """``equal_compute``: True (each arm's factor, from its counted passes), a fixed factor,
    or None (off)."""
    value = spec.get("equal_compute", False)
    if value is True or isinstance(value, list):
        matched_rows(spec, "equal_compute")  # checked
        return True
    if value in (False, None, 0):
        return None
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    raise ConfigError(f"equal_compute must be true, false, a factor > 0 or a list of rows, "
                      f"got {value!r}")


def matched_rows(spec: dict[str, Any], key: str) -> set[str] | None:
    """``equal_compute`` / ``equal_memory`` as a list: the rows (``tribyol``,
    ``tribyol@gn-ws``) whose BYOL cells get a matched row; None (true): every row."""
    value = spec.get(key)
    if not isinstance(value, list):
        return None
    if not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"grid: {key} as a list names the rows to match, e.g. [tribyol], "
                          f"got {value!r}")
    return set(value)


def _shared_settings(cell: Cell) -> dict[str, Any]:
    # what a BYOL cell and the arm it is compared with must share: all but the method's own keys
    return {k: v for k, v in cell.overrides.items() if not k.startswith("method.")}


def equal_compute_cells(cells: list[Cell], spec: dict[str, Any], fixed: float | bool,
                        base: dict[str, Any]) -> list[Cell]:
    """One BYOL cell per (BYOL cell, distinct factor): ``fixed`` or, under True, the factor of
    each other arm with the same non-method settings (batch, dataset, epochs, seed, ...)."""
    out: list[Cell] = []
    for cell in cells:
        if str(cell.setting("method.name")) != "byol":
            continue
        factors = _factors(cell, cells, fixed, matched_rows(spec, "equal_compute"))
        if not factors:
            continue
        if int(cell.setting("train.max_steps") or -1) > 0:
            raise ConfigError("equal_compute with train.max_steps: the step cap would stop "
                              "BYOL and its equal-compute row at the same step; drop one")
        out += [_longer_byol(cell, factor, rows, spec, base) for factor, rows in factors.items()]
    out = only_known_rows(out, cells, matched_rows(spec, "equal_compute"), "equal_compute")
    if fixed is True and not out:
        raise ConfigError("grid: equal_compute: true matches each BYOL cell with the other arms "
                          "of the same settings, and found none whose method counts its passes "
                          "(e.g. tribyol); add one, or give a factor (equal_compute: 1.5)")
    return out


def only_known_rows(out: list[Cell], cells: list[Cell], rows: set[str] | None,
                    key: str) -> list[Cell]:
    """``out``, once every row a list form names is one of the grid's."""
    unknown = sorted((rows or set()) - {c.row for c in cells})
    if unknown:
        raise ConfigError(f"grid: {key} names row(s) {', '.join(unknown)} the grid does not "
                          f"have; its rows: {', '.join(sorted({c.row for c in cells}))}")
    return out


def _factors(cell: Cell, cells: list[Cell], fixed: float | bool,
             only: set[str] | None = None) -> dict[float, list[str]]:
    """Factor -> the labels of the arms it was counted from (none for a grid's fixed factor)."""
    if fixed is not True:
        return {float(fixed): []}
    factors: dict[float, list[str]] = {}
    for other in cells:
        if (other is cell or other.setting("method.name") == "byol"
                or _shared_settings(other) != _shared_settings(cell)
                or (only is not None and other.row not in only)):
            continue
        factor = cell_compute_factor(other)
        if factor is not None and abs(factor - 1.0) > 1e-9:
            rows = factors.setdefault(round(factor, 6), [])
            if other.label not in rows:
                rows.append(other.label)
    return factors


def _longer_byol(cell: Cell, factor: float, rows: list[str], spec: dict[str, Any],
                 base: dict[str, Any]) -> Cell:
    """BYOL ``cell`` trained ``factor`` times its epochs. Epochs x factor not whole:
    ceil(epochs) with ``train.max_steps`` = round(epochs x factor x steps per epoch), so the
    budget is met to one step and the LR schedule (which follows max_steps) still ends at the
    last step; rounding the epochs would miss by up to half an epoch (2 x 0.625 -> 1 epoch is
    0.5x)."""
    epochs = int(cell.setting("train.epochs"))
    more = epochs * factor
    over = {**cell.overrides, "train.epochs": int(round(more))}
    record: dict[str, Any] = {"factor": factor, "of": rows, "epochs": more}
    if abs(more - round(more)) > 1e-9:
        steps = planned_steps(cell, spec)
        if steps is None:
            raise ConfigError(
                f"equal_compute: {epochs} epochs x {factor:g} = {more:g} is not a whole "
                "number of epochs, and the grid does not say how many images an epoch "
                "has (give data.pretrain_subset or a named dataset); choose epochs "
                "that make it whole")
        over["train.epochs"] = int(-(-more // 1))
        over["train.max_steps"] = int(round(steps * factor))
        record["max_steps"] = over["train.max_steps"]
    _, _, variant = cell.row.partition("@")
    row = f"byol@{EQUAL_COMPUTE_LABEL} x{factor:g}" + (f", {variant}" if variant else "")
    tree = merge(base, over)
    return Cell(cell_id(row, tree, spec, cell.seed), row, over, cell.seed, tree, compute=record)


def equal_compute_text(cells: list[Cell]) -> str:
    """What each equal-compute row is equal to: ``x1.625`` = BYOL trained 1.625x the epochs,
    the counted cost of tribyol (target_policy=independent-init)."""
    seen: dict[float, list[str]] = {}
    for cell in cells:
        if cell.compute:
            rows = seen.setdefault(cell.compute["factor"], [])
            rows += [r for r in cell.compute["of"] if r not in rows]
    if not seen:
        return ""
    parts = [f"x{f:g}" + (f" = the cost of {', '.join(rows)}" if rows else " (the grid's factor)")
             for f, rows in seen.items()]
    return (f"`{EQUAL_COMPUTE_LABEL} xF` = BYOL trained F times the epochs (or steps), so its "
            "counted passes (online forward+backward 3, target forward 1, per view) equal "
            f"those of the arm: {'; '.join(parts)}. ")
