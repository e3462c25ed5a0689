"""What a failed run tells the user: one line for a full disk, a NaN loss or Lightning's own
SIGTERM stop, naming what is kept (no traceback)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tribyol.checkpoints import CHECKPOINT_NAME, describe_kept, load_checkpoint
from tribyol.config.fields import option_name
from tribyol.engine.callbacks import StopOnSignal
from tribyol.engine.checkpointing import disk_error
from tribyol.errors import CheckpointError, DiskWriteError, NonFiniteLossError, RunStopped


def run_error(err: BaseException, run_dir: Path, restored: bool, resume_command: str | None,
              stop: StopOnSignal | None, trainer: L.Trainer) -> BaseException | None:
    """The one-line error to raise instead of ``err``, or ``None`` to raise ``err`` itself
    (``restored``: the run that ``--overwrite`` was to replace is back)."""
    if isinstance(err, SIGTERMException):
        # Lightning's own SIGTERM path (at an epoch end): the epoch's checkpoint is on disk.
        assert stop is not None
        return RunStopped(stop.signum or 15, trainer.global_step, resume_command)
    if isinstance(err, NonFiniteLossError):
        return true_nan_message(err, run_dir, restored)
    disk = disk_error(err) if isinstance(err, Exception) else None
    if disk is not None and not isinstance(err, DiskWriteError):
        return disk_error_message(disk, run_dir, restored, resume_command)
    return None


def is_interrupt(err: BaseException) -> bool:
    """A signal ended the command (Ctrl+C, SIGTERM), not a failure of the run's."""
    return isinstance(err, (KeyboardInterrupt, SIGTERMException, RunStopped)) or \
        not isinstance(err, Exception)  # the CLI's SIGTERM before training, SystemExit


def disk_error_message(err: OSError, run_dir: Path, restored: bool,
                        resume_command: str | None) -> DiskWriteError:
    """A full or read-only disk mid-run: one line naming the file, the reason and the last good
    checkpoint (no traceback); the write that failed left no temporary file behind."""
    target = re.sub(r"(^|/)\.([^/]+?)(?:\.[0-9a-f]{12})?\.tmp$", r"\1\2", str(err.filename or ""))
    what = f"cannot write {target}" if target else "cannot write to the disk"
    if restored:
        kept = f"the run it was to replace is back in {run_dir}, untouched"
    else:
        kept = describe_kept(run_dir / "checkpoints")
    fix = ("free some space on that disk (or move the run to a larger one)" if err.errno in
           (errno.ENOSPC, errno.EDQUOT) else "make that folder writable")
    again = f"resume with: {resume_command}" if resume_command else f"resume with {option_name('--resume')}"
    return DiskWriteError(f"{what}: {err.strerror or err}; {kept}. To go on, {fix}, then {again}")


def true_nan_message(err: NonFiniteLossError, run_dir: Path,
                      restored: bool = False) -> NonFiniteLossError:
    """The module cannot know whether a checkpoint exists; say which one is kept, if any
    (``restored``: the run that ``--overwrite`` was to replace is back)."""
    last = run_dir / "checkpoints" / CHECKPOINT_NAME
    if restored:
        kept = f"the run it was to replace is back in {run_dir}, untouched"
    elif last.exists():
        try:
            step = load_checkpoint(last).get("global_step")
            kept = f"the last good checkpoint ({last}, step {step}) is kept"
        except CheckpointError:
            kept = f"the last checkpoint written is {last}"
    else:
        kept = "no checkpoint had been written yet, so nothing was saved"
    return NonFiniteLossError(str(err).replace("the last good checkpoint is kept", kept))
