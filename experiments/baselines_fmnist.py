"""The poster's baselines on real Fashion-MNIST at batch 32: brief pre-training, linear probe.

Pre-trains every method (tribyol, byol, cross, simsiam, simclr, pirl-jigsaw, pirl-rotation,
supervised from scratch) with the same budget through the one engine (``tribyol.engine.pretrain``,
what ``tribyol pretrain`` runs), adds a random-init encoder, fits a linear probe on the frozen
features (``tribyol.eval``) and prints a Markdown table of probe accuracy and the final
``train/z_std`` (collapse monitor: ~0 collapsed, ~1/sqrt(proj_dim) healthy), also written to
``--out``. CPU-sized by default (a few thousand images, 2 epochs):

    .venv/bin/python experiments/baselines_fmnist.py --out experiments/baselines_fmnist.md
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch

from tribyol.checkpoints import load_encoder
from tribyol.data import get_spec, load_split
from tribyol.data.pretrain import data_info_for, load_pretrain_data
from tribyol.data.sampling import stratified_sample
from tribyol.engine import pretrain
from tribyol.engine.logs import read_metrics
from tribyol.engine.module import build_encoder
from tribyol.eval.features import extract_features
from tribyol.eval.linear import linear_probe
from tribyol.resolve import load_config

METHODS = ["tribyol", "byol", "cross", "simsiam", "simclr", "pirl-jigsaw", "pirl-rotation",
           "supervised"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="data", help="where Fashion-MNIST is (Debian's copy is found)")
    p.add_argument("--runs-root", default="runs/baselines_fmnist", help="parent of the run directories")
    p.add_argument("--out", default="experiments/baselines_fmnist.md", help="Markdown table file")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--limit", type=int, default=2048, help="pre-training images (a seeded, stratified N)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--probe-train", type=int, default=5000, help="labelled train images for the probe")
    p.add_argument("--probe-test", type=int, default=2000, help="test images for the probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every method, e.g. optim.lr=0.05")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming existing runs")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p.parse_args(argv)


def config_for(args: argparse.Namespace, method: str):
    return load_config(None, [
        ("method.name", method),
        ("data.dataset", "fashionmnist"),
        ("data.root", args.data_root),
        ("data.limit", args.limit),
        ("model.backbone", "convnet"),
        ("train.batch_size", args.batch_size),
        ("train.epochs", args.epochs),
        ("train.seed", args.seed),
        ("train.accelerator", "cpu"),
        ("train.devices", 1),
        ("train.progress_bar", False),
        ("train.log_every_steps", 10),
        ("runs_root", args.runs_root),
        ("name", method),
        *args.set,
    ])


def last_z_std(run: Path) -> float:
    values = [r["train/z_std"] for r in read_metrics(run) if "train/z_std" in r]
    return values[-1] if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    methods = [m for m in args.methods.split(",") if m]
    if args.threads > 0:  # one thread per process runs faster on a CPU shared with other jobs
        torch.set_num_threads(args.threads)
    spec = get_spec("fashionmnist")
    train = load_split("fashionmnist", args.data_root, "train")
    test = load_split("fashionmnist", args.data_root, "test")
    train_idx = stratified_sample(train.labels, args.probe_train, seed=args.seed)
    test_idx = stratified_sample(test.labels, args.probe_test, seed=args.seed)

    def probe(encoder: torch.nn.Module) -> float:
        feats = [extract_features(encoder, ds, spec.image_size, spec.mean, spec.std,
                                  device="cpu", indices=idx)
                 for ds, idx in ((train, train_idx), (test, test_idx))]
        (tx, ty), (sx, sy) = feats
        return linear_probe(tx, ty, sx, sy, seed=args.seed, num_classes=spec.num_classes).top1

    rows: list[tuple[str, float, float, float]] = []
    for method in methods:
        cfg = config_for(args, method)
        start = time.time()
        # An existing run is resumed (a finished one returns at once) unless --overwrite.
        resume = (Path(cfg.runs_root) / method / "checkpoints" / "last.ckpt").exists()
        run = pretrain(cfg, resume=resume and not args.overwrite, overwrite=args.overwrite or not resume)
        seconds = time.time() - start
        encoder, _ = load_encoder(run)
        rows.append((method, probe(encoder), last_z_std(run), seconds))
        print(f"{method}: probe {rows[-1][1]:.2f} %, z_std {rows[-1][2]:.4f}, "
              f"{seconds:.0f} s pre-training", file=sys.stderr, flush=True)

    # Random init: the same encoder, seeded as every run is, never trained.
    cfg = config_for(args, "byol")
    torch.manual_seed(args.seed)
    encoder = build_encoder(cfg, data_info_for(cfg, load_pretrain_data(cfg)))
    rows.append(("random init", probe(encoder), float("nan"), 0.0))

    proj_dim = cfg.model.proj_dim
    lines = [
        f"Fashion-MNIST, convnet (width {cfg.model.width}), batch {args.batch_size}, "
        f"{args.epochs} epochs on a seeded, stratified {args.limit} of the training images, "
        f"optim {cfg.optim.name} lr {cfg.optim.lr} ({cfg.optim.schedule}), seed {args.seed}"
        + (f", overrides {' '.join(args.set)}" if args.set else "") + ".",
        f"Linear probe: {len(train_idx)} stratified train images -> {len(test_idx)} stratified "
        f"test images (tribyol.eval.linear.linear_probe, L2 penalty picked on a 10 % split).",
        f"z-std: the last logged train/z_std; healthy ~ 1/sqrt({proj_dim}) = "
        f"{1 / math.sqrt(proj_dim):.3f}, collapsed ~ 0 (supervised: on encoder features).",
        "",
        "| method | probe top-1 (%) | z-std (end) | pre-training (s) |",
        "|---|---|---|---|",
    ]
    for method, acc, z, seconds in rows:
        z_text = "–" if math.isnan(z) else f"{z:.4f}"
        lines.append(f"| {method} | {acc:.2f} | {z_text} | {seconds:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
