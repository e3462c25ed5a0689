"""Errors the user can act on; each message says what went wrong and what to do.

They live here, in a module that imports nothing heavy, so that the CLI can catch them (print
``error: ...``, exit 2) without importing torch for commands that never train. The modules that
raise them re-export them under their old homes (``tribyol.export.CheckpointError``, ...).
"""

from __future__ import annotations

from tribyol.config import ConfigError


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


# What the CLI reports as a one-line error instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    FileNotFoundError,  # includes DatasetNotFoundError
    FileExistsError,  # includes RunDirExistsError
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
]
