"""``tribyol demo``: offline, on real data, about 2 minutes on 2 CPU cores (107 s measured on
an idle machine with Fashion-MNIST; ``tribyol.cli.DEMO_DURATION`` and README.md say the same).

Pre-trains TriBYOL and BYOL briefly with the small ConvNet on Fashion-MNIST (sklearn digits
when Fashion-MNIST is nowhere to be found), probes the frozen features of each and of a
random-init encoder linearly, prints a table and writes a PNG of the loss curves.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tribyol.data import DatasetNotFoundError, load_split
from tribyol.engine.logs import read_metrics
from tribyol.engine.run import pretrain
from tribyol.eval.features import extract_features
from tribyol.eval.linear import linear_probe
from tribyol.eval.sources import load_source
from tribyol.report.plots import plot_loss_curves
from tribyol.resolve import load_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """The demo's budget; every number here is a deliberate, documented choice."""

    pretrain_images: int = 12_000  # Fashion-MNIST train images used for pre-training
    probe_train_images: int = 10_000  # labelled train images for the linear probe
    probe_test_images: int = 5_000  # test images the probe is scored on
    epochs: int = 1
    batch_size: int = 32  # the small-batch regime TriBYOL targets
    width: int = 32  # ConvNet base width (features: 8 * width)
    lr: float = 0.05
    seed: int = 0


QUICK = DemoSettings(pretrain_images=256, probe_train_images=256, probe_test_images=128)


def pick_dataset(root: str) -> str:
    try:
        load_split("fashionmnist", root, "test")
        return "fashionmnist"
    except DatasetNotFoundError as err:
        print(f"Fashion-MNIST not found ({err}).\nFalling back to sklearn's digits (1,797 real "
              "8x8 digits); install Debian's dataset-fashion-mnist for the full demo.")
        return "digits"


def run_demo(runs_root: str = "runs/demo", quick: bool = False, data_root: str = "data") -> list[dict]:
    s = QUICK if quick else DemoSettings()
    dataset = pick_dataset(data_root)
    if dataset == "digits":
        s = DemoSettings(pretrain_images=1437, probe_train_images=1437, probe_test_images=360,
                         epochs=3 if not quick else 1, width=s.width, lr=s.lr)
    common = [
        ("data.dataset", dataset), ("data.root", data_root), ("data.limit", s.pretrain_images),
        ("model.backbone", "convnet"), ("model.width", s.width),
        ("train.batch_size", s.batch_size), ("train.epochs", s.epochs),
        ("train.seed", s.seed), ("optim.lr", s.lr), ("runs_root", runs_root),
        ("train.log_every_steps", 5),
    ]
    rows, curves = [], {}
    for method in ("tribyol", "byol"):
        cfg = load_config(None, [*common, ("method.name", method), ("name", method)])
        start = time.perf_counter()
        out = pretrain(cfg, overwrite=True)
        seconds = time.perf_counter() - start
        images_per_s = json.loads((out / "throughput.json").read_text())["images_per_s"]
        curves[method] = [(r["step"], r["train/loss"]) for r in read_metrics(out) if "train/loss" in r]
        rows.append({"method": method, "batch": s.batch_size, "images_per_s": images_per_s,
                     "pretrain_s": seconds, "source": load_source(out)})
    # The random-init baseline: the same encoder, built with the demo's seed, never trained.
    rows.append({"method": "random init", "batch": None, "images_per_s": None, "pretrain_s": 0.0,
                 "source": load_source(out, random_init=True, seed=s.seed)})

    train = load_split(dataset, data_root, "train")
    test = load_split(dataset, data_root, "test")
    train_idx = torch.arange(min(s.probe_train_images, len(train)))
    test_idx = torch.arange(min(s.probe_test_images, len(test)))
    for row in rows:
        src = row.pop("source")
        args = (src.image_size, src.mean, src.std)
        xtr, ytr = extract_features(src.encoder, train, *args, indices=train_idx, device="cpu")
        xte, yte = extract_features(src.encoder, test, *args, indices=test_idx, device="cpu")
        row["probe_top1"] = linear_probe(xtr, ytr, xte, yte, seed=s.seed).top1

    print(format_table(rows, dataset, s))
    png = plot_loss_curves(curves, Path(runs_root) / "loss_curves.png",
                           f"Pre-training loss (batch {s.batch_size})")
    (Path(runs_root) / "demo_results.json").write_text(json.dumps(rows, indent=2))
    print(f"loss curves: {png}")
    return rows


def format_table(rows: list[dict], dataset: str, s: DemoSettings) -> str:
    lines = [
        f"\nDemo: {dataset}, ConvNet (width {s.width}), {s.pretrain_images} images x "
        f"{s.epochs} epoch(s), batch {s.batch_size}; linear probe on {s.probe_train_images} "
        f"train / {s.probe_test_images} test images\n",
        "| method | batch | images/s | pre-train s | probe top-1 % |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ips = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "-"
        batch = r["batch"] or "-"
        lines.append(f"| {r['method']} | {batch} | {ips} | {r['pretrain_s']:.0f} | "
                     f"{r['probe_top1']:.2f} |")
    return "\n".join(lines)
