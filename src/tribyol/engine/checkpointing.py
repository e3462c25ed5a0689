"""Checkpoints during training: ``AtomicCheckpoint`` with its in-folder writer and free-space
check, the RNG state saved with each checkpoint, and what a failed write's disk error was."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from tribyol.checkpoints import CHECKPOINT_NAME, PREVIOUS_NAME, storage_nbytes
from tribyol.engine.rundir import fsync_dir, is_temp_of, temp_path
from tribyol.errors import DISK_ERRNOS

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
