"""Packing runs onto one GPU: N concurrent training processes against the same N fits one after
another, combined images/s (issue 24; benchmarks/gpu.sh step 3).

Packed: N worker processes, each given the environment ``tribyol reproduce --jobs N`` gives a
cell (``tribyol.reproduce.packing``: the GPU, cores // N threads, a 1/N memory cap). Each
builds its model, runs ``--warmup`` steps, waits until all N are warm (a file barrier), then
times ``--steps`` steps. Combined images/s = N x batch x steps over the span from the first
timed start to the last timed end. One after another: one worker process (the parent's
threads, as ``--jobs 1``) runs the N fits in turn; combined images/s = the same images over
the sum of the timed spans. Start-up (interpreter, model, data) is outside both windows.
The steps are those of ``benchmarks/throughput.py`` (the library's module in a Lightning fit,
synthetic uint8 images in the dataset's shape).

    python benchmarks/packing.py --jobs 6 --method tribyol --backbone resnet18 --batch 32 \\
        --device cuda --out benchmarks/out/packing.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=6, help="concurrent runs (and fits in turn)")
    p.add_argument("--method", default="tribyol")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dataset", default="cifar10", help="registry name: the images' shape")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--precision", default="auto", help="32, bf16 or auto")
    p.add_argument("--steps", type=int, default=40, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps per run")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", default="default", choices=("default", "off", "on", "auto"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra config override")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds for both phases: 45 %% packed, the rest one after another")
    p.add_argument("--out", default="benchmarks/out/packing.json")
    # worker side
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fits", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sync", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- worker: one process, ``--fits`` timed fits -------------------------------------------------
def worker(args: argparse.Namespace) -> int:
    import logging
    import warnings

    import lightning as L
    import torch
    from throughput import PRECISIONS, make_config, make_trainer, synthetic_images

    from tribyol.config import to_dict
    from tribyol.data.pretrain import data_info_for
    from tribyol.engine.loader import PretrainData
    from tribyol.engine.module import PretrainModule
    from tribyol.engine.trainer import cap_cuda_memory, resolve_precision

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    device = torch.device(args.device)
    targs = argparse.Namespace(dataset=args.dataset, device=device, image_size=args.image_size,
                               no_probe=False, set=args.set, compile=args.compile)
    cfg = make_config(targs, args.method, args.backbone, args.batch,
                      args.precision if args.precision in PRECISIONS else "auto", "base")
    cap = cap_cuda_memory(cfg)
    dataset = synthetic_images(cfg, args.batch * (args.warmup + args.steps + 1), seed=args.index)
    info = data_info_for(cfg, dataset)

    class Window(L.Callback):
        """Waits at the warm-up's end for the others (packed), then times ``--steps`` steps."""

        def __init__(self) -> None:
            self.seen, self.start, self.end, self.waited = 0, None, None, 0.0

        def _sync(self) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def on_train_batch_start(self, *a: Any) -> None:
            if self.seen == args.warmup:
                self._sync()
                if args.sync:
                    self.waited = barrier(Path(args.sync), args.index, args.jobs, 0.45 * args.timeout)
                self.start = time.time()

        def on_train_batch_end(self, *a: Any) -> None:
            self.seen += 1
            if self.seen == args.warmup + args.steps:
                self._sync()
                self.end = time.time()

    fits = []
    workdir = Path(tempfile.mkdtemp(prefix="tribyol-packing-"))
    for _ in range(args.fits):
        window = Window()
        trainer = make_trainer(targs, resolve_precision(cfg), args.warmup + args.steps, [window],
                               cfg.train.log_every_steps, workdir)
        trainer.fit(PretrainModule(to_dict(cfg), vars(info)), datamodule=PretrainData(cfg, dataset))
        fits.append({"start": window.start, "end": window.end, "waited_s": window.waited})
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    Path(args.result).write_text(json.dumps({
        "index": args.index, "fits": fits, "batch": args.batch, "steps": args.steps,
        "memory_cap": cap, "peak_mem_mb": peak, "threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                                               "TRIBYOL_CUDA_MEMORY_FRACTION")}}))
    return 0


def barrier(folder: Path, index: int, jobs: int, timeout: float) -> float:
    """Mark this worker warm, then wait until ``jobs`` are (or ``timeout``); seconds waited."""
    t0 = time.time()
    (folder / f"ready{index}").touch()
    while len(list(folder.glob("ready*"))) < jobs and time.time() - t0 < timeout:
        time.sleep(0.02)
    return time.time() - t0


# -- driver ---------------------------------------------------------------------------------------
def worker_argv(args: argparse.Namespace, result: Path, **extra: Any) -> list[str]:
    argv = [sys.executable, str(HERE / "packing.py"), "--worker", "--result", str(result),
            "--jobs", str(args.jobs), "--method", args.method, "--backbone", args.backbone,
            "--batch", str(args.batch), "--dataset", args.dataset, "--precision", args.precision,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
            "--compile", args.compile, "--timeout", str(args.timeout)]
    if args.image_size:
        argv += ["--image-size", str(args.image_size)]
    for item in args.set or []:
        argv += ["--set", item]
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    return argv


def run_workers(procs: list[tuple[list[str], dict[str, str]]], timeout: float) -> list[int]:
    """Start every worker at once; their exit codes (-9: killed at ``timeout``)."""
    running = [subprocess.Popen(argv, env={**os.environ, **env}) for argv, env in procs]
    deadline, codes = time.time() + timeout, []
    for proc in running:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def combined(results: list[dict[str, Any]], packed: bool) -> dict[str, Any]:
    fits = [(r, f) for r in results for f in r["fits"] if f["start"] and f["end"]]
    if not fits:
        return {"images_per_s": None, "runs": 0}
    images = sum(r["batch"] * r["steps"] for r, _f in fits)
    spans = [f["end"] - f["start"] for _r, f in fits]
    seconds = (max(f["end"] for _r, f in fits) - min(f["start"] for _r, f in fits)) if packed \
        else sum(spans)
    return {"images_per_s": images / seconds, "seconds": seconds, "runs": len(fits),
            "per_run_images_per_s": [r["batch"] * r["steps"] / s
                                     for (r, _f), s in zip(fits, spans, strict=True)]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        return worker(args)
    from tribyol.reproduce.packing import host_cores, plan_slots, visible_gpus

    gpus = visible_gpus() if args.device == "cuda" else []
    slots = plan_slots(args.jobs, gpus, host_cores(), os.environ.get("OMP_NUM_THREADS"))
    work = Path(tempfile.mkdtemp(prefix="tribyol-packing-"))
    (work / "sync").mkdir()
    start = t0 = time.time()
    codes = run_workers([(worker_argv(args, work / f"packed{s.index}.json", index=s.index,
                                      sync=work / "sync"), s.env()) for s in slots],
                        0.45 * args.timeout)
    packed_s = time.time() - t0
    packed = [json.loads(p.read_text()) for p in sorted(work.glob("packed*.json"))]
    t0 = time.time()
    seq_codes = run_workers([(worker_argv(args, work / "sequential.json", fits=args.jobs), {})],
                            args.timeout - (t0 - start))
    sequential = [json.loads(p.read_text()) for p in work.glob("sequential.json")]
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "fits", "index",
                                                                      "sync", "result")},
        "slots": [s.env() for s in slots],
        "packed": {**combined(packed, packed=True), "exit_codes": codes, "wall_s": packed_s,
                   "workers": packed},
        "sequential": {**combined(sequential, packed=False), "exit_codes": seq_codes,
                       "wall_s": time.time() - t0, "workers": sequential},
    }
    a, b = result["packed"]["images_per_s"], result["sequential"]["images_per_s"]
    result["speedup"] = a / b if a and b else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    print(f"{args.method} {args.backbone} b{args.batch} x {args.jobs}: packed {fmt(a)} img/s, "
          f"one after another {fmt(b)} img/s, speed-up "
          f"{'-' if result['speedup'] is None else format(result['speedup'], '.2f')}x -> {out}")
    return 0 if all(c == 0 for c in codes + seq_codes) else 1


if __name__ == "__main__":
    sys.exit(main())
