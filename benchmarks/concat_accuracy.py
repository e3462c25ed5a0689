"""What ``method.concat_views`` does to accuracy: a short CPU-scale linear-probe comparison.

For BYOL and TriBYOL, pre-trains the same small run twice on Fashion-MNIST, with separate
passes per view (default) and with all views concatenated into one pass (BatchNorm statistics
over N * B samples instead of B), then scores each encoder with a linear probe on frozen
features (``tribyol.eval.features.extract_features`` + ``tribyol.eval.linear.linear_probe``).
Also prints the final training loss and the wall time of each pre-training.

    python benchmarks/concat_accuracy.py --limit 4096 --epochs 2 --batch-size 64

Small runs on a shared CPU: a difference of a point or two is within seed noise; use
``--seeds`` for more than one seed per arm.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from tribyol.data import get_spec, load_split
from tribyol.engine import pretrain
from tribyol.eval.features import extract_features
from tribyol.eval.linear import linear_probe
from tribyol.eval.sources import load_source
from tribyol.resolve import load_config


def last_loss(run_dir: Path) -> float | None:
    paths = sorted(run_dir.glob("logs/**/metrics.csv"), key=lambda q: q.stat().st_mtime)
    if not paths:
        return None
    rows = list(csv.DictReader(paths[-1].open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    return losses[-1] if losses else None


def probe(run_dir: Path, args: argparse.Namespace, random_init: bool = False) -> float:
    src = load_source(run_dir, random_init=random_init, seed=0)
    spec = get_spec("fashionmnist")
    train = load_split("fashionmnist", args.data_root, "train")
    test = load_split("fashionmnist", args.data_root, "test")
    common = dict(image_size=spec.image_size, mean=spec.mean, std=spec.std, device="cpu")
    tx, ty = extract_features(src.encoder, train, indices=torch.arange(args.probe_train), **common)
    sx, sy = extract_features(src.encoder, test, indices=torch.arange(args.probe_test), **common)
    return linear_probe(tx, ty, sx, sy, seed=0).top1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="byol,tribyol")
    p.add_argument("--limit", type=int, default=4096, help="pre-training images")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", default="0")
    p.add_argument("--probe-train", type=int, default=10000, help="labelled train images for the probe")
    p.add_argument("--probe-test", type=int, default=10000, help="test images scored")
    p.add_argument("--data-root", default="data")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs-root", default="benchmarks/out/concat_accuracy")
    p.add_argument("--out", default="benchmarks/out/concat_accuracy.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            for concat in (False, True):
                name = f"{method}_concat{int(concat)}_s{seed}"
                cfg = load_config(None, [
                    ("method.name", method), ("method.concat_views", concat),
                    ("data.dataset", "fashionmnist"), ("data.root", args.data_root),
                    ("data.limit", args.limit), ("model.backbone", "convnet"),
                    ("train.batch_size", args.batch_size), ("train.epochs", args.epochs),
                    ("train.precision", "32"), ("train.accelerator", "cpu"),
                    ("train.devices", 1), ("train.seed", seed), ("train.progress_bar", False),
                    ("train.log_every_steps", 5),
                    ("runs_root", args.runs_root), ("name", name),
                ])
                start = time.perf_counter()
                run_dir = pretrain(cfg, overwrite=True)
                seconds = time.perf_counter() - start
                row = {"method": method, "concat_views": concat, "seed": seed,
                       "pretrain_s": seconds, "final_loss": last_loss(run_dir),
                       "probe_top1": probe(run_dir, args)}
                if method == args.methods.split(",")[0] and not concat:
                    row_rand = {"method": "random-init", "concat_views": None, "seed": seed,
                                "probe_top1": probe(run_dir, args, random_init=True)}
                    rows.append(row_rand)
                    print(json.dumps(row_rand), file=sys.stderr, flush=True)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print("| method | concat_views | seeds | linear probe top-1 % | final train loss | pretrain s |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(r["method"], r["concat_views"]) for r in rows}, key=str)
    for method, concat in keys:
        sel = [r for r in rows if r["method"] == method and r["concat_views"] == concat]
        top1 = statistics.mean(r["probe_top1"] for r in sel)
        loss = [r["final_loss"] for r in sel if r.get("final_loss") is not None]
        secs = [r["pretrain_s"] for r in sel if "pretrain_s" in r]
        print(f"| {method} | {concat} | {len(sel)} | {top1:.2f} | "
              f"{statistics.mean(loss) if loss else float('nan'):.4f} | "
              f"{statistics.mean(secs) if secs else float('nan'):.0f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
