"""The claim's plan (benchmarks/gpu.sh step 4): how many epochs fit the step's time cap, from
the speed measured earlier in the same call, written into a copy of configs/grids/gpu_claim.yaml
and printed before anything runs.

Speed, best source first: ``--packing`` (benchmarks/packing.py: a TriBYOL b32 run's images/s
while N runs share the GPU, the condition the claim runs in); else ``--throughput`` (one run
alone, benchmarks/throughput.py, eager) over the cost model's packing slowdown; else the H200
figure of BENCHMARKS.md (TriBYOL ResNet-18 b32 eager: 360 img/s alone). BYOL's step is faster
by the measured BYOL/TriBYOL ratio (else 88.9 / 64.4 ms, BENCHMARKS.md). The slowest cell sets
the wall time: TriBYOL's E epochs or BYOL at equal compute's 1.5 E epochs of BYOL steps.

    python benchmarks/claim_plan.py --packing OUT/packing.json --throughput OUT/throughput_eager.json \\
        --budget-s 185 --root WORK/cifar10 --archive .carry/data/cifar10-train.tar.gz \\
        --out WORK/gpu_claim.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
H200_TRIBYOL_IMG_S = 360.0  # BENCHMARKS.md, TriBYOL ResNet-18 b32 base, one run alone
H200_BYOL_OVER_TRIBYOL = 88.9 / 64.4  # BENCHMARKS.md: step ms, TriBYOL over BYOL (b32 base)
UNITS_BYOL_R18_B32 = 12.0  # reproduce.cost: a BYOL ResNet-18 b32 step in BYOL-ConvNet units


def read_json(path: str | None) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):
        return None


def throughput_rows(data: dict[str, Any] | None, batch: int) -> dict[str, float]:
    """method -> images/s of the backbone's ``batch`` rows (base variant) of a throughput JSON."""
    rows = (data or {}).get("rows") or []
    return {r["method"]: r["images_per_s"] for r in rows
            if r.get("batch") == batch and r.get("variant") == "base" and r.get("images_per_s")}


def speeds(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of one TriBYOL and one BYOL cell while ``--jobs`` cells share the device."""
    alone = throughput_rows(read_json(args.throughput), args.batch)
    ratio = (alone["byol"] / alone["tribyol"] if {"byol", "tribyol"} <= alone.keys()
             else H200_BYOL_OVER_TRIBYOL)
    slowdown = args.jobs / min(args.jobs, args.packing_speedup)
    packing = read_json(args.packing)
    packed = (packing or {}).get("packed") or {}
    settings = (packing or {}).get("settings") or {}
    measured_speedup = (packing or {}).get("speedup")
    if packed.get("per_run_images_per_s") and settings.get("method") == "tribyol":
        tri = statistics.median(packed["per_run_images_per_s"])
        source = (f"packing.json: {settings.get('jobs')} packed {settings.get('backbone')} "
                  f"b{settings.get('batch')} TriBYOL runs, median per run")
    elif "tribyol" in alone:
        tri = alone["tribyol"] / slowdown
        source = f"throughput.json alone ({alone['tribyol']:.0f} img/s) / {slowdown:.3g} packing slowdown"
    else:
        tri = H200_TRIBYOL_IMG_S / slowdown
        source = f"BENCHMARKS.md H200 figure (360 img/s alone) / {slowdown:.3g} packing slowdown"
    byol_alone = alone.get("byol")
    return {"tribyol_img_s": tri, "byol_img_s": tri * ratio, "byol_over_tribyol": ratio,
            "source": source, "measured_packing_speedup": measured_speedup,
            "byol_step_seconds": (args.batch / byol_alone / UNITS_BYOL_R18_B32) if byol_alone else None}


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Epochs and images per class for the claim, within ``--budget-s``."""
    speed = speeds(args)
    train_s = (args.budget_s - args.start_s - args.eval_s) * (1 - args.margin)
    # seconds per source image of the slowest cell: TriBYOL's 1, or equal-compute BYOL's 1.5
    per_image = max(1 / speed["tribyol_img_s"], 1.5 / speed["byol_img_s"])
    per_class = args.per_class

    def epoch_s(pc: int) -> float:
        return (pc * args.classes // args.batch) * args.batch * per_image

    epochs = max(1, math.floor(train_s / epoch_s(per_class)))
    if epochs < args.min_epochs:  # fewer images rather than under min_epochs epochs
        epochs = args.min_epochs
        per_class = max(50, int(train_s / epochs / per_image / args.classes) // 50 * 50)
    epochs = min(epochs, args.max_epochs) if args.max_epochs else epochs
    steps = per_class * args.classes // args.batch
    return {**speed, "budget_s": args.budget_s, "train_s": round(train_s, 1), "jobs": args.jobs,
            "per_class": per_class, "images": per_class * args.classes, "steps_per_epoch": steps,
            "epochs": epochs, "tribyol_steps": steps * epochs,
            "expected_train_s": round(epoch_s(per_class) * epochs, 1)}


def has_compile_option() -> bool:
    from dataclasses import fields

    from tribyol.config.schema import TrainConfig

    return "compile" in {f.name for f in fields(TrainConfig)}


def smoke_archive(archive: Path, classes: int = 10, per_class: int = 10) -> Path:
    """A tiny CIFAR-shaped archive: ``train/<class>/<i>.jpg``, seeded random 32 px images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    archive.parent.mkdir(parents=True, exist_ok=True)
    images = archive.with_name(archive.name + ".images")
    for c in range(classes):
        (images / "train" / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / "train" / f"class{c}" / f"{i:04d}.jpg")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(images / "train", arcname="train")
    return archive


def smoke_grid(grid: dict[str, Any]) -> dict[str, Any]:
    """The claim grid at seconds' scale on a CPU: a tiny ConvNet, 2 steps an epoch, one seed."""
    grid["base"].update(model={"backbone": "convnet", "width": 8, "hidden_dim": 16, "proj_dim": 8},
                        data={"dataset": "folder", "image_size": 16})
    grid["base"]["train"].update(batch_size=16, precision="32", accelerator="cpu")
    grid["seeds"] = [0]
    grid["eval"] = {k: v for k, v in grid["eval"].items() if not k.startswith("limit_")}
    grid["eval"].update(force_small_test=True, device="cpu", knn={"k": 5, "temperature": 0.07})
    return grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--template", default=str(ROOT / "configs" / "grids" / "gpu_claim.yaml"))
    p.add_argument("--packing", help="benchmarks/packing.py's JSON")
    p.add_argument("--throughput", help="benchmarks/throughput.py's JSON (eager, alone)")
    p.add_argument("--budget-s", type=float, default=185, help="the claim step's time cap")
    p.add_argument("--start-s", type=float, default=35, help="extraction and start-up, stated")
    p.add_argument("--eval-s", type=float, default=45, help="linear + kNN of the packed cells")
    p.add_argument("--margin", type=float, default=0.1, help="of the training time, kept spare")
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=1000, help="pre-training images per class")
    p.add_argument("--min-epochs", type=int, default=2)
    p.add_argument("--max-epochs", type=int, default=0, help="0: no cap")
    p.add_argument("--packing-speedup", type=float, default=3.0,
                   help="without --packing: the cost model's packing speed-up")
    p.add_argument("--archive", default=".carry/data/cifar10-train.tar.gz")
    p.add_argument("--root", help="where the archive is extracted")
    p.add_argument("--write-smoke-archive", metavar="PATH",
                   help="only write the smoke's tiny archive (10 classes x 10 JPEGs) there")
    p.add_argument("--compile", default="off", choices=("off", "on", "auto"),
                   help="the cells' train.compile (off: six cells compiling at once would spend "
                        "minutes of the cap; the speed planned with is eager)")
    p.add_argument("--smoke", action="store_true", help="a tiny archive and a CPU-sized grid")
    p.add_argument("--out", help="the grid file to write")
    args = p.parse_args(argv)
    if args.write_smoke_archive:
        print(f"smoke archive: {smoke_archive(Path(args.write_smoke_archive))}")
        return 0
    if not args.out or not args.root:
        p.error("--out and --root are needed")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = yaml.safe_load(Path(args.template).read_text())
    if args.smoke:
        args.batch, args.per_class, args.min_epochs, args.max_epochs = 16, 4, 1, 1
        if not Path(args.archive).exists():
            args.archive = str(smoke_archive(out.parent / "smoke-cifar.tar.gz", args.classes))
        grid = smoke_grid(grid)
    made = plan(args)
    grid["data"].update(archive=str(Path(args.archive).resolve()), root=str(Path(args.root).resolve()))
    grid["data"]["pretrain_subset"]["per_class"] = made["per_class"]
    grid["base"]["train"]["epochs"] = made["epochs"]
    if has_compile_option():
        grid["base"]["train"]["compile"] = args.compile
    if made["measured_packing_speedup"]:
        grid["cost"]["packing_speedup"] = max(1.0, round(made["measured_packing_speedup"], 2))
    if made["byol_step_seconds"] and not args.smoke:
        grid["cost"]["byol_step_seconds"] = round(made["byol_step_seconds"], 6)
    out.write_text(yaml.safe_dump(grid, sort_keys=False))
    out.with_name("claim_plan.json").write_text(json.dumps(made, indent=1) + "\n")
    print(f"claim plan: {made['jobs']} cells packed; speed from {made['source']}: TriBYOL "
          f"{made['tribyol_img_s']:.0f} img/s a cell, BYOL {made['byol_img_s']:.0f}; "
          f"{made['train_s']:.0f} s of training in the {args.budget_s:.0f} s cap -> "
          f"{made['images']} images ({made['per_class']} a class), {made['epochs']} epoch(s) "
          f"({made['tribyol_steps']} TriBYOL steps, BYOL at equal compute x1.5), expected "
          f"{made['expected_train_s']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
