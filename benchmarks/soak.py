"""Soak test: a few hundred real pre-training steps; does host memory grow?

Runs ``tribyol.engine.pretrain`` in this process (the same code path as ``tribyol pretrain``)
with periodic checkpoints, logging and epoch turnovers, and records the resident set size
(RSS, from /proc/self/statm) and the peak RSS (``getrusage``) after every step. Reported:

- ``rss_mb`` at the end of warm-up (step ``--warmup``) and at the last step, and their difference;
- ``peak_rss_mb`` at the end of warm-up and at the last step;
- the least-squares slope of RSS over the steps after warm-up, in MB per 100 steps.

A leak (a tensor kept per step, a growing list of metrics, a checkpoint kept alive) shows as a
steady slope; allocator noise does not. Exit status 1 when the RSS grew by more than
``--max-growth-mb`` after warm-up, so this can gate a release.

Example::

    python benchmarks/soak.py --steps 400 --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class MemoryTrace(L.Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.rows.append((trainer.global_step, rss_mb(), peak_rss_mb()))


def slope_per_100(points: list[tuple[int, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return 100 * sum((x - mx) * (y - my) for x, y in points) / sxx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30, help="steps before the start reading")
    p.add_argument("--method", default="tribyol")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--limit", type=int, default=640, help="images: short epochs, many turnovers")
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--out", help="also write the summary JSON here")
    args = p.parse_args(argv)

    from tribyol.engine import pretrain
    from tribyol.resolve import load_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            ("method.name", args.method), ("data.dataset", args.dataset),
            ("data.limit", args.limit), ("model.backbone", "convnet"), ("model.width", args.width),
            ("train.batch_size", args.batch_size), ("train.epochs", 10_000),
            ("train.max_steps", args.steps), ("train.ckpt_every_steps", args.ckpt_every),
            ("train.log_every_steps", 10), ("train.progress_bar", False),
            ("train.accelerator", args.accelerator), ("train.devices", 1),
            ("train.precision", "32"), ("runs_root", tmp), ("name", "soak"),
        ])
        trace = MemoryTrace()
        start = time.perf_counter()
        pretrain(cfg, extra_callbacks=[trace])
        seconds = time.perf_counter() - start

    rows = trace.rows
    warm = next(r for r in rows if r[0] >= min(args.warmup, rows[-1][0]))
    last = rows[-1]
    after = [(step, rss) for step, rss, _ in rows if step >= warm[0]]
    summary = {
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "steps": last[0],
        "seconds": round(seconds, 1),
        "epochs": last[0] * args.batch_size // args.limit,
        "rss_mb": {"start": round(warm[1], 1), "end": round(last[1], 1),
                   "growth": round(last[1] - warm[1], 1)},
        "peak_rss_mb": {"start": round(warm[2], 1), "end": round(last[2], 1)},
        "rss_slope_mb_per_100_steps": round(slope_per_100(after), 2),
        "start_step": warm[0],
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 1 if summary["rss_mb"]["growth"] > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
