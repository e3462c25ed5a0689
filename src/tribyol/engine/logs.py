"""A run's metric logs: one CSV folder per attempt (``logs/attempt<N>``) and TensorBoard
(``tb/``), and reading the CSV rows back."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

log = logging.getLogger(__name__)


class AttemptCSVLogger(CSVLogger):
    """One CSV folder per attempt (Lightning's would wipe an existing one on resume), counted
    when the first row is written, so a replaced run's old attempts do not count. At module
    level: ddp_spawn pickles the trainer's loggers."""

    def _get_next_version(self) -> str:  # type: ignore[override]
        return f"attempt{len(list(Path(self.root_dir).glob('attempt*')))}"


def run_loggers(run_dir: Path) -> list[Logger]:
    """CSV, and TensorBoard where it can be imported."""
    loggers: list[Logger] = [AttemptCSVLogger(str(run_dir), name="logs")]
    try:
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tb"))
    except ModuleNotFoundError:  # tensorboard is a dependency, but keep training without it
        log.warning("tensorboard is not installed; logging to CSV only")
    return loggers


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """All rows of a run's CSV logs, every attempt (resume) in order; empty cells dropped."""
    import csv

    rows: list[dict[str, float]] = []
    attempts = sorted(Path(run_dir, "logs").glob("attempt*"), key=lambda p: int(p.name[7:]))
    for folder in attempts:
        path = folder / "metrics.csv"
        if path.exists():
            with open(path, newline="") as f:
                rows += [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return rows
