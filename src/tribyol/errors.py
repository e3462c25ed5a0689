"""Errors the user can act on; each message says what went wrong and what to do.

They live here, in a module that imports nothing, so that the CLI can catch them (print
``error: ...``, exit 2) without importing torch for commands that never train.
"""

from __future__ import annotations


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


# What the CLI reports as a one-line error instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    FileNotFoundError,  # includes DatasetNotFoundError
    FileExistsError,  # includes RunDirExistsError
    PermissionError,  # an output path we may not write
    CheckpointError,
    NonFiniteLossError,
    BadImageError,
)

__all__ = [
    "USER_ERRORS",
    "BadImageError",
    "CheckpointError",
    "ConfigError",
    "DatasetNotFoundError",
    "NonFiniteLossError",
    "RunDirExistsError",
    "RunStopped",
]
