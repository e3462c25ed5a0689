"""Run folders without torch: ``tribyol runs`` (a table of the runs under a folder) and the saved
config that ``tribyol pretrain --resume RUN_DIR`` continues with.

Everything here reads ``run.json`` (written by ``tribyol.engine.rundir`` and the engine's
``RunRecord``) defensively: a field that is missing, of another type or from an older version
shows as ``?`` rather than failing the listing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.config import parse_override
from tribyol.errors import ConfigError

# The same names as tribyol.engine.rundir's (a test checks they agree); that module imports
# torch, and listing runs or reading a config must not.
RUN_MARKER = "run.json"
RUN_FORMAT = "tribyol-run-v1"
CONFIG_NAME = "config.yaml"
CHECKPOINT_PATH = ("checkpoints", "last.ckpt")
# Statuses under which run.json's steps_done is the step of the checkpoint on disk (the engine
# saves, then records); after a failure it is the step that failed.
SAVED_AT_STEPS_DONE = ("running", "stopped", "finished")

__all__ = ["RunRow", "find_runs", "format_runs", "list_runs", "read_run", "resume_config"]


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of ``run_dir`` as a dict; ``None`` when it is missing, unreadable or not ours."""
    try:
        marker = json.loads((run_dir / RUN_MARKER).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == RUN_FORMAT else None


def find_runs(root: Path) -> list[Path]:
    """Folders under ``root`` (``root`` included) holding a tribyol ``run.json``, sorted.

    Hidden folders (a replaced run set aside as ``.<name>.replaced-<pid>``) are skipped, and a
    run's own sub-folders are not searched.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        if RUN_MARKER in files and read_run(Path(folder)) is not None:
            found.append(Path(folder))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value else "?"


def planned_steps(marker: dict[str, Any]) -> int | None:
    """Optimizer steps the run will take: epochs x steps per epoch, cut by max_steps."""
    per_epoch, epochs = _int(marker.get("steps_per_epoch")), _int(marker.get("epochs_planned"))
    max_steps = _int(marker.get("max_steps"))
    by_epochs = per_epoch * epochs if per_epoch and epochs else None
    cut = max_steps if max_steps is not None and max_steps > 0 else None
    if by_epochs is None:
        return cut  # steps per epoch are known once training has started
    return min(by_epochs, cut) if cut is not None else by_epochs


@dataclass(frozen=True)
class RunRow:
    """One line of ``tribyol runs``."""

    run: str
    status: str
    steps_done: int | None
    steps_planned: int | None
    method: str
    dataset: str
    checkpoint_step: int | None
    checkpoint_time: float | None  # mtime of checkpoints/last.ckpt


def run_row(run_dir: Path, root: Path, marker: dict[str, Any]) -> RunRow:
    status = _text(marker.get("status"))
    done = _int(marker.get("steps_done"))
    ckpt = run_dir.joinpath(*CHECKPOINT_PATH)
    try:
        saved: float | None = ckpt.stat().st_mtime
    except OSError:
        saved = None
    step = _int(marker.get("checkpoint_step"))
    if step is None and saved is not None and status in SAVED_AT_STEPS_DONE:
        step = done
    name = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    return RunRow(name, status, done, planned_steps(marker), _text(marker.get("method")),
                  _text(marker.get("dataset")), step, saved)


def list_runs(root: str | Path = "runs") -> list[RunRow]:
    """The runs under ``root``; a missing folder is a ``FileNotFoundError`` naming it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"runs folder {root} does not exist; pass the folder your runs are in "
            "(pretrain's --runs-root, default runs)"
        )
    rows = []
    for run_dir in find_runs(root):
        marker = read_run(run_dir)
        if marker is not None:  # None only if it changed since find_runs read it
            rows.append(run_row(run_dir, root, marker))
    return rows


def format_runs(rows: Sequence[RunRow]) -> str:
    """A plain table, one run a line, columns separated by two spaces (no trailing newline)."""

    def number(value: int | None) -> str:
        return "?" if value is None else str(value)

    header = ("RUN", "STATUS", "STEPS", "METHOD", "DATASET", "CKPT_STEP", "CKPT_TIME")
    lines = [header] + [
        (r.run, r.status, f"{number(r.steps_done)}/{number(r.steps_planned)}", r.method, r.dataset,
         "-" if r.checkpoint_time is None else number(r.checkpoint_step),
         "-" if r.checkpoint_time is None
         else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.checkpoint_time)))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def resume_config(run_dir: str | Path, config: str | None = None,
                  overrides: Iterable[str | tuple[str, Any]] = ()) -> Path:
    """The saved ``config.yaml`` that ``--resume RUN_DIR`` continues with.

    ``config`` (a ``--config`` file) and overrides of ``run_dir`` / ``name`` are refused: the
    run folder already says both which config and which directory.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--resume {run_dir}: no such run folder; pass a run directory (`tribyol runs` lists "
            "them), or --resume alone with the flags the run was started with"
        )
    saved = path / CONFIG_NAME
    if not saved.is_file():
        raise FileNotFoundError(
            f"--resume {run_dir}: the folder holds no {CONFIG_NAME}, so it is not a run of "
            "`tribyol pretrain`; pass a run directory (`tribyol runs` lists them)"
        )
    if config is not None:
        raise ConfigError(
            f"--resume {run_dir} continues with the run's own {saved}; drop --config (flags and "
            "--set still override it), or pass --config with --resume alone"
        )
    for item in overrides:
        key = (parse_override(item) if isinstance(item, str) else item)[0]
        if key in ("runs_root", "name"):
            raise ConfigError(
                f"--resume {run_dir} names the run's folder itself; drop the {key} override "
                "(--runs-root / --name)"
            )
    return saved
