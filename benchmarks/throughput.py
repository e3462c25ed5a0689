"""Pre-training throughput: source images/s and peak memory of whole training steps.

A step is what ``tribyol pretrain`` runs: batch fetch, batched augmentation, forward, backward,
optimizer, EMA update and logging, driven by a Lightning ``Trainer(max_steps=...)`` around the
library's own ``PretrainModule``. Nothing of the step is reimplemented here.

Configurations that share (backbone, batch, precision) form a group; inside a group the
configurations (methods x variants) take turns for ``--rounds`` rounds, each round a short fit of
``--warmup + --steps`` steps, and the timed step times of all rounds are pooled into a median.
Alternating keeps the ratios inside a group fair on a machine whose load changes while it runs.

Examples::

    # the targets' corner (CPU, b32, convnet and ResNet-18, Fashion-MNIST shapes)
    python benchmarks/throughput.py --dataset fashionmnist --backbones convnet,resnet18 \\
        --batches 32 --precisions 32 --variants base,cl,concat

    # the whole grid (long at ResNet-50 on 2 CPU cores)
    python benchmarks/throughput.py

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the fit; on CPU the peak
resident set size sampled every 5 ms during the fit minus the resident size just before it
(activations, gradients, optimizer state; weights built before the fit are not counted).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tribyol.config import RunConfig, to_dict
from tribyol.data import TensorImages, get_spec
from tribyol.data.pretrain import data_info_for, load_pretrain_data
from tribyol.engine.loader import PretrainData
from tribyol.engine.module import PretrainModule
from tribyol.engine.trainer import resolve_precision
from tribyol.errors import ConfigError
from tribyol.methods import METHODS
from tribyol.resolve import load_config

# Named variants: extra config overrides measured side by side with the plain config.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},  # the library's defaults
    "nchw": {"model.channels_last": False},  # `base` before channels_last became the default
    "cl": {"model.channels_last": True},
    "concat": {"method.concat_views": True},
    "cl+concat": {"model.channels_last": True, "method.concat_views": True},
    "offdevice": {"data.on_device": False},
    # TriBYOL only (skipped for methods without the option): cost against the number of views,
    # and the one-directional loss (online pass on the anchor only).
    "views4": {"method.num_views": 4},
    "views5": {"method.num_views": 5},
    "onedir": {"method.symmetric": False},
    # Issue 23: the memory levers' compute cost, side by side with base.
    "ckpt": {"model.activation_checkpointing": True},
    "gnws": {"model.norm": "gn-ws"},
}
_FITS = itertools.count()
PRECISIONS = {"32": "32-true", "fp32": "32-true", "bf16": "bf16-mixed", "auto": "auto"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class RSSSampler:
    """Peak resident set size (bytes) of this process while the context is open."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak, self.start = every_s, 0, 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * self._page
        except OSError:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every_s)

    def __enter__(self) -> RSSSampler:
        self.start = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class StepTimer(L.Callback):
    """Wall time between consecutive ends of training steps (the device synchronised), and this
    process's CPU time over the same spans: on a CPU shared with other jobs, CPU seconds per
    step measure the work of a step almost independently of how much of the CPU it got."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.ends:
            self.ends.append(self._now())  # the first step's start
            self.cpu_ends.append(time.process_time())

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.ends.append(self._now())
        self.cpu_ends.append(time.process_time())

    def step_times(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.ends)]

    def cpu_times(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.cpu_ends)]


def is_kernel(event: Any) -> bool:
    """A GPU kernel/copy, not a range annotation: Lightning runs forward and backward inside
    ``optimizer.step(closure)``, so the "Optimizer.step" annotation spans the whole step."""
    if event.device_type != torch.autograd.DeviceType.CUDA:
        return False
    if getattr(event, "is_user_annotation", False):
        return False
    return "#" not in event.name and not event.name.startswith(("ProfilerStep", "Optimizer."))


class GpuBusy(L.Callback):
    """GPU kernel time per step, over ``steps`` steps under torch.profiler.

    The busy fraction is this kernel time over the median step time measured *without* the
    profiler (the profiler's own CPU overhead would otherwise inflate the wall time).
    """

    def __init__(self, start_step: int, steps: int) -> None:
        self.start_step, self.steps = start_step, steps
        self.seen = 0
        self.kernel_ms: float | None = None  # merged kernel intervals, ms per step
        self.top_kernels: list[tuple[str, float]] = []  # (name, ms per step), largest first
        self.launches: float | None = None  # kernels launched per step
        self._prof: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seen == self.start_step:
            from torch.profiler import ProfilerActivity, profile

            torch.cuda.synchronize()
            self._prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self._prof.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.seen += 1
        if self._prof is not None and self.seen == self.start_step + self.steps:
            torch.cuda.synchronize()
            self._prof.__exit__(None, None, None)
            kernels = [e for e in self._prof.events() if is_kernel(e)]
            self._prof = None
            # Merge kernel intervals so that overlapping kernels are not counted twice.
            spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
            busy_us, cur_s, cur_e = 0.0, 0.0, None
            for s, e in spans:
                if cur_e is None or s > cur_e:
                    busy_us += 0.0 if cur_e is None else cur_e - cur_s
                    cur_s, cur_e = s, e
                else:
                    cur_e = max(cur_e, e)
            busy_us += 0.0 if cur_e is None else cur_e - cur_s
            self.kernel_ms = busy_us / 1e3 / self.steps
            per_name: dict[str, float] = {}
            for e in kernels:
                per_name[e.name] = per_name.get(e.name, 0.0) + e.time_range.elapsed_us()
            top = sorted(per_name.items(), key=lambda kv: -kv[1])[:12]
            self.top_kernels = [(name[:90], us / 1e3 / self.steps) for name, us in top]
            self.launches = len(kernels) / self.steps


@dataclass
class Case:
    method: str
    backbone: str
    batch: int
    precision: str
    variant: str
    cfg: RunConfig
    module: PretrainModule | None = None
    times: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)  # one per round, for paired ratios
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per step
    peak_mem_mb: float = 0.0
    kernel_ms: float | None = None
    launches: float | None = None
    top_kernels: list[tuple[str, float]] = field(default_factory=list)
    warmup_times: list[float] = field(default_factory=list)  # the first round's: compile time
    error: str | None = None


def synthetic_images(cfg: RunConfig, n: int, seed: int = 0) -> TensorImages:
    """Random uint8 images in the dataset's real shape (no files needed)."""
    spec = get_spec(cfg.data.dataset)
    size = cfg.data.image_size or spec.image_size
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, spec.channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, max(1, spec.num_classes), (n,), generator=g)
    return TensorImages(images, labels)


def make_config(args: argparse.Namespace, method: str, backbone: str, batch: int,
                precision: str, variant: str) -> RunConfig:
    overrides: list[tuple[str, Any] | str] = [
        ("method.name", method),
        ("data.dataset", args.dataset),
        ("model.backbone", backbone),
        ("train.batch_size", batch),
        ("train.precision", PRECISIONS[precision]),
        ("train.accelerator", "gpu" if args.device.type == "cuda" else "cpu"),
        ("train.devices", 1),
        ("train.progress_bar", False),
        ("train.epochs", 1),
    ]
    if args.image_size:
        overrides.append(("data.image_size", args.image_size))
    if args.no_probe:
        overrides.append(("train.online_probe", False))
    overrides += list(VARIANTS[variant].items())
    overrides += compile_override(args.compile)
    overrides += args.set or []
    return load_config(None, overrides)


def has_compile_option() -> bool:
    from dataclasses import fields

    from tribyol.config.schema import TrainConfig

    return "compile" in {f.name for f in fields(TrainConfig)}


def compile_override(mode: str) -> list[tuple[str, Any]]:
    """``--compile off|on|auto``: ``train.compile``; before that option existed, every step was
    eager, so ``off`` then changes nothing and ``on`` is refused."""
    if mode == "default":
        return []
    if not has_compile_option():
        if mode == "off":
            return []
        raise SystemExit(f"--compile {mode}: this version has no train.compile option")
    return [("train.compile", mode)]


def make_trainer(args: argparse.Namespace, precision: str, steps: int,
                 callbacks: list[L.Callback], log_every: int, workdir: Path) -> L.Trainer:
    """The Trainer every timed fit uses (also the peer comparison's), logging to CSV."""
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="gpu" if args.device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        # Logging is part of the step; a fresh folder per fit.
        logger=CSVLogger(str(workdir), name="", version=f"fit{next(_FITS)}"),
        log_every_n_steps=log_every,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        benchmark=getattr(args, "cudnn_benchmark", False) or None,
    )


def fit_round(case: Case, dataset: Any, args: argparse.Namespace, workdir: Path) -> None:
    """One short fit of ``warmup + steps`` steps; appends the timed step times to ``case``."""
    cfg = case.cfg
    if case.module is None:
        info = data_info_for(cfg, dataset)
        case.module = PretrainModule(to_dict(cfg), vars(info))
    timer = StepTimer(args.device)
    callbacks: list[L.Callback] = [timer]
    busy = None
    if args.gpu_busy and args.device.type == "cuda" and case.kernel_ms is None:
        busy = GpuBusy(args.warmup, args.gpu_busy)
        callbacks.append(busy)
    steps = args.warmup + args.steps + (args.gpu_busy if busy else 0)
    trainer = make_trainer(args, resolve_precision(cfg), steps, callbacks, cfg.train.log_every_steps,
                           workdir)
    if args.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(args.device)
    with RSSSampler() as rss:
        trainer.fit(case.module, datamodule=PretrainData(cfg, dataset))
    record_times(case, timer, args)
    if args.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(args.device) / 2**20
    else:
        peak = (rss.peak - rss.start) / 2**20
    case.peak_mem_mb = max(case.peak_mem_mb, peak)
    if busy is not None and busy.kernel_ms is not None:
        case.kernel_ms, case.launches = busy.kernel_ms, busy.launches
        case.top_kernels = busy.top_kernels
        if args.show_kernels:
            print(f"   {case.method}/{case.variant} b{case.batch}: kernels {busy.kernel_ms:.2f} ms "
                  f"and {busy.launches:.0f} launches per step; top kernels, ms per step:",
                  file=sys.stderr)
            for name, ms in busy.top_kernels:
                print(f"      {ms:8.3f}  {name}", file=sys.stderr)


def record_times(case: Case, timer: StepTimer, args: argparse.Namespace) -> None:
    window = slice(args.warmup, args.warmup + args.steps)
    times = timer.step_times()[window]
    if not case.warmup_times:
        case.warmup_times = timer.step_times()[: args.warmup]
    case.times.extend(times)
    case.cpu_times.extend(timer.cpu_times()[window])
    if times:
        case.round_medians.append(statistics.median(times))


def cpu_ratio(a: Case, b: Case) -> float | None:
    """Ratio of median CPU seconds per step (meaningful with one intra-op thread on CPU)."""
    if not a.cpu_times or not b.cpu_times:
        return None
    return statistics.median(a.cpu_times) / statistics.median(b.cpu_times)


def paired_ratio(a: Case, b: Case) -> float | None:
    """Median over rounds of a's round median over b's: both measured minutes apart at most,
    so a load change between rounds cancels (the pooled medians do not cancel it)."""
    pairs = [x / y for x, y in zip(a.round_medians, b.round_medians, strict=False) if y > 0]
    return statistics.median(pairs) if pairs else None


def summarise(cases: list[Case]) -> list[dict[str, Any]]:
    rows = []
    ref: dict[tuple, float] = {}
    ref_case: dict[tuple, Case] = {}
    for c in cases:
        if c.times and c.method == "byol" and c.variant == "base":
            ref[(c.backbone, c.batch, c.precision)] = statistics.median(c.times)
            ref_case[(c.backbone, c.batch, c.precision)] = c
    for c in cases:
        row: dict[str, Any] = {
            "method": c.method, "backbone": c.backbone, "batch": c.batch,
            "precision": c.precision, "variant": c.variant,
            "compile": getattr(c.cfg.train, "compile", "absent") if c.cfg is not None else None,
            "warmup_step_times_s": c.warmup_times,
        }
        if c.times:
            med = statistics.median(c.times)
            row.update(
                ms_per_step=1e3 * med,
                images_per_s=c.batch / med,
                steps_timed=len(c.times),
                iqr_ms=1e3 * (statistics.quantiles(c.times, n=4)[2]
                              - statistics.quantiles(c.times, n=4)[0]) if len(c.times) > 1 else 0.0,
                peak_mem_mb=c.peak_mem_mb,
                step_times_s=c.times,
            )
            base = ref.get((c.backbone, c.batch, c.precision))
            row["cost_vs_byol_pooled"] = med / base if base else None
            base_case = ref_case.get((c.backbone, c.batch, c.precision))
            row["cost_vs_byol"] = paired_ratio(c, base_case) if base_case else None
            row["round_medians_s"] = c.round_medians
            if args_device_is_cpu(c):
                cpu_med = statistics.median(c.cpu_times)
                row["cpu_ms_per_step"] = 1e3 * cpu_med
                row["images_per_cpu_s"] = c.batch / cpu_med
                row["cpu_cost_vs_byol"] = cpu_ratio(c, base_case) if base_case else None
                row["cpu_times_s"] = c.cpu_times
            if c.kernel_ms is not None:
                row["gpu_kernel_ms_per_step"] = c.kernel_ms
                row["gpu_launches_per_step"] = c.launches
                row["gpu_busy"] = c.kernel_ms / (1e3 * med)
                row["top_kernels_ms_per_step"] = c.top_kernels
        if c.error:
            row["error"] = c.error
        rows.append(row)
    return rows


def args_device_is_cpu(c: Case) -> bool:
    return bool(c.cpu_times) and c.cfg is not None and c.cfg.train.accelerator == "cpu"


def print_table(rows: list[dict[str, Any]], file: Any = sys.stdout) -> None:
    if any("cpu_ms_per_step" in r for r in rows):
        print_cpu_table(rows, file)
        return
    head = ("method", "backbone", "batch", "prec", "variant", "img/s", "ms/step", "IQR ms",
            "cost/BYOL (paired)", "peak MB", "kernel ms", "GPU busy")
    print("| " + " | ".join(head) + " |", file=file)
    print("|" + "---|" * len(head), file=file)
    for r in rows:
        if "images_per_s" not in r:
            print(f"| {r['method']} | {r['backbone']} | {r['batch']} | {r['precision']} | "
                  f"{r['variant']} | error: {r.get('error', '')[:60]} |" + " |" * 6, file=file)
            continue
        cost = f"{r['cost_vs_byol']:.3f}" if r.get("cost_vs_byol") else "-"
        busy = f"{100 * r['gpu_busy']:.0f} %" if r.get("gpu_busy") is not None else "-"
        kms = f"{r['gpu_kernel_ms_per_step']:.1f}" if r.get("gpu_kernel_ms_per_step") else "-"
        print(f"| {r['method']} | {r['backbone']} | {r['batch']} | {r['precision']} | "
              f"{r['variant']} | {r['images_per_s']:.1f} | {r['ms_per_step']:.1f} | "
              f"{r['iqr_ms']:.1f} | {cost} | {r['peak_mem_mb']:.0f} | {kms} | {busy} |", file=file)


def print_cpu_table(rows: list[dict[str, Any]], file: Any = sys.stdout) -> None:
    """CPU runs: wall figures and CPU-time figures (the latter robust to a shared machine)."""
    head = ("method", "backbone", "batch", "prec", "variant", "img/s (wall)", "cost/BYOL (wall, paired)",
            "img per CPU-s", "cost/BYOL (CPU time)", "peak MB")
    print("| " + " | ".join(head) + " |", file=file)
    print("|" + "---|" * len(head), file=file)
    for r in rows:
        if "images_per_s" not in r:
            print(f"| {r['method']} | {r['backbone']} | {r['batch']} | {r['precision']} | "
                  f"{r['variant']} | error: {r.get('error', '')[:60]} |" + " |" * 4, file=file)
            continue

        def f(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            return format(r[key], fmt) if r.get(key) is not None else "-"

        print(f"| {r['method']} | {r['backbone']} | {r['batch']} | {r['precision']} | {r['variant']} "
              f"| {f('images_per_s', '.1f')} | {f('cost_vs_byol', '.3f')} "
              f"| {f('images_per_cpu_s', '.1f')} | {f('cpu_cost_vs_byol', '.3f')} "
              f"| {f('peak_mem_mb', '.0f')} |", file=file)


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="all", help="comma list, or 'all' (every registered)")
    p.add_argument("--backbones", default="convnet,resnet18,resnet50")
    p.add_argument("--batches", default="32,64,128")
    p.add_argument("--precisions", default="32,bf16", help="32, bf16, auto")
    p.add_argument("--variants", default="base",
                   help=f"comma list of {', '.join(VARIANTS)} (extra configs timed side by side)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each round")
    p.add_argument("--rounds", type=int, default=2, help="alternation rounds per group")
    p.add_argument("--dataset", default="cifar10", help="registry name: its shape and statistics")
    p.add_argument("--real-data", action="store_true",
                   help="read the dataset's files (data.root) instead of synthetic uint8 images")
    p.add_argument("--data-root", default="data")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--no-probe", action="store_true", help="turn the online linear probe off")
    p.add_argument("--gpu-busy", type=int, default=0,
                   help="CUDA: profile this many extra steps once per config for the busy fraction")
    p.add_argument("--show-kernels", action="store_true", help="with --gpu-busy: print top kernels")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN time its algorithms per shape (Trainer(benchmark=True))")
    p.add_argument("--compile", default="default", choices=("default", "off", "on", "auto"),
                   help="train.compile of every config (default: the config's own)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra config override")
    p.add_argument("--out", default="benchmarks/out/throughput.json")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(args.device)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Lightning's per-fit notices (tips, "fit stopped", few-batches) would bury the tables.
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = sorted(METHODS) if args.methods == "all" else csv_list(args.methods)
    variants = csv_list(args.variants)
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    started = time.time()
    load_start = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="tribyol-bench-"))
    all_cases: list[Case] = []
    for backbone, batch, precision in itertools.product(
        csv_list(args.backbones), [int(b) for b in csv_list(args.batches)], csv_list(args.precisions)
    ):
        group = []
        for m, v in itertools.product(methods, variants):
            try:
                cfg = make_config(args, m, backbone, batch, precision, v)
            except ConfigError as err:  # e.g. concat_views on a method without that option
                print(f"   skip {m}/{v}: {err}", file=sys.stderr)
                continue
            group.append(Case(m, backbone, batch, precision, v, cfg))
        if not group:
            continue
        n = batch * (args.warmup + args.steps + args.gpu_busy + 1)
        cfg0 = group[0].cfg
        if args.real_data:
            cfg0.data.root, cfg0.data.limit = args.data_root, max(n, cfg0.data.limit or 0)
            dataset = load_pretrain_data(cfg0)
        else:
            dataset = synthetic_images(cfg0, n)
        print(f"== {backbone} b{batch} {precision}: {len(group)} configs x {args.rounds} rounds",
              file=sys.stderr, flush=True)
        for _ in range(args.rounds):
            for case in group:
                if case.error:
                    continue
                try:
                    fit_round(case, dataset, args, workdir)
                except Exception as err:  # one failing config must not stop the grid
                    case.error = f"{type(err).__name__}: {err}"
                    print(f"   {case.method}/{case.variant}: {case.error}", file=sys.stderr)
        for case in group:
            case.module = None  # free the weights before the next group
        if args.device.type == "cuda":
            torch.cuda.empty_cache()
        print_table(summarise(group), file=sys.stderr)
        all_cases.extend(group)
        # after each group, so that a run stopped by a time cap keeps what it measured
        write_result(args, summarise(all_cases), started, load_start, complete=False)
    rows = summarise(all_cases)
    print_table(rows)
    write_result(args, rows, started, load_start, complete=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def write_result(args: argparse.Namespace, rows: list[dict[str, Any]], started: float,
                 load_start: float | None, complete: bool) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_info(args.device),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "seconds": time.time() - started,
        "complete": complete,
        "settings": {k: (str(v) if isinstance(v, torch.device) else v) for k, v in vars(args).items()},
        "rows": rows,
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
