"""Callbacks: atomic checkpoints, RNG state, throughput, the run record, signals, progress lines."""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from tribyol.checkpoints import CHECKPOINT_NAME, PREVIOUS_NAME
from tribyol.engine.rundir import write_marker
from tribyol.errors import RunStopped

log = logging.getLogger(__name__)

__all__ = ["AtomicCheckpoint", "PlainProgress", "RNGState",
           "RunRecord", "StopOnSignal", "Throughput"]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpoint(L.Callback):
    """Writes ``last.ckpt`` every epoch, every ``every_steps`` steps (0: off) and at the end.

    Each save goes to a temporary file, is fsynced, then renamed over ``last.ckpt``; the one it
    replaces is kept as ``previous.ckpt``. A crash mid-write never leaves a half-written
    ``last.ckpt`` behind.
    """

    def __init__(self, dirpath: str | Path, every_steps: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_steps = every_steps
        self._last_saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._last_saved_step:
            return
        module = trainer.lightning_module
        if hasattr(module, "check_finite"):
            module.check_finite()  # never write NaN weights over a good checkpoint
        self.dirpath.mkdir(parents=True, exist_ok=True)
        final = self.dirpath / CHECKPOINT_NAME
        tmp = self.dirpath / f".{CHECKPOINT_NAME}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, loops, RNG
        if trainer.is_global_zero:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            if final.exists():
                os.replace(final, self.dirpath / PREVIOUS_NAME)
            os.replace(tmp, final)
            _fsync_dir(self.dirpath)
        trainer.strategy.barrier("atomic-checkpoint")
        self._last_saved_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # A resumed run already has this step on disk; saving it again after the first
        # micro-batch of an accumulation window would record a half-consumed window.
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every_steps > 0 and trainer.global_step % self.every_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.save(trainer)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.save(trainer)


class RNGState(L.Callback):
    """Saves and restores the Python, NumPy and torch RNGs with each checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        py_version, py_state, py_gauss = random.getstate()
        np_state = np.random.get_state()
        state = {
            "python": [py_version, list(py_state), py_gauss],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, py_state, gauss = state["python"]
        random.setstate((version, tuple(py_state), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


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
            self.out_file.write_text(json.dumps(summary, indent=2))

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.write(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.write(trainer, "stopped" if isinstance(exception, RunStopped) else "failed")


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one epoch on this trainer (0 when not known yet)."""
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return 0
    return max(1, batches // max(1, trainer.accumulate_grad_batches))


class RunRecord(L.Callback):
    """Keeps ``run.json`` true: the budget actually run (steps and epochs done) and the status."""

    def __init__(self, run_dir: Path, facts: dict[str, Any]) -> None:
        self.run_dir, self.facts = run_dir, facts

    def update(self, trainer: L.Trainer, status: str) -> None:
        if not trainer.is_global_zero or not self.run_dir.is_dir():
            return
        per_epoch = steps_per_epoch(trainer)
        write_marker(
            self.run_dir, **self.facts, status=status, steps_done=trainer.global_step,
            steps_per_epoch=per_epoch, world_size=trainer.world_size,
            epochs_done=round(trainer.global_step / per_epoch, 4) if per_epoch else None,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.update(trainer, "running")

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.update(trainer, "running")

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.update(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.update(trainer, "stopped" if isinstance(exception, RunStopped) else "failed")


class StopOnSignal(L.Callback):
    """SIGTERM / SIGINT end the run at the next step boundary with a checkpoint, not exit 0.

    The handler only records the signal; after the optimizer step in flight, the run saves a
    checkpoint and raises ``RunStopped`` (the CLI exits 143 / 130). A second SIGINT interrupts
    at once, as Ctrl+C twice usually does.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, save: Callable[[L.Trainer], None], resume_command: str | None) -> None:
        self.save, self.resume_command = save, resume_command
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            print(f"received {signal.Signals(signum).name}: stopping after this step with a checkpoint",
                  file=sys.stderr, flush=True)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def stop(self, trainer: L.Trainer) -> None:
        assert self.signum is not None
        self.save(trainer)
        raise RunStopped(self.signum, trainer.global_step, self.resume_command)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # Only where an optimizer step has just completed: never mid-accumulation window.
        if self.signum is not None and (batch_idx + 1) % max(1, trainer.accumulate_grad_batches) == 0:
            self.stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.signum is not None:
            self.stop(trainer)


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
        if step == self.first_step or step % self.every or not trainer.is_global_zero:
            return
        total = int(trainer.estimated_stepping_batches)
        elapsed = time.perf_counter() - self.start
        rate = (step - self.first_step) / max(elapsed, 1e-9)
        loss = trainer.callback_metrics.get("train/loss")
        images = trainer.callback_metrics.get("train/images_per_s")
        parts = [f"step {step}/{total}", f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if images is not None and math.isfinite(float(images)):
            parts.append(f"images/s {float(images):.0f}")
        if total > step:
            parts.append(f"eta {datetime.timedelta(seconds=round((total - step) / max(rate, 1e-9)))}")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)
