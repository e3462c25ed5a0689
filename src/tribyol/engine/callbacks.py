"""Callbacks of a run's course: its record (``run.json``), stopping on a signal, the loader's
position, and deleting the run that ``--overwrite`` replaces once the new one has started.
Checkpoints are written by ``checkpointing``; throughput and progress lines are ``progress``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from tribyol.checkpoints import describe_kept
from tribyol.engine.checkpointing import AtomicCheckpoint
from tribyol.engine.progress import steps_per_epoch
from tribyol.engine.rundir import Replacement, exception_status, write_marker
from tribyol.errors import RunInterrupted, RunStopped

log = logging.getLogger(__name__)

__all__ = ["CommitReplacement", "LoaderPosition", "RunRecord", "StopOnSignal"]


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


class LoaderPosition(L.Callback):
    """Counts each batch as consumed when its step starts; ``PretrainData.state_dict`` (the
    checkpoint) reads the count at the step's end, so a resume continues with the next batch."""

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        loader = getattr(trainer.datamodule, "loader", None)
        if loader is not None:
            loader.completed += 1


class CommitReplacement(L.Callback):
    """Deletes the replaced run, if any, once the new run's first optimizer step has succeeded:
    its batches decoded, and the loss computed with its weights (the next step's) and the
    weights checked finite here; the module checks only every ``train.log_every_steps``
    steps. Until then, a failure puts the old run back (a run of one step: at its end)."""

    replacement: Replacement | None = None
    _first_step = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        # A too-high learning rate leaves finite but huge weights after the first update: the
        # loss turns NaN on the next forward pass, so that step is waited for too.
        if self.replacement is None or trainer.global_step < self._first_step + 2:
            return
        if hasattr(module, "check_finite"):
            module.check_finite()  # every rank: each raises alike on NaN weights
        if trainer.is_global_zero:
            self.replacement.commit()
        self.replacement = None
