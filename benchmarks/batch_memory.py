"""Peak memory against the batch, measured by the batch finder (issue 23's memory tables).

Every figure is one ``tribyol.engine.plan.measure``: a fresh Python process builds the run's
networks and fits ``--steps`` real training steps (views, forward, backward, optimizer step
with its state, EMA) on synthetic uint8 images, and reports the process's resident-set peak
(CPU) or ``max_memory_allocated`` (CUDA). Two tables:

* ``norm``: TriBYOL, ResNet-18 (small stem) at 64 px: BatchNorm against GroupNorm + weight
  standardisation (``model.norm=gn-ws``), activation checkpointing off and on, batches 8-32;
* ``ratio``: TriBYOL's peak over BYOL's at the same batch, ResNet-18 and ResNet-50 at 32 and
  224 px (batch 16 at 32 px, 8 at 224 px, to stay inside a CPU's minutes).

Each row also records the child's wall seconds: the batch finder's own cost per candidate.
Precision ``32`` (fp32) unless ``--precision``; one thread per child by default.

    OMP_NUM_THREADS=1 python benchmarks/batch_memory.py --out benchmarks/out/batch_memory.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from record import write_result  # noqa: E402

GIB = 2**30


def peak(method: str, backbone: str, size: int, batch: int, overrides: list[tuple[str, Any]],
         precision: str, steps: int) -> dict[str, Any]:
    import torch

    from tribyol.data import TensorImages
    from tribyol.data.pretrain import data_info_for, resolved_config
    from tribyol.engine.plan import measure
    from tribyol.resolve import load_config

    cfg = load_config(None, [("method.name", method), ("model.backbone", backbone),
                             ("data.dataset", "folder"), ("data.image_size", size),
                             ("train.precision", precision), ("train.accelerator", "cpu"),
                             *overrides])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (max(64, batch), 3, size, size), dtype=torch.uint8, generator=g)
    data = TensorImages(images, torch.randint(0, 10, (len(images),), generator=g))
    info = data_info_for(cfg, data)
    start = time.perf_counter()
    m = measure(resolved_config(cfg, info), info, data, batch, steps)
    return {"method": method, "backbone": backbone, "image_size": size, "batch": batch,
            "overrides": dict(overrides), "peak_gib": None if m.peak is None else m.peak / GIB,
            "note": m.note, "child_s": time.perf_counter() - start}


def norm_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for norm in ("bn", "gn-ws"):
        for ckpt in (False, True):
            for batch in (8, 16, 32):
                over = [("model.norm", norm), ("model.activation_checkpointing", ckpt)]
                rows.append(peak("tribyol", "resnet18", 64, batch, over, args.precision, args.steps))
                print(f"norm {norm:5s} ckpt {ckpt!s:5s} b{batch:<3d} "
                      f"{rows[-1]['peak_gib']:.3f} GiB ({rows[-1]['child_s']:.0f} s)", file=sys.stderr)
    return rows


def ratio_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for backbone in ("resnet18", "resnet50"):
        for size, batch in ((32, 16), (224, 8)):
            for method in ("byol", "tribyol"):
                rows.append(peak(method, backbone, size, batch, [], args.precision, args.steps))
                print(f"{method:8s} {backbone} {size} px b{batch}: {rows[-1]['peak_gib']:.3f} GiB "
                      f"({rows[-1]['child_s']:.0f} s)", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="norm,ratio")
    p.add_argument("--precision", default="32")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    tables = args.tables.split(",")
    result = {"steps": args.steps, "precision": args.precision}
    if "norm" in tables:
        result["norm"] = norm_table(args)
    if "ratio" in tables:
        result["ratio"] = ratio_table(args)
    write_result(result, args.out, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
