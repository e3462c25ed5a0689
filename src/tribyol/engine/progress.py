"""How fast and how far a run is: images per second (``throughput.json``), plain progress
lines for logs, and the steps of an epoch."""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

from tribyol.engine.rundir import exception_status, write_atomic

log = logging.getLogger(__name__)


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one epoch on this trainer (0 when not known yet)."""
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return 0
    return max(1, batches // max(1, trainer.accumulate_grad_batches))


def planned_epochs(trainer: L.Trainer, total_steps: int) -> int:
    """The epochs this run will reach: ``max_epochs``, or fewer where max_steps ends it first."""
    per_epoch = steps_per_epoch(trainer)
    epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else 0
    if per_epoch <= 0:
        return epochs
    reached = math.ceil(total_steps / per_epoch)
    return min(epochs, reached) if epochs else reached


class PlainProgress(L.Callback):
    """One plain line every ``every`` steps on stderr, for logs (CI, SLURM, ``> log``)."""

    def __init__(self, every: int, stream: Any = None) -> None:
        self.every = max(1, every)
        self.stream = stream
        self.start = 0.0
        self.first_step = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        step = trainer.global_step
        total = int(trainer.estimated_stepping_batches)
        # Every `every` steps, and the last one: a run shorter than `every` still says how it went.
        if step == self.first_step or (step % self.every and step < total) \
                or not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self.start
        rate = (step - self.first_step) / max(elapsed, 1e-9)
        loss = trainer.callback_metrics.get("train/loss")
        rank = trainer.callback_metrics.get("train/z_rank")  # effective rank: collapse -> 1
        images = trainer.callback_metrics.get("train/images_per_s")
        parts = [f"step {step}/{total}",
                 f"epoch {trainer.current_epoch + 1}/{planned_epochs(trainer, total)}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if rank is not None and math.isfinite(float(rank)):
            parts.append(f"rank {float(rank):.1f}")
        if images is not None and math.isfinite(float(images)):
            parts.append(f"images/s {float(images):.0f}")
        if total > step:
            parts.append(f"eta {datetime.timedelta(seconds=round((total - step) / max(rate, 1e-9)))}")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)


class Throughput(L.Callback):
    """Source images per second over all steps after ``warmup`` steps; written to a JSON file."""

    def __init__(self, batch_size: int, out_file: str | Path | None = None, warmup: int = 5):
        self.batch_size, self.warmup = batch_size, warmup
        self.out_file = Path(out_file) if out_file else None
        self.steps = 0
        self.start = 0.0
        self.images_per_s = float("nan")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        elif self.steps > self.warmup:
            elapsed = time.perf_counter() - self.start
            images = (self.steps - self.warmup) * self.batch_size * trainer.world_size
            self.images_per_s = images / max(elapsed, 1e-9)
            if self.steps % max(1, trainer.log_every_n_steps) == 0:
                trainer.lightning_module.log("train/images_per_s", self.images_per_s)

    def write(self, trainer: L.Trainer, status: str) -> None:
        if self.out_file is not None and trainer.is_global_zero:
            summary = {
                "images_per_s": self.images_per_s,
                "steps": trainer.global_step,
                "batch_size": self.batch_size,
                "world_size": trainer.world_size,
                "status": status,
            }
            write_atomic(self.out_file, json.dumps(summary, indent=2) + "\n")

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.write(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        try:
            self.write(trainer, exception_status(exception))
        except OSError as err:  # a full disk: the run's own error is the one to report
            log.warning("could not update %s: %s", self.out_file, err)
