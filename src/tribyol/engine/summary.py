"""What a run is about to do, and what it did: a few lines on stderr at its start and end.

stdout keeps only results (``run directory: ...``); these lines are for the log a user reads
(docs/reliability.md, "Logs").
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import lightning as L

from tribyol.config import RunConfig, dotted_items, to_dict
from tribyol.data.pretrain import DataInfo
from tribyol.engine.progress import steps_per_epoch
from tribyol.errors import RunStopped

__all__ = ["RunSummary", "end_summary", "nondefault_config", "start_summary"]


def nondefault_config(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config's dotted keys whose value is not the default (the method's options
    against that method's own defaults), in the config's order."""
    defaults = to_dict(RunConfig())
    defaults["method"] = to_dict(RunConfig(method=type(cfg.method)()))["method"]
    base = dotted_items(defaults)
    return {k: v for k, v in dotted_items(to_dict(cfg)).items() if k not in base or base[k] != v}


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def start_summary(run_dir: Path, cfg: RunConfig, info: DataInfo, online_parameters: int,
                  encoder_parameters: int, total_steps: int, per_epoch: int, world_size: int,
                  accumulate: int, start_step: int = 0) -> str:
    """The lines printed when training starts."""
    t = cfg.train
    per_step = t.batch_size * accumulate * world_size
    # max_steps may end the run before train.epochs
    planned = min(t.epochs, math.ceil(total_steps / per_epoch)) if per_epoch else t.epochs
    epochs = f" ({per_epoch:,} per epoch, {_count(planned, 'epoch')})" if per_epoch \
        else f" ({_count(planned, 'epoch')} at most)"
    # the data's own statistics: the data line says where they came from
    settings = {k: v for k, v in nondefault_config(cfg).items() if k not in ("data.mean", "data.std")}
    pixels = "" if info.dtype == "uint8" and info.stats == "preset" else \
        f" of {info.dtype} (scale {info.scale:g}, {info.stats} mean/std)"
    return "\n".join([
        f"tribyol: resuming run {run_dir} at step {start_step}" if start_step
        else f"tribyol: starting run {run_dir}",
        f"  data: {cfg.data.dataset}, {_count(info.num_train_images, 'image')}, "
        f"{_count(info.num_classes, 'class', 'classes')}, "
        f"{info.image_size} px views, {_count(info.channels, 'channel')}{pixels}",
        f"  networks: {online_parameters:,} parameters in the online network "
        f"(encoder {encoder_parameters:,})",
        f"  plan: {_count(total_steps, 'step')}{epochs}, batch {t.batch_size} per device x "
        f"{accumulate} accumulation x {world_size} world size = {per_step} images per step",
        "  config (non-default): " + (", ".join(f"{k}={v}" for k, v in settings.items()) or "none"),
    ])


def end_summary(status: str, step: int, total_steps: int, loss: float | None, wall_s: float,
                images: int) -> str:
    """The line printed when training ends (finished, stopped or failed)."""
    wall = datetime.timedelta(seconds=round(wall_s))
    loss_text = "not logged" if loss is None else f"{loss:.4f} (last logged)"
    rate = images / wall_s if wall_s > 0 else float("nan")
    return (f"tribyol: {status} at step {step}/{total_steps}; final loss {loss_text}; "
            f"wall time {wall} ({wall_s:.1f} s); {rate:.0f} images/s")


class RunSummary(L.Callback):
    """Prints ``start_summary`` when training starts and ``end_summary`` when it ends, on global
    rank 0, to ``stream`` (stderr)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, info: DataInfo,
                 stream: TextIO | None = None) -> None:
        self.run_dir, self.cfg, self.info, self.stream = run_dir, cfg, info, stream
        self.start, self.start_step = time.perf_counter(), 0

    def _print(self, trainer: L.Trainer, text: str) -> None:
        if trainer.is_global_zero:
            print(text, file=self.stream or sys.stderr, flush=True)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start, self.start_step = time.perf_counter(), trainer.global_step
        method = module.method
        online = sum(p.numel() for p in method.trainable_parameters())
        encoder = sum(p.numel() for p in method.backbone.parameters())
        self._print(trainer, start_summary(
            self.run_dir, self.cfg, self.info, online, encoder,
            int(trainer.estimated_stepping_batches), steps_per_epoch(trainer),
            trainer.world_size, trainer.accumulate_grad_batches, self.start_step))

    def _end(self, trainer: L.Trainer, status: str) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        steps = trainer.global_step - self.start_step
        images = steps * self.cfg.train.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        total = trainer.estimated_stepping_batches
        self._print(trainer, end_summary(
            status, trainer.global_step, int(total) if math.isfinite(total) else trainer.global_step,
            None if loss is None else float(loss), time.perf_counter() - self.start, images))

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._end(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule,
                     exception: BaseException) -> None:
        self._end(trainer, "stopped" if isinstance(exception, RunStopped) else "failed")
