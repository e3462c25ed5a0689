"""Callbacks: atomic checkpoints, RNG state, throughput, the run record, signals, progress lines."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import math
import os
import random
import shutil
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
from lightning.pytorch.plugins import TorchCheckpointIO

from tribyol.checkpoints import CHECKPOINT_NAME, PREVIOUS_NAME, describe_kept, storage_nbytes
from tribyol.engine.rundir import fsync_dir, is_temp_of, temp_path, write_atomic, write_marker
from tribyol.errors import DISK_ERRNOS, RunInterrupted, RunStopped

log = logging.getLogger(__name__)

__all__ = ["AtomicCheckpoint", "PlainProgress", "RNGState",
           "RunRecord", "StopOnSignal", "Throughput"]


MIB = 1 << 20


def disk_error(err: BaseException) -> OSError | None:
    """The ``OSError`` of a full or read-only disk behind ``err`` (itself, or what it was raised
    from: torch reports a failed write as a ``RuntimeError``), or ``None``."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return e
        stack += [e.__cause__, e.__context__]
    return None


def check_free_space(folder: Path, need: int) -> None:
    """Refuse to start a write of ``need`` bytes that ``folder``'s disk has no room for: a run
    stops cleanly before the disk fills, not half-way through a checkpoint."""
    want = need + need // 50 + MIB  # the pickle, zip headers and some slack
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: let the write itself find out
    if free < want:
        raise OSError(errno.ENOSPC, f"not enough free space for a checkpoint: it needs about "
                      f"{want / MIB:.1f} MB, the disk has {free / MIB:.1f} MB free", str(folder))


class InFolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing straight into the file it is given, fsynced.

    Lightning's own builds the whole checkpoint in memory, then writes it to a temporary file
    of fsspec's in $TMPDIR and moves it: a small ``/tmp`` failed runs whose folder had room, and
    memory held the checkpoint twice. Here the file is ``AtomicCheckpoint``'s temporary one,
    beside ``last.ckpt``, and the disk's free space is checked first.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by InFolderCheckpointIO")
        path = Path(path)
        check_free_space(path.parent, storage_nbytes(checkpoint))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException as err:
            with contextlib.suppress(OSError):
                path.unlink()
            disk = disk_error(err)
            if disk is not None and (disk is not err or disk.filename is None):
                # the file's name: a failed flush on close, or torch's RuntimeError, lacks it
                raise OSError(disk.errno, disk.strerror, str(path)) from err
            raise


class AtomicCheckpoint(L.Callback):
    """Writes ``last.ckpt`` every epoch, every ``every_steps`` steps (0: off) and at the end.

    Each save goes to a new temporary file beside ``last.ckpt`` (``InFolderCheckpointIO``; never
    $TMPDIR), after a check that the disk has room for it, is fsynced, then renamed over
    ``last.ckpt``; the one it replaces is kept as ``previous.ckpt``. A crash or a full disk
    mid-write never leaves a half-written ``last.ckpt``, and a failed write removes its
    temporary file: ``last.ckpt`` and ``previous.ckpt`` stay a good pair. After each save, every
    callback with an ``on_checkpoint_saved(trainer, path, step)`` method is told (``RunRecord``).
    """

    def __init__(self, dirpath: str | Path, every_steps: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_steps = every_steps
        self._last_saved_step = -1

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default
            trainer.strategy.checkpoint_io = InFolderCheckpointIO()

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._last_saved_step:
            return
        module = trainer.lightning_module
        if hasattr(module, "check_finite"):
            module.check_finite()  # never write NaN weights over a good checkpoint
        self.dirpath.mkdir(parents=True, exist_ok=True)
        final = self.dirpath / CHECKPOINT_NAME
        tmp = temp_path(final)
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, loops, RNG
            if trainer.is_global_zero:
                if final.exists():
                    os.replace(final, self.dirpath / PREVIOUS_NAME)
                os.replace(tmp, final)
                fsync_dir(self.dirpath)
        except BaseException:
            if trainer.is_global_zero:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            raise
        trainer.strategy.barrier("atomic-checkpoint")
        self._last_saved_step = trainer.global_step
        for callback in trainer.callbacks:
            saved = getattr(callback, "on_checkpoint_saved", None)
            if saved is not None:
                saved(trainer, final, trainer.global_step)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # A resumed run already has this step on disk; saving it again after the first
        # micro-batch of an accumulation window would record a half-consumed window.
        self._last_saved_step = trainer.global_step
        if trainer.is_global_zero and self.dirpath.is_dir():
            # Left by a save that was killed mid-write (the run directory's lock keeps other
            # runs out, so none is being written now): each is up to a checkpoint's size.
            for stale in self.dirpath.iterdir():
                if is_temp_of(stale, CHECKPOINT_NAME):
                    with contextlib.suppress(OSError):
                        stale.unlink()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # The run's last step too (the module sets should_stop before it): saved here, not at
        # the epoch's end. Lightning counts an epoch cut short by max_steps as done by then, so
        # a checkpoint taken there resumed into the next epoch's batches, and a finished run
        # continued with a larger --max-steps trained other batches than a longer run would.
        if (self.every_steps > 0 and trainer.global_step % self.every_steps == 0) or trainer.should_stop:
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
            write_atomic(self.out_file, json.dumps(summary, indent=2) + "\n")

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.write(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        try:
            self.write(trainer, exception_status(exception))
        except OSError as err:  # a full disk: the run's own error is the one to report
            log.warning("could not update %s: %s", self.out_file, err)


def exception_status(exception: BaseException) -> str:
    """run.json's status for a run that ``exception`` ended."""
    if isinstance(exception, RunInterrupted):
        return "interrupted"
    return "stopped" if isinstance(exception, RunStopped) else "failed"


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one epoch on this trainer (0 when not known yet)."""
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return 0
    return max(1, batches // max(1, trainer.accumulate_grad_batches))


class RunRecord(L.Callback):
    """Keeps ``run.json`` true: the budget actually run (steps and epochs done), the step of the
    checkpoint on disk (``checkpoint_step``) and the status, updated at the start, after every
    checkpoint (``AtomicCheckpoint`` calls ``on_checkpoint_saved``) and at the end. A run killed
    with SIGKILL therefore leaves ``"running"`` at its last checkpoint's step; one that failed
    says ``"failed"`` and why (``error``), if the disk still takes the file. The module's
    ``collapse_warning`` (``{step, z_std, rank, threshold}``) goes in as soon as it is set."""

    def __init__(self, run_dir: Path, facts: dict[str, Any]) -> None:
        self.run_dir, self.facts = run_dir, facts
        self.checkpoint_step: int | None = None
        self.collapse_warning: dict[str, Any] | None = None

    def update(self, trainer: L.Trainer, status: str, error: str | None = None) -> None:
        if not trainer.is_global_zero or not self.run_dir.is_dir():
            return
        per_epoch = steps_per_epoch(trainer)
        # Only once there is one: a resumed run keeps the warning its first attempt recorded.
        extra = {"collapse_warning": self.collapse_warning} if self.collapse_warning else {}
        write_marker(
            self.run_dir, **self.facts, status=status, steps_done=trainer.global_step,
            checkpoint_step=self.checkpoint_step,
            steps_per_epoch=per_epoch, world_size=trainer.world_size,
            epochs_done=round(trainer.global_step / per_epoch, 4) if per_epoch else None,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S"), error=error, **extra,
        )

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        warning = getattr(module, "collapse_warning", None)  # a host-side dict: no sync
        if warning is not None and warning is not self.collapse_warning:
            self.collapse_warning = warning
            self.update(trainer, "running")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # A resumed run starts at its checkpoint's step.
        self.checkpoint_step = trainer.global_step if trainer.ckpt_path else None
        self.update(trainer, "running")

    def on_checkpoint_saved(self, trainer: L.Trainer, path: Path, step: int) -> None:
        self.checkpoint_step = step
        self.update(trainer, "running")

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.update(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        status = exception_status(exception)
        lines = str(exception).strip().splitlines()
        error = f"{type(exception).__name__}: {lines[0] if lines else ''}" if status == "failed" else None
        try:
            self.update(trainer, status, error)
        except OSError as err:  # a full disk: the run's own error is the one to report
            log.warning("could not update %s: %s", self.run_dir / "run.json", err)


class StopOnSignal(L.Callback):
    """SIGTERM / SIGINT end the run at the next step boundary with a checkpoint, not exit 0.

    The handler only records the signal; after the optimizer step in flight, the run saves a
    checkpoint and raises ``RunStopped`` (the CLI exits 143 / 130). A second SIGINT interrupts
    at once, as Ctrl+C twice usually does, with ``RunInterrupted`` (exit 130, status
    ``"interrupted"``, never Lightning's exit 1 for a ``KeyboardInterrupt``): a save under way is
    dropped with its temporary file, and the last good checkpoint is kept and named.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, save: Callable[[L.Trainer], None], resume_command: str | None) -> None:
        self.save, self.resume_command = save, resume_command
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self.running_trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self.running_trainer = trainer

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            trainer = self.running_trainer
            folder = next((c.dirpath for c in (trainer.callbacks if trainer else [])
                           if isinstance(c, AtomicCheckpoint)), None)
            kept = describe_kept(folder) if folder is not None else "no checkpoint was written"
            raise RunInterrupted(signum, trainer.global_step if trainer else 0,
                                 self.resume_command, kept)
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
