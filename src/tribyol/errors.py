"""Errors the user can act on; each message says what went wrong and what to do.

They live here, in a module that imports nothing, so that the CLI can catch them (print
``error: ...``, exit 2) without importing torch for commands that never train.
"""

from __future__ import annotations

import errno


class ConfigError(ValueError):
    """A config key or value that cannot work; raised before any training starts."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not ours."""


class NonFiniteLossError(FloatingPointError):
    """The loss or a weight became NaN/Inf; the message names the step and the tensor."""


class BadImageError(RuntimeError):
    """An image file that cannot be decoded."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message names the path and the fix."""


class RunDirExistsError(FileExistsError):
    """A run directory is already there and neither resume nor overwrite was asked for."""


class RunDirLockedError(RunDirExistsError):
    """Another process (its pid and host named) holds the run directory's lock."""


class RunStopped(Exception):
    """A signal (SIGTERM, SIGINT) ended a run after it saved a checkpoint; not a failure of ours.

    The CLI prints the message and exits ``128 + signal number`` (143 for SIGTERM, 130 for
    SIGINT), as a shell would for a process killed by that signal.
    """

    def __init__(self, signum: int, step: int, resume_command: str | None) -> None:
        import signal

        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        how = f"resume with: {resume_command}" if resume_command else "resume with --resume"
        super().__init__(f"stopped by {name} at step {step}; {how}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RunInterrupted(RunStopped):
    """A second SIGINT (Ctrl+C twice) ended a run at once, without a checkpoint of this step.

    ``kept`` names the last good checkpoint, which a resume continues from. Exit code 130.
    """

    def __init__(self, signum: int, step: int, resume_command: str | None, kept: str) -> None:
        import signal

        self.signum, self.step = signum, step
        how = f"resume with: {resume_command}" if resume_command else "resume with --resume"
        Exception.__init__(self, f"interrupted by a second {signal.Signals(signum).name} at step "
                                 f"{step}, without a checkpoint of that step; {kept}; {how}")


class DiskWriteError(OSError):
    """A file could not be written (disk full, quota, read-only or not permitted); the message
    names the file, the reason, and the last good checkpoint of a run."""


# The errno values of an OSError that the disk, not tribyol, is the cause of.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


# torch's weights-only refusal advises loading the file with weights_only=False or allowlisting
# its classes, which runs whatever code a pickle carries: never advice to give about a file of
# unknown origin. Sentences naming any of these are dropped from its message.
_UNSAFE_ADVICE = (r"weights_only|trust|allowlist|safe_globals|can still be loaded|file an issue|"
                  r"Check the documentation|Alternatively")


def torch_load_reason(err: Exception) -> str:
    """torch's own reason for refusing a file, on one line (its refusal spans many), without
    its advice to load the file some unsafe way."""
    import re

    text = " ".join(line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines()
                    if line.strip())
    text = re.sub(r"\(\d\)\s*", "", text)  # torch's numbered options, dropped below
    sentences = re.split(r"(?<=[.:])\s+|\s+(?=Check the documentation)", text)
    kept = [s for s in sentences if not re.search(_UNSAFE_ADVICE, s, re.IGNORECASE)]
    reason = " ".join(kept) or type(err).__name__
    if "GLOBAL" in text:  # the pickle names a class or function to call
        reason += (" The file names code to run, not only tensors: loading it could result in "
                   "arbitrary code execution, and tribyol never loads such a file")
    return reason


# What the CLI reports as a one-line error instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    FileNotFoundError,  # includes DatasetNotFoundError
    FileExistsError,  # includes RunDirExistsError
    PermissionError,  # an output path we may not write
    DiskWriteError,  # a full or read-only disk
    CheckpointError,
    NonFiniteLossError,
    BadImageError,
)

__all__ = [
    "DISK_ERRNOS",
    "USER_ERRORS",
    "BadImageError",
    "CheckpointError",
    "ConfigError",
    "DatasetNotFoundError",
    "DiskWriteError",
    "NonFiniteLossError",
    "RunDirExistsError",
    "RunDirLockedError",
    "RunInterrupted",
    "RunStopped",
    "torch_load_reason",
]
