"""The batch finder: the peak memory of a few real training steps at each candidate batch.

Each candidate runs in a fresh Python process (``python -m tribyol.engine.plan SPEC.json``). On
CPU the resident-set peak (``ru_maxrss``) only ever grows within a process, and on CUDA a fresh
process holds no cached blocks of the previous candidate, so each figure is the candidate's
own. The child builds the run's networks (method, encoder, heads, targets, probe) from the
run's resolved config, then fits ``steps`` optimizer steps through the same LightningModule,
precision and device as the run, on synthetic images of the data's stored shape and dtype
(views, forward, backward, optimizer step with its state, EMA). What it reports:

* CUDA: ``torch.cuda.max_memory_allocated`` over the fit (networks, optimizer state,
  activations; not the CUDA context nor the allocator's cache);
* CPU: the process's ``ru_maxrss`` (Python, torch, the networks and one batch of images; not
  the dataset a real run holds in memory).

README.md (`train.batch_size`) says how to use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tribyol.config import RunConfig, to_dict
from tribyol.data import TensorImages
from tribyol.data.pretrain import data_info_for, load_pretrain_data, resolved_config
from tribyol.engine.loader import PretrainData, planned_world_size
from tribyol.engine.module import PretrainModule, uses_cuda
from tribyol.engine.monitor import knn_monitor
from tribyol.engine.trainer import memory_fraction, resolve_precision
from tribyol.errors import ConfigError
from tribyol.resolve import load_config

GIB = 2**30
# The default budget under --batch-size auto / tribyol plan: this share of the free memory, so
# the allocator's cache, fragmentation and the dataset have room.
FREE_SHARE = 0.9
# A candidate whose memory, extrapolated from the two smaller ones, passes the budget by this
# factor is not started (it would only be refused, or swap the machine).
SKIP_FACTOR = 1.15
CHILD_TIMEOUT_S = 900


@dataclasses.dataclass
class Measure:
    """One candidate batch: its peak memory (bytes) and how long its child took."""

    batch: int
    peak: int | None = None
    seconds: float = 0.0
    fits: bool | None = None
    note: str = ""  # "out of memory", "skipped: ...", ...

    def text(self) -> str:
        return "-" if self.peak is None else f"{self.peak / GIB:.2f}"


@dataclasses.dataclass
class Plan:
    """A batch finder's answer: every candidate measured and the largest that fits."""

    device: str
    precision: str
    budget: int
    rows: list[Measure]
    chosen: int | None
    steps: int

    def record(self) -> dict[str, Any]:
        """What run.json keeps under ``batch_plan``."""
        return {"chosen": self.chosen, "budget_gib": round(self.budget / GIB, 3),
                "device": self.device, "precision": self.precision, "steps": self.steps,
                "rows": [{"batch": r.batch, "peak_gib": None if r.peak is None
                          else round(r.peak / GIB, 4), "fits": r.fits, "note": r.note,
                          "seconds": round(r.seconds, 2)} for r in self.rows]}


def default_candidates(limit: int) -> list[int]:
    """2, 4, 8, ... up to ``limit`` (the number of training images)."""
    out, b = [], 2
    while b <= limit:
        out.append(b)
        b *= 2
    return out or [2]


def free_memory(cuda: bool) -> int:
    """Bytes free now: the GPU's (``mem_get_info``; no more than this process's share of it
    when ``reproduce --jobs N`` packs runs onto it), else the host's ``MemAvailable``."""
    if cuda:
        free, total = torch.cuda.mem_get_info()
        share = memory_fraction()
        return int(free if share is None else min(free, share * total))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _sample(dataset: Any) -> tuple[list[int], str]:
    image = dataset[0][0]
    return list(image.shape), str(image.dtype).removeprefix("torch.")


def measure(cfg: RunConfig, info: Any, dataset: Any, batch: int, steps: int = 3) -> Measure:
    """Peak memory of ``steps`` training steps of ``cfg`` at ``batch``, in a fresh process."""
    shape, dtype = _sample(dataset)
    tree = to_dict(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch)))
    spec = {"config": tree, "info": dataclasses.asdict(info), "shape": shape, "dtype": dtype,
            "batch": batch, "steps": steps}
    with tempfile.TemporaryDirectory(prefix="tribyol-plan-") as work:
        path = Path(work) / "spec.json"
        path.write_text(json.dumps(spec, default=list))
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "tribyol.engine.plan", str(path)],
                                  capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return Measure(batch, None, CHILD_TIMEOUT_S, False, "timed out")
        seconds = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode < 0 or (proc.returncode and not lines):
        if proc.returncode in (-9, 137):  # the kernel's OOM killer
            return Measure(batch, None, seconds, False, "killed (out of memory)")
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"the batch finder's step at batch {batch} failed: {last[:200]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if result.get("error"):
        raise ConfigError(f"the batch finder's step at batch {batch} failed: {result['error']}")
    if result.get("oom"):
        return Measure(batch, None, seconds, False, "out of memory")
    return Measure(batch, int(result["peak"]), seconds)


def _extrapolate(done: list[Measure], batch: int) -> float | None:
    """Memory is affine in the batch: the line through the two largest measured batches."""
    points = [(m.batch, m.peak) for m in done if m.peak is not None]
    if len(points) < 2:
        return None
    (b1, y1), (b2, y2) = points[-2], points[-1]
    return y2 + (y2 - y1) / (b2 - b1) * (batch - b2)


def find_batch(measure_one: Callable[[int], Measure], candidates: Sequence[int],
               budget: int) -> tuple[list[Measure], int | None]:
    """Measure ``candidates`` in ascending order until one passes ``budget``; the rows and the
    largest batch that fits (None: not even the smallest)."""
    rows: list[Measure] = []
    for batch in sorted(set(candidates)):
        guess = _extrapolate(rows, batch)
        if guess is not None and guess > budget * SKIP_FACTOR:
            rows.append(Measure(batch, None, 0.0, False,
                                f"skipped: extrapolated {guess / GIB:.2f} GiB"))
            break
        row = measure_one(batch)
        row.fits = row.peak is not None and row.peak <= budget
        rows.append(row)
        if not row.fits:
            break
    fitting = [r.batch for r in rows if r.fits]
    return rows, (max(fitting) if fitting else None)


def largest_within(measure_one: Callable[[int], Measure], low: int, high: int,
                   budget: int) -> tuple[int, list[Measure]]:
    """The largest batch in ``[low, high]`` whose peak is at most ``budget``, by bisection
    (memory grows with the batch); ``low`` if none does. Returns it and every measure taken."""
    taken: list[Measure] = []
    best = low
    while low <= high:
        mid = (low + high) // 2
        row = measure_one(mid)
        row.fits = row.peak is not None and row.peak <= budget
        taken.append(row)
        if row.fits:
            best, low = mid, mid + 1
        else:
            high = mid - 1
    return best, taken


def plan_batches(cfg: RunConfig, dataset: Any, info: Any, memory_gib: float | None = None,
                 candidates: Sequence[int] | None = None, steps: int = 3) -> Plan:
    """Measure the candidates (default: powers of two up to the data's size) for this run;
    refuses a multi-process run and a budget nothing fits."""
    if planned_world_size(cfg) > 1:
        raise ConfigError("the batch finder measures one process: train.batch_size=auto (and "
                          "tribyol plan) need train.devices=1 and train.num_nodes=1; find the "
                          "per-device batch with one device, then set it for the run")
    cuda = uses_cuda(cfg)
    budget = int(memory_gib * GIB) if memory_gib else int(free_memory(cuda) * FREE_SHARE)
    candidates = list(candidates or default_candidates(len(dataset)))
    rows, chosen = find_batch(lambda b: measure(cfg, info, dataset, b, steps), candidates, budget)
    plan = Plan("cuda" if cuda else "cpu", resolve_precision(cfg), budget, rows, chosen, steps)
    if chosen is None:
        need = rows[0].text() if rows else "?"
        raise ConfigError(f"no batch fits in {budget / GIB:.2f} GiB: the smallest candidate, "
                          f"batch {rows[0].batch}, needs {need} GiB ({rows[0].note or 'peak'}); "
                          "raise --memory, or lower data.image_size, model.backbone or "
                          "method.num_views, or turn on model.activation_checkpointing")
    return plan


def measure_config(cfg: RunConfig, batch: int, steps: int = 3) -> Measure:
    """``measure`` of the run ``cfg`` describes, its data loaded as pre-training would."""
    dataset = load_pretrain_data(cfg)
    info = data_info_for(cfg, dataset)
    return measure(resolved_config(cfg, info), info, dataset, batch, steps)


def plan_run(cfg: RunConfig, memory_gib: float | None = None,
             candidates: Sequence[int] | None = None, steps: int = 3) -> Plan:
    """``tribyol plan``: the run's data loaded as pre-training would, then ``plan_batches``."""
    dataset, _ = knn_monitor(cfg, load_pretrain_data(cfg))
    return plan_batches(cfg, dataset, data_info_for(cfg, dataset), memory_gib, candidates, steps)


def format_plan(plan: Plan, cfg: RunConfig) -> str:
    """The batch-against-memory table and the answer."""
    lines = [f"{cfg.method.name}, {cfg.model.backbone}, {cfg.data.image_size} px, "
             f"{plan.precision} on {plan.device}; {plan.steps} steps per batch; budget "
             f"{plan.budget / GIB:.2f} GiB", "",
             "| batch | peak GiB | fits | seconds | note |", "|---:|---:|---|---:|---|"]
    for r in plan.rows:
        fits = "yes" if r.fits else "no"
        lines.append(f"| {r.batch} | {r.text()} | {fits} | {r.seconds:.1f} | {r.note} |")
    lines += ["", f"largest batch that fits: {plan.chosen}"]
    return "\n".join(lines)


def _synthetic(shape: list[int], dtype: str, batch: int) -> Any:
    g = torch.Generator().manual_seed(0)
    size = (batch, *shape)
    if dtype == "uint8":
        images = torch.randint(0, 256, size, dtype=torch.uint8, generator=g)
    elif dtype in ("uint16", "int16", "int32"):
        images = torch.randint(0, 4096, size, generator=g).to(getattr(torch, dtype))
    else:
        images = torch.rand(size, generator=g).to(getattr(torch, dtype))
    return TensorImages(images, torch.zeros(batch, dtype=torch.long))


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the run's module and fit ``steps`` steps; the peak memory."""
    warnings.filterwarnings("ignore")  # the child's output is its one RESULT line
    cfg = load_config(spec["config"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, epochs=spec["steps"], max_steps=spec["steps"]))
    data = _synthetic(spec["shape"], spec["dtype"], spec["batch"])
    cuda = uses_cuda(cfg)
    module = PretrainModule(cfg, spec["info"])
    trainer = L.Trainer(max_steps=spec["steps"], max_epochs=spec["steps"],
                        accelerator="gpu" if cuda else "cpu", devices=1,
                        precision=resolve_precision(cfg), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(module, datamodule=PretrainData(cfg, data))
    except torch.OutOfMemoryError:
        return {"oom": True}
    if cuda:
        return {"peak": torch.cuda.max_memory_allocated()}
    return {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = _child(spec)
    except (ConfigError, ValueError) as err:
        result = {"error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
