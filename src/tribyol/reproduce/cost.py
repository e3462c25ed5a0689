"""The cost model: planned steps and evaluations of a cell, in seconds, until measured.

Estimates use the defaults below until cells of the grid have finished and measured them."""

from __future__ import annotations

import statistics
from typing import Any

from tribyol.errors import ConfigError
from tribyol.reproduce.cells import Cell, setting
from tribyol.reproduce.data import data_paths
from tribyol.reproduce.packing import host_cores

# The cost model (seconds), used until cells of the grid have finished and measured it.
# One BYOL step of the ConvNet (width 32) at 32 px, batch 32, one CPU thread (measured on the
# development machine's EPYC cores: TriBYOL 109 images/s = 0.29 s a step, BYOL 1.5x faster).
BYOL_STEP_SECONDS = 0.19
GPU_SPEEDUP = 40.0  # the same step on a GPU (rough; measured cells replace it)
EVAL_SECONDS = 30.0  # one linear or kNN evaluation on ~15,000 images at CPU scale
FINETUNE_SECONDS = 120.0
START_SECONDS = 8.0  # interpreter, torch and data start-up per command
# `--jobs N` on a GPU: the combined throughput of N packed cells over one cell alone, at most N.
# A stated guess (a host-bound b32 step keeps an H200 11 % busy, BENCHMARKS.md; issue 24's
# target for 6 runs is 3x); `cost.packing_speedup` in a grid replaces it, e.g. with the figure
# benchmarks/packing.py measures. On a CPU, N cells share the cores: min(N, cores).
PACKING_SPEEDUP = 3.0
METHOD_COST = {"byol": 1.0, "cross": 1.0, "simsiam": 0.8, "simclr": 0.8, "pirl-jigsaw": 1.2,
               "pirl-rotation": 1.0, "supervised": 0.35, "supervised-imagenet": 0.35}
BACKBONE_COST = {"convnet": 1.0, "resnet18": 12.0, "resnet50": 30.0}
# The unit step above: a ConvNet this wide, at this image size and batch (costs scale from it).
UNIT_WIDTH, UNIT_SIZE, UNIT_BATCH = 32, 32, 32
# Training images of the named datasets (their pre-training split), for planned steps.
TRAIN_SIZES = {"mnist": 60000, "fashionmnist": 60000, "kmnist": 60000, "usps": 7291,
               "svhn": 73257, "cifar10": 50000, "cifar100": 50000, "stl10": 5000,
               "digits": 1437}


def cell_compute_factor(cell: Cell) -> float | None:
    """The cell's step cost relative to default BYOL's, from its method's counted passes
    (``methods.registry.compute_factor``); None where the method does not count them."""
    from tribyol.methods.registry import compute_factor

    return compute_factor(dict(cell.value("method") or {}))


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
        count = TRAIN_SIZES.get(str(cell.setting("data.dataset")))
    if count is not None and limit:
        count = min(count, int(limit))
    return count or (int(limit) if limit else None)


def planned_steps(cell: Cell, spec: dict[str, Any]) -> int | None:
    images = pretrain_images(cell, spec)
    max_steps = int(cell.setting("train.max_steps") or -1)
    if images is None:
        return max_steps if max_steps > 0 else None
    batch = int(cell.setting("train.batch_size")) * int(cell.setting("train.accumulate"))
    steps = max(1, images // batch) * int(cell.setting("train.epochs"))
    return min(steps, max_steps) if max_steps > 0 else steps


def _preset_size(dataset: str) -> int:
    from tribyol.data import get_spec

    try:
        return int(get_spec(dataset).image_size) if dataset != "folder" else 224
    except (KeyError, ValueError, ConfigError):
        return UNIT_SIZE


def step_units(cell: Cell) -> float:
    """A step's cost relative to a BYOL step of the ConvNet (width 32) at 32 px, batch 32."""
    # The passes a method counts (equal_compute's factor), else a measured ratio to BYOL.
    factor = cell_compute_factor(cell)
    cost = factor if factor is not None else METHOD_COST.get(str(cell.setting("method.name")), 1.0)
    backbone = str(cell.setting("model.backbone"))
    cost *= BACKBONE_COST.get(backbone, 10.0)
    if backbone == "convnet":
        cost *= (int(cell.setting("model.width")) / UNIT_WIDTH) ** 2
    # a cell that names no dataset is costed at the unit's size (not RunConfig's default's)
    size = cell.value("data.image_size") or _preset_size(str(cell.value("data.dataset")))
    cost *= (int(size) / UNIT_SIZE) ** 2
    return cost * int(cell.setting("train.batch_size")) / UNIT_BATCH


def applies(section: dict[str, Any], cell: Cell) -> bool:
    """A fine-tune / transfer section with ``batches: [128]`` runs for those batch sizes only
    (the poster fine-tunes and transfers its b128 encoders)."""
    batches = section.get("batches")
    return not batches or int(cell.setting("train.batch_size")) in [int(b) for b in batches]


def eval_count(spec: dict[str, Any], cell: Cell | None = None) -> tuple[int, int]:
    """(linear + kNN + transfer evaluations, fine-tunings) of a cell."""
    ev = spec.get("eval") or {}
    transfer, finetune = ev.get("transfer") or {}, ev.get("finetune") or {}
    probes = 2 + (len(transfer.get("targets") or []) if cell is None or applies(transfer, cell) else 0)
    tunes = len(finetune.get("fractions") or []) if cell is None or applies(finetune, cell) else 0
    return probes, tunes


def packing_speedup(cost: dict[str, Any]) -> float:
    """The grid's ``cost.packing_speedup`` (a number >= 1), else the default."""
    value = cost.get("packing_speedup", PACKING_SPEEDUP)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise ConfigError(f"cost.packing_speedup must be a number >= 1 (the combined throughput "
                          f"of --jobs N cells on a GPU over one alone), got {value!r}")
    return float(value)


class CostModel:
    """Seconds per step unit and per evaluation: defaults until finished cells measure them."""

    def __init__(self, spec: dict[str, Any], measured: list[dict[str, Any]], jobs: int = 1,
                 gpu: bool | None = None, cores: int | None = None) -> None:
        cost = spec.get("cost") or {}
        if gpu is None:
            gpu = str(setting(spec.get("base") or {}, "train.accelerator")) in ("gpu", "cuda")
        self.jobs, self.gpu = max(1, jobs), gpu
        self.cores = cores if cores is not None else host_cores()
        self.packing = packing_speedup(cost)
        self.unit = float(cost.get("byol_step_seconds", BYOL_STEP_SECONDS / (GPU_SPEEDUP if gpu else 1)))
        self.eval = float(cost.get("eval_seconds", EVAL_SECONDS))
        self.finetune = float(cost.get("finetune_seconds", FINETUNE_SECONDS))
        self.source = "cost model (defaults; measured cells replace them)"
        # a cell measured while packed with others ran slower than alone: undo that
        units = [m["pretrain_s"] / m["units"] / self.slowdown(int(m.get("jobs") or 1))
                 for m in measured if m.get("units") and m.get("pretrain_s")]
        evals = [m["eval_s"] / m["evals"] / self.slowdown(int(m.get("jobs") or 1))
                 for m in measured if m.get("evals") and m.get("eval_s")]
        if units:
            self.unit = statistics.median(units)
            self.source = f"measured on {len(units)} finished cell(s)"
        if evals:
            self.eval = statistics.median(evals)

    def speedup(self, jobs: int) -> float:
        """Combined throughput of ``jobs`` concurrent cells over one cell alone."""
        if jobs <= 1:
            return 1.0
        cap = self.packing if self.gpu else float(self.cores)
        return max(1.0, min(float(jobs), cap))

    def slowdown(self, jobs: int) -> float:
        """How much longer one cell takes among ``jobs`` concurrent ones than alone."""
        return max(1, jobs) / self.speedup(jobs)

    def wall(self, total: float, cells: int) -> float:
        """Wall seconds of ``total`` seconds of single-cell work over ``cells`` cells."""
        return total / self.speedup(min(self.jobs, max(1, cells)))

    def packing_note(self) -> str:
        if self.jobs <= 1:
            return ""
        where = (f"packing speed-up {self.speedup(self.jobs):.3g}x on the GPU" if self.gpu
                 else f"{self.cores} core(s) shared: {self.speedup(self.jobs):.3g}x")
        return f"; {self.jobs} jobs: {where}"

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
