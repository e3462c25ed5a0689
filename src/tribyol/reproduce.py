"""``tribyol reproduce GRID.yaml``: run a grid of pre-trainings and evaluations, then tables.

A grid is data (``configs/grids/*.yaml``); its keys, how cells are formed, resumed and
reported: docs/reproduce.md."""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import dataclasses
import fnmatch
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tribyol.config import dotted_items, read_yaml_file, set_dotted, to_dict
from tribyol.errors import ConfigError
from tribyol.resolve import load_config
from tribyol.store import read_results

# Axis / arm key aliases -> dotted config keys.
ALIASES = {
    "method": "method.name",
    "batch": "train.batch_size",
    "batch_size": "train.batch_size",
    "dataset": "data.dataset",
    "epochs": "train.epochs",
    "backbone": "model.backbone",
    "views": "method.num_views",
    "seed": "train.seed",
}
GRID_KEYS = {"name", "description", "estimate", "base", "data", "axes", "arms", "seeds",
             "equal_compute", "random_init", "eval", "cost", "select_on"}
# ``select_on``: what a grid's cells are scored on. ``test``: the test set (or carve), for grids
# that report final figures; ``validation``: a validation carve outside the test carve
# (``eval.validation_from_train``), for ablations that choose a setting, so no choice is made
# on the images the final figures are scored on.
SELECT_ON = ("test", "validation")
VALIDATION_MANIFEST = "validation.json"
EVAL_KEYS = {"linear", "knn", "finetune", "transfer", "export"}
EQUAL_COMPUTE_LABEL = "equal compute"

# The cost model (seconds), used until cells of the grid have finished and measured it.
# One BYOL step of the ConvNet (width 32) at 32 px, batch 32, one CPU thread (measured on the
# development machine's EPYC cores: TriBYOL 109 images/s = 0.29 s a step, BYOL 1.5x faster).
BYOL_STEP_SECONDS = 0.19
GPU_SPEEDUP = 40.0  # the same step on a GPU (rough; measured cells replace it)
EVAL_SECONDS = 30.0  # one linear or kNN evaluation on ~15,000 images at CPU scale
FINETUNE_SECONDS = 120.0
START_SECONDS = 8.0  # interpreter, torch and data start-up per command
METHOD_COST = {"byol": 1.0, "cross": 1.0, "simsiam": 0.8, "simclr": 0.8, "pirl-jigsaw": 1.2,
               "pirl-rotation": 1.0, "supervised": 0.35, "supervised-imagenet": 0.35}
BACKBONE_COST = {"convnet": 1.0, "resnet18": 12.0, "resnet50": 30.0}
# Training images of the named datasets (their pre-training split), for planned steps.
TRAIN_SIZES = {"mnist": 60000, "fashionmnist": 60000, "kmnist": 60000, "usps": 7291,
               "svhn": 73257, "cifar10": 50000, "cifar100": 50000, "stl10": 5000,
               "digits": 1437}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


# -- the grid ------------------------------------------------------------------------------------


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

    @property
    def label(self) -> str:
        method, _, variant = self.row.partition("@")
        return f"{method} ({variant})" if variant else method

    def value(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.tree
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node


@dataclasses.dataclass
class Grid:
    name: str
    spec: dict[str, Any]
    cells: list[Cell]

    @property
    def eval(self) -> dict[str, Any]:
        return self.spec.get("eval") or {}


def _key(key: str) -> str:
    return ALIASES.get(key, key)


def _variant_text(overrides: dict[str, Any]) -> str:
    """``{"method.target_policy": "shared"}`` -> ``target_policy=shared`` (method, batch,
    dataset and seed are columns or the row's method, not a variant)."""
    hidden = {"method.name", "train.batch_size", "data.dataset", "train.seed"}
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    parts = [f"{k.rsplit('.', 1)[-1]}={text(v)}" for k, v in overrides.items() if k not in hidden]
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


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return tree


def _dataset_tag(tree: dict[str, Any], spec: dict[str, Any]) -> str:
    label = (spec.get("eval") or {}).get("dataset_label")
    return str(label or (tree.get("data") or {}).get("dataset", "fashionmnist"))


def _cell_id(row: str, tree: dict[str, Any], spec: dict[str, Any], seed: int | None) -> str:
    method, _, variant = row.partition("@")
    head = slug(method + (f"-{variant}" if variant else ""))
    batch = (tree.get("train") or {}).get("batch_size", 32)
    tail = f"_s{seed}" if seed is not None else ""
    return f"{head}_{slug(_dataset_tag(tree, spec))}_b{batch}{tail}"


def equal_compute_factor(spec: dict[str, Any]) -> float | bool | None:
    """``equal_compute``: True (each arm's factor, from its counted passes), a fixed factor,
    or None (off)."""
    value = spec.get("equal_compute", False)
    if value is True:
        return True
    if value in (False, None, 0):
        return None
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    raise ConfigError(f"equal_compute must be true, false or a factor > 0, got {value!r}")


def cell_compute_factor(cell: Cell) -> float | None:
    """The cell's step cost relative to default BYOL's, from its method's counted passes
    (``methods.registry.compute_factor``); None where the method does not count them."""
    from tribyol.methods.registry import compute_factor

    return compute_factor(dict(cell.value("method") or {}))


def _shared_settings(cell: Cell) -> dict[str, Any]:
    # what a BYOL cell and the arm it is compared with must share: all but the method's own keys
    return {k: v for k, v in cell.overrides.items() if not k.startswith("method.")}


def _equal_compute_cells(cells: list[Cell], spec: dict[str, Any], fixed: float | bool,
                         base: dict[str, Any]) -> list[Cell]:
    """One BYOL cell per (BYOL cell, distinct factor): ``fixed`` or, under True, the factor of
    each other arm with the same non-method settings (batch, dataset, epochs, seed, ...).
    Epochs x factor not whole: ceil(epochs) with ``train.max_steps`` = round(epochs x factor x
    steps per epoch), so the budget is met to one step and the LR schedule (which follows
    max_steps) still ends at the last step; rounding the epochs would miss by up to half an
    epoch (2 x 0.625 -> 1 epoch is 0.5x)."""
    out: list[Cell] = []
    for cell in cells:
        if str(cell.value("method.name", "tribyol")) != "byol":
            continue
        factors: dict[float, list[str]] = {}
        if fixed is True:
            for other in cells:
                if (other is cell or other.value("method.name", "tribyol") == "byol"
                        or _shared_settings(other) != _shared_settings(cell)):
                    continue
                factor = cell_compute_factor(other)
                if factor is not None and abs(factor - 1.0) > 1e-9:
                    rows = factors.setdefault(round(factor, 6), [])
                    if other.label not in rows:
                        rows.append(other.label)
        else:
            factors[float(fixed)] = []
        if not factors:
            continue
        if int(cell.value("train.max_steps", -1) or -1) > 0:
            raise ConfigError("equal_compute with train.max_steps: the step cap would stop "
                              "BYOL and its equal-compute row at the same step; drop one")
        _, _, variant = cell.row.partition("@")
        epochs = int(cell.value("train.epochs", 80))
        for factor, rows in factors.items():
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
            row = f"byol@{EQUAL_COMPUTE_LABEL} x{factor:g}" + (f", {variant}" if variant else "")
            tree = _merge(base, over)
            out.append(Cell(_cell_id(row, tree, spec, cell.seed), row, over, cell.seed, tree,
                            compute=record))
    if fixed is True and not out:
        raise ConfigError("grid: equal_compute: true matches each BYOL cell with the other arms "
                          "of the same settings, and found none whose method counts its passes "
                          "(e.g. tribyol); add one, or give a factor (equal_compute: 1.5)")
    return out


def select_on(spec: dict[str, Any]) -> str:
    """The grid's ``select_on`` (default ``test``), checked with what it needs: ``validation``
    scores every cell on ``eval.validation_from_train``, a carve outside the test carve, and
    pre-trains on a subset drawn outside both; ``test`` grids may not score on a validation
    carve (a grid that does says so)."""
    value = spec.get("select_on", "test")
    if value not in SELECT_ON:
        raise ConfigError(f"grid: select_on must be test or validation, got {value!r}; "
                          "validation for ablations that choose a setting")
    ev = spec.get("eval") or {}
    fraction = ev.get("validation_from_train")
    if value == "test":
        if fraction is not None:
            raise ConfigError("grid: eval.validation_from_train scores a validation carve, but "
                              "select_on is test; set select_on: validation")
        return value
    if not ev.get("test_from_train"):
        raise ConfigError("grid: select_on: validation draws its carve outside the test carve; "
                          "give eval.test_from_train (e.g. 0.2)")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ConfigError(f"grid: select_on: validation needs eval.validation_from_train, a "
                          f"fraction in (0, 1) (e.g. 0.1), got {fraction!r}")
    if float(fraction) + float(ev["test_from_train"]) >= 1:
        raise ConfigError(f"grid: eval.test_from_train {ev['test_from_train']} + "
                          f"validation_from_train {fraction} leave no training images; "
                          "choose smaller fractions")
    subset = (spec.get("data") or {}).get("pretrain_subset")
    if not subset:
        raise ConfigError("grid: select_on: validation needs data.pretrain_subset (with "
                          "validation_fraction), or pre-training would see validation images")
    if (ev.get("transfer") or {}).get("targets"):
        raise ConfigError("grid: select_on: validation cannot run eval.transfer (its targets "
                          "are scored on their test sets); drop it")
    return value


def check_subset_outside_test(spec: dict[str, Any], eval_spec: dict[str, Any]) -> None:
    """The pre-training subset is drawn outside the test split the evaluation carves (and
    outside its validation carve, where the grid scores one): both carves must be the same
    (fractions and split seed), or pre-training would see test (validation) images
    (``tribyol eval`` refuses such a carve too, naming the count)."""
    subset = (spec.get("data") or {}).get("pretrain_subset")
    if not subset:
        return
    drawn = subset.get("validation_fraction")
    scored = eval_spec.get("validation_from_train")
    if (None if drawn is None else float(drawn)) != (None if scored is None else float(scored)):
        raise ConfigError(
            f"grid: data.pretrain_subset.validation_fraction is {drawn}, but eval scores "
            f"validation_from_train {scored}; make them the same, or pre-training would see "
            "validation images (or leave out images no carve scores)")
    carve = (float(subset.get("test_fraction", 0.2)), int(subset.get("seed", 0)))
    scored = eval_spec.get("test_from_train")
    scored = (None if scored is None else float(scored), int(eval_spec.get("split_seed", 0)))
    if scored != carve:
        raise ConfigError(
            f"grid: data.pretrain_subset is drawn outside a test split of fraction {carve[0]:g} "
            f"(seed {carve[1]}), but eval scores on test_from_train {scored[0]} (split_seed "
            f"{scored[1]}); pre-training would see test images. Make them the same")


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
    name = grid_name(spec.get("name"), name)
    for key, value in (("random_init", spec.get("random_init")), ("eval.export", eval_spec.get("export"))):
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"grid: {key} must be true or false, got {value!r}")
    seeds = list(seeds if seeds is not None else spec.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"grid: seeds must be whole numbers >= 0, got {seeds!r}")
    arms = spec.get("arms") or [{}]
    if not isinstance(arms, list):
        raise ConfigError("grid: arms must be a list of {label, set, axes}")
    grid_axes = _product(spec.get("axes") or {}, "axes")
    factor = equal_compute_factor(spec)
    cells: list[Cell] = []
    for number, arm in enumerate(arms):
        if not isinstance(arm, dict) or set(arm) - {"label", "set", "axes"}:
            raise ConfigError(f"arms[{number}]: expected a mapping with label, set and axes, "
                              f"got {arm!r}")
        fixed = {_key(k): v for k, v in (arm.get("set") or {}).items()}
        for combo in grid_axes:
            for own in _product(arm.get("axes") or {}, f"arms[{number}].axes"):
                overrides = {**combo, **fixed, **own}
                tree = _merge(base, overrides)
                method = str((tree.get("method") or {}).get("name", "tribyol"))
                variant = arm.get("label")
                if variant is None:
                    variant = _variant_text({**fixed, **own})
                variant = "" if variant in (None, "default", method) else str(variant)
                row = f"{method}@{variant}" if variant else method
                for seed in seeds:
                    cell_over = {**overrides, "train.seed": seed}
                    cell_tree = _merge(base, cell_over)
                    cells.append(Cell(_cell_id(row, cell_tree, spec, seed), row, cell_over,
                                      seed, cell_tree))
    if factor:
        cells += _equal_compute_cells(cells, spec, factor, base)
    if spec.get("random_init"):
        # One untrained encoder per (dataset, backbone): eval --random-init on the first run.
        seen = set()
        for cell in list(cells):
            key = (_dataset_tag(cell.tree, spec), cell.value("model.backbone", "convnet"))
            if key in seen:
                continue
            seen.add(key)
            cells.append(Cell(_cell_id("random-init", cell.tree, spec, None), "random-init",
                              {}, cell.seed, cell.tree, random_init_of=cell.id))
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"grid: two cells share the id {duplicates[0]}; give the arms "
                          "distinct labels")
    return Grid(name, spec, cells)


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
        if cell.random_init_of:
            continue
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


# -- data ----------------------------------------------------------------------------------------


def data_paths(spec: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """(eval root, pre-training root) of the grid's ``data`` section (None: not given)."""
    data = spec.get("data") or {}
    if not data.get("root"):
        return None, None
    root = Path(data["root"]).expanduser().resolve()
    subset = data.get("pretrain_subset")
    if subset:
        # outside a validation carve too: other images, so another folder
        val = (f"-val{float(subset['validation_fraction']):g}"
               if subset.get("validation_fraction") else "")
        return root, root.with_name(f"{root.name}-pretrain{int(subset['per_class'])}{val}")
    return root, root


def prepare_data(spec: dict[str, Any], log: Callable[[str], None] = print,
                 out: Path | None = None) -> None:
    """Extract the archive and build the pre-training subset, each only when missing; for a
    ``select_on: validation`` grid, write ``out/validation.json``: the validation carve its
    cells are scored on (``eval.splits.validation_manifest``)."""
    data = spec.get("data") or {}
    root, pre = data_paths(spec)
    if root is None:
        return
    archive = data.get("archive")
    if archive and not (root / "train").is_dir():
        import tarfile

        log(f"extracting {archive} -> {root}")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(Path(archive).expanduser()) as tar:
            tar.extractall(root, filter="data")
    subset = data.get("pretrain_subset")
    if subset and pre is not None:
        from tribyol.eval.splits import SUBSET_MANIFEST, pretrain_subset, validation_manifest

        wanted = {"per_class": int(subset["per_class"]),
                  "test_fraction": float(subset.get("test_fraction", 0.2)),
                  "seed": int(subset.get("seed", 0))}
        if subset.get("validation_fraction"):
            wanted["validation_fraction"] = float(subset["validation_fraction"])
        if (pre / "train").is_dir():
            manifest = pre / SUBSET_MANIFEST
            made = json.loads(manifest.read_text()) if manifest.is_file() else None
            if made != wanted:
                raise ConfigError(
                    f"{pre} was made for another pre-training subset ({made or 'unrecorded'}, "
                    f"not {wanted}), so it may hold test images of this grid's carve; move it "
                    "away (it holds only links) and run again")
        else:
            written = pretrain_subset(root, pre, **wanted)
            log(f"pre-training subset: {len(written)} images outside the carved test split -> "
                f"{pre}")
        # select_on: validation needs a pre-training subset (checked by select_on)
        if out is not None and select_on(spec) == "validation":
            ev = spec.get("eval") or {}
            made = {"select_on": "validation", "pretrain_root": str(pre), **validation_manifest(
                root, float(ev["test_from_train"]), float(ev["validation_from_train"]),
                int(ev.get("split_seed", 0)))}
            path = out / VALIDATION_MANIFEST
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(made, indent=2) + "\n")
            os.replace(tmp, path)
            log(f"validation carve: {made['images']} images (sha256 {made['sha256'][:12]}) -> "
                f"{path}")


def pretrain_images(cell: Cell, spec: dict[str, Any]) -> int | None:
    """Planned pre-training images of a cell (None: unknown)."""
    data = spec.get("data") or {}
    limit = cell.value("data.limit")
    subset = data.get("pretrain_subset")
    _root, pre = data_paths(spec)
    count = None
    if subset and pre is not None:
        if (pre / "train").is_dir():
            count = sum(1 for p in (pre / "train").rglob("*") if p.is_symlink() or p.is_file())
        else:
            count = int(subset["per_class"]) * int(data.get("classes", 10))
    else:
        count = TRAIN_SIZES.get(str(cell.value("data.dataset", "fashionmnist")))
    if count is not None and limit:
        count = min(count, int(limit))
    return count or (int(limit) if limit else None)


# -- cost model ----------------------------------------------------------------------------------


def planned_steps(cell: Cell, spec: dict[str, Any]) -> int | None:
    images = pretrain_images(cell, spec)
    max_steps = int(cell.value("train.max_steps", -1) or -1)
    if images is None:
        return max_steps if max_steps > 0 else None
    batch = int(cell.value("train.batch_size", 32)) * int(cell.value("train.accumulate", 1))
    steps = max(1, images // batch) * int(cell.value("train.epochs", 80))
    return min(steps, max_steps) if max_steps > 0 else steps


def _preset_size(dataset: str) -> int:
    from tribyol.data import get_spec

    try:
        return int(get_spec(dataset).image_size) if dataset != "folder" else 224
    except (KeyError, ValueError, ConfigError):
        return 32


def step_units(cell: Cell) -> float:
    """A step's cost relative to a BYOL step of the ConvNet (width 32) at 32 px, batch 32."""
    # The passes a method counts (equal_compute's factor), else a measured ratio to BYOL.
    factor = cell_compute_factor(cell)
    cost = factor if factor is not None else METHOD_COST.get(str(cell.value("method.name", "tribyol")), 1.0)
    backbone = str(cell.value("model.backbone", "convnet"))
    cost *= BACKBONE_COST.get(backbone, 10.0)
    if backbone == "convnet":
        cost *= (int(cell.value("model.width", 32)) / 32) ** 2
    size = cell.value("data.image_size") or _preset_size(str(cell.value("data.dataset")))
    cost *= (int(size) / 32) ** 2
    return cost * int(cell.value("train.batch_size", 32)) / 32


def applies(section: dict[str, Any], cell: Cell) -> bool:
    """A fine-tune / transfer section with ``batches: [128]`` runs for those batch sizes only
    (the poster fine-tunes and transfers its b128 encoders)."""
    batches = section.get("batches")
    return not batches or int(cell.value("train.batch_size", 32)) in [int(b) for b in batches]


def eval_count(spec: dict[str, Any], cell: Cell | None = None) -> tuple[int, int]:
    """(linear + kNN + transfer evaluations, fine-tunings) of a cell."""
    ev = spec.get("eval") or {}
    transfer, finetune = ev.get("transfer") or {}, ev.get("finetune") or {}
    probes = 2 + (len(transfer.get("targets") or []) if cell is None or applies(transfer, cell) else 0)
    tunes = len(finetune.get("fractions") or []) if cell is None or applies(finetune, cell) else 0
    return probes, tunes


class CostModel:
    """Seconds per step unit and per evaluation: defaults until finished cells measure them."""

    def __init__(self, spec: dict[str, Any], measured: list[dict[str, Any]]) -> None:
        cost = spec.get("cost") or {}
        gpu = str((spec.get("base") or {}).get("train", {}).get("accelerator", "")) in ("gpu", "cuda")
        self.unit = float(cost.get("byol_step_seconds", BYOL_STEP_SECONDS / (GPU_SPEEDUP if gpu else 1)))
        self.eval = float(cost.get("eval_seconds", EVAL_SECONDS))
        self.finetune = float(cost.get("finetune_seconds", FINETUNE_SECONDS))
        self.source = "cost model (defaults; measured cells replace them)"
        units = [m["pretrain_s"] / m["units"] for m in measured
                 if m.get("units") and m.get("pretrain_s")]
        evals = [m["eval_s"] / m["evals"] for m in measured if m.get("evals") and m.get("eval_s")]
        if units:
            self.unit = statistics.median(units)
            self.source = f"measured on {len(units)} finished cell(s)"
        if evals:
            self.eval = statistics.median(evals)

    def units(self, cell: Cell, spec: dict[str, Any]) -> float | None:
        steps = planned_steps(cell, spec)
        return None if steps is None else steps * step_units(cell)

    def seconds(self, cell: Cell, spec: dict[str, Any]) -> float:
        probes, finetunes = eval_count(spec, cell)
        if cell.random_init_of:
            return START_SECONDS + self.eval * 2
        evals = probes * self.eval + finetunes * self.finetune + START_SECONDS * (1 + probes + finetunes)
        if cell.same_as:
            return 0.0
        units = self.units(cell, spec)
        return evals + (units or 0.0) * self.unit


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# -- running -------------------------------------------------------------------------------------


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
    def run_cell(self, cell: Cell, model: CostModel) -> dict[str, Any]:
        state = self.state(cell)
        state.update(id=cell.id, label=cell.label, row=cell.row, seed=cell.seed,
                     run=str(self.run_dir(cell)), same_as=cell.same_as)
        state.setdefault("steps", {})
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")} if self.jobs > 1 else {}
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
                             resumed="--resume" in argv)
            self.save_state(cell, state)
        evals = [n for n in state["steps"] if n not in ("pretrain", "export")]
        state.update(done=True, failed=None, evals=len(evals),
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
        model = CostModel(self.grid.spec, self.measured())
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
        wall = total / max(1, min(self.jobs, max(1, len(todo))))
        lines += ["", f"estimated: {duration(total)} of work, about {duration(wall)} with "
                      f"{self.jobs} job(s) ({model.source}: {model.unit:.3g} s per BYOL-step unit, "
                      f"{model.eval:.3g} s per evaluation)"]
        return "\n".join(lines), wall

    def run(self, cells: list[Cell]) -> list[str]:
        """Run the cells not done yet; returns the ids that failed. Ctrl+C raises
        ``GridStopped`` once the running cells have stopped (none is reported as failed)."""
        todo = [c for c in cells if not self.is_done(c)]
        # Runs first, then cells that reuse a run (same config, random init).
        todo.sort(key=lambda c: bool(c.same_as or c.random_init_of))
        first_wave = [c for c in todo if not (c.same_as or c.random_init_of)]
        second_wave = [c for c in todo if c.same_as or c.random_init_of]
        failed: list[str] = []
        finished = len(cells) - len(todo)
        started = time.perf_counter()
        done_now = 0
        stopped: list[str] = []

        def one(cell: Cell) -> None:
            nonlocal finished, done_now
            if self.stopping.is_set():
                return
            model = CostModel(self.grid.spec, self.measured())
            t0 = time.perf_counter()
            try:
                self.run_cell(cell, model)
            except (CellStopped, KeyboardInterrupt) as err:
                with self.lock:
                    stopped.append(cell.id)
                    self.stopping.set()
                if isinstance(err, KeyboardInterrupt):
                    raise
                return
            except CellFailed as err:
                with self.lock:
                    failed.append(cell.id)
                    self.echo(f"FAILED {err}")
                return
            with self.lock:
                finished += 1
                done_now += 1
                left = [c for c in todo if not self.is_done(c) and c.id not in failed]
                model = CostModel(self.grid.spec, self.measured())
                rest = sum(model.seconds(c, self.grid.spec) for c in left) / max(1, self.jobs)
                self.echo(f"[{finished}/{len(cells)} done, {len(left)} left] {cell.id} in "
                          f"{duration(time.perf_counter() - t0)}; elapsed "
                          f"{duration(time.perf_counter() - started)}, ETA {duration(rest)}")

        try:
            for wave in (first_wave, second_wave):
                wave = [c for c in wave if not c.same_as or c.same_as not in failed]
                wave = [c for c in wave if not c.random_init_of or c.random_init_of not in failed]
                if self.jobs <= 1:
                    for cell in wave:
                        one(cell)
                    continue
                pool = concurrent.futures.ThreadPoolExecutor(self.jobs)
                try:
                    list(pool.map(one, wave))
                except KeyboardInterrupt:
                    # The running cells' children got Ctrl+C too: wait while they stop.
                    self.stopping.set()
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            self.stopping.set()
        if self.stopping.is_set():
            raise GridStopped(stopped)
        return failed


# -- tables --------------------------------------------------------------------------------------


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
            out.append(copy_)
    return out


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


def tables_markdown(records: list[dict[str, Any]], grid: Grid) -> str:
    """Poster-shaped tables (report.tables), each cell ``mean ± std (n) / poster``."""
    from tribyol.report.tables import CARVED, build_tables, row_name  # not needed by --help

    parts = [f"# {grid.name}: results", "",
             "Cells: ours as mean ± std over seeds (n = the number of seeds) / the poster's "
             f"number for the method (– none). {CARVED} = "
             + ("scored on a carve of train (here the validation carve, below). "
                if select_on(grid.spec) == "validation" else "test set carved out of train. ")
             + equal_compute_text(grid.cells) + "Under each table: every row's mean "
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


def scored_on_text(spec: dict[str, Any]) -> str:
    """The line of ``tables.md`` that says what the grid was scored on (``select_on``)."""
    ev = spec.get("eval") or {}
    if select_on(spec) == "validation":
        return (f"**Scored on: the validation carve** (`select_on: validation`): "
                f"{float(ev['validation_from_train']):g} of train drawn outside the test carve "
                f"{float(ev['test_from_train']):g} (split seed {int(ev.get('split_seed', 0))}; "
                f"{VALIDATION_MANIFEST} names its images). For choosing a setting; no cell was "
                "scored on the test carve.")
    carve = ev.get("test_from_train")
    where = (f"the test carve {float(carve):g} of train (split seed {int(ev.get('split_seed', 0))})"
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


# -- the command ---------------------------------------------------------------------------------


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
    grid = load_grid(args.grid, args.seeds)
    cells = list(select(grid.cells, args.only))
    if not cells:
        raise ConfigError(f"--only {args.only!r} matches none of the grid's {len(grid.cells)} "
                          f"cells (ids look like {grid.cells[0].id})")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out or Path("results") / "grids" / grid.name)
    mark_same_runs(cells, resolved_fingerprint)
    # a cell reusing another's run needs that cell
    wanted = {c.id for c in cells}
    cells += [c for c in grid.cells if c.id not in wanted and any(
        x.same_as == c.id or x.random_init_of == c.id for x in cells)]
    order = {c.id: i for i, c in enumerate(grid.cells)}
    cells.sort(key=lambda c: order[c.id])
    repro = Reproduction(grid, out, runner=subprocess_runner, jobs=args.jobs)
    plan, _wall = repro.plan(cells)
    print(plan, flush=True)
    if args.dry_run:
        print("\ncommands (dry run; nothing is run):")
        for cell in cells:
            for _name, argv in repro.commands(cell):
                print("  tribyol " + " ".join(argv))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.yaml").write_text(yaml.safe_dump(grid.spec, sort_keys=False))
    prepare_data(grid.spec, out=out)
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
                   help="cells run in parallel as subprocesses (default 1; each gets "
                        "OMP_NUM_THREADS=1 unless set)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and commands only")
    p.set_defaults(func=cmd_reproduce)


__all__ = ["Cell", "Grid", "Reproduction", "expand_grid", "load_grid", "select"]
