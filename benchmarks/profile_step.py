"""Where a training step's time goes: torch.profiler over a few steps of a real Lightning fit.

Splits the step into the engine's named ranges (``tribyol.views`` = batched augmentation,
``tribyol.method_forward``, ``tribyol.ema``), the autograd backward, and the rest (optimizer,
online probe, logging, Lightning's loop), then lists the most expensive operators.

    python benchmarks/profile_step.py --method tribyol --backbone convnet --batch 32 \\
        --dataset fashionmnist --real-data --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402

from tribyol.config import to_dict  # noqa: E402
from tribyol.data.pretrain import data_info_for, load_pretrain_data  # noqa: E402
from tribyol.engine.loader import PretrainData  # noqa: E402
from tribyol.engine.module import PretrainModule  # noqa: E402
from tribyol.engine.trainer import resolve_precision  # noqa: E402

RANGES = ("tribyol.augment", "tribyol.method_forward", "tribyol.ema")


class Profiled(L.Callback):
    def __init__(self, start: int, steps: int, activities: list) -> None:
        self.start, self.steps, self.activities = start, steps, activities
        self.seen, self.prof, self.wall = 0, None, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seen == self.start:
            self.prof = profile(activities=self.activities)
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.seen += 1
        if self.prof is not None and self.seen == self.start + self.steps:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="tribyol")
    p.add_argument("--backbone", default="convnet")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", default="32")
    p.add_argument("--variant", default="base", choices=sorted(tp.VARIANTS))
    p.add_argument("--dataset", default="fashionmnist")
    p.add_argument("--real-data", action="store_true")
    p.add_argument("--data-root", default="data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=15)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    args.image_size, args.no_probe, args.set, args.cudnn_benchmark = None, False, None, False
    cfg = tp.make_config(args, args.method, args.backbone, args.batch, args.precision, args.variant)
    n = args.batch * (args.warmup + args.steps + 1)
    if args.real_data:
        cfg.data.root, cfg.data.limit = args.data_root, n
        dataset = load_pretrain_data(cfg)
    else:
        dataset = tp.synthetic_images(cfg, n)
    module = PretrainModule(to_dict(cfg), vars(data_info_for(cfg, dataset)))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.type == "cuda" else [])
    cb = Profiled(args.warmup, args.steps, activities)
    trainer = tp.make_trainer(args, resolve_precision(cfg), args.warmup + args.steps, [cb],
                              cfg.train.log_every_steps, Path(tempfile.mkdtemp(prefix="tribyol-prof-")))
    trainer.fit(module, datamodule=PretrainData(cfg, dataset))
    events = cb.prof.events()
    step_ms = 1e3 * cb.wall / args.steps
    share: dict[str, float] = {}
    for name in RANGES:
        share[name] = sum(e.cpu_time_total for e in events if e.name == name) / 1e3 / args.steps
    share["backward (autograd)"] = sum(
        e.cpu_time_total for e in events
        if e.name.startswith("autograd::engine::evaluate_function")
    ) / 1e3 / args.steps
    share["rest: optimizer, probe, logging, Lightning"] = step_ms - sum(share.values())
    print(f"{args.method} {args.backbone} b{args.batch} {args.precision} {args.variant}: "
          f"{step_ms:.1f} ms per step under the profiler ({args.steps} steps)")
    print("| part | ms/step | share |")
    print("|---|---|---|")
    for name, ms in share.items():
        print(f"| {name} | {ms:.1f} | {100 * ms / step_ms:.1f} % |")
    print()
    print(cb.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
