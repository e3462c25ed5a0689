"""Callbacks: atomic checkpoints, RNG state in checkpoints, throughput."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

CHECKPOINT_NAME = "last.ckpt"
PREVIOUS_NAME = "previous.ckpt"


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

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.out_file is not None and trainer.is_global_zero:
            summary = {
                "images_per_s": self.images_per_s,
                "steps": trainer.global_step,
                "batch_size": self.batch_size,
                "world_size": trainer.world_size,
            }
            self.out_file.write_text(json.dumps(summary, indent=2))
