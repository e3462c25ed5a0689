"""A grid's cells: one pre-training (or a random-init row) each, its config tree and its id."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from tribyol.config import config_default, set_dotted


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def lookup(tree: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """``tree``'s value at a dotted key (``train.epochs``), ``default`` where it has none."""
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def setting(tree: dict[str, Any], dotted: str) -> Any:
    """``tree``'s value at a dotted key, else ``RunConfig()``'s default (what the run gets)."""
    return lookup(tree, dotted, config_default(dotted))


@dataclasses.dataclass
class Cell:
    """One pre-training (or a random-init row) and its evaluations."""

    id: str
    row: str  # table row key: ``method`` or ``method@variant`` (report.tables' convention)
    overrides: dict[str, Any]  # dotted key -> value, applied to ``base``
    seed: int
    tree: dict[str, Any] = dataclasses.field(default_factory=dict)  # the pretrain config
    same_as: str | None = None  # a cell with the same config: its run is reused
    random_init_of: str | None = None  # random-init rows: the run whose architecture they take
    # equal-compute rows: {"factor": F, "of": [the rows F was counted from], "epochs": E}
    compute: dict[str, Any] | None = None
    # equal-memory rows: {"of": row, "of_batch": B, "of_cell": id, "batch": BYOL's (measured)}
    memory: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        method, _, variant = self.row.partition("@")
        return f"{method} ({variant})" if variant else method

    def value(self, dotted: str, default: Any = None) -> Any:
        """The cell's config value at a dotted key as the grid wrote it (``default``: none)."""
        return lookup(self.tree, dotted, default)

    def setting(self, dotted: str) -> Any:
        """The cell's value at a dotted key, else ``RunConfig()``'s default."""
        return setting(self.tree, dotted)


@dataclasses.dataclass
class Grid:
    name: str
    spec: dict[str, Any]
    cells: list[Cell]

    @property
    def eval(self) -> dict[str, Any]:
        return self.spec.get("eval") or {}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with the dotted ``overrides`` set."""
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return tree


def dataset_tag(tree: dict[str, Any], spec: dict[str, Any]) -> str:
    """The dataset a cell's id and table column name: ``eval.dataset_label``, else its dataset."""
    label = (spec.get("eval") or {}).get("dataset_label")
    return str(label or setting(tree, "data.dataset"))


def cell_id(row: str, tree: dict[str, Any], spec: dict[str, Any], seed: int | None) -> str:
    """``method-variant_dataset_bBATCH_sSEED``, e.g. ``tribyol_cifar10_b32_s0``."""
    method, _, variant = row.partition("@")
    head = slug(method + (f"-{variant}" if variant else ""))
    tail = f"_s{seed}" if seed is not None else ""
    return f"{head}_{slug(dataset_tag(tree, spec))}_b{setting(tree, 'train.batch_size')}{tail}"
