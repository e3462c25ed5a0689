"""Peer comparison in one run: our BYOL and TriBYOL against BYOL built from lightly's modules.

Run it with the venv from ``benchmarks/setup_lightly.sh`` (lightly from PyPI on top of the main
venv's torch)::

    benchmarks/.lightly-venv/bin/python benchmarks/peer_lightly.py \\
        --backbones convnet,resnet18 --batches 32

Same work on both sides: the same backbone (``tribyol.nets.build_backbone``), projector and
predictor of hidden size 512 and output 128, batch, precision, optimizer (SGD, lr 0.03,
momentum 0.9, wd 4e-4), EMA tau 0.996, data (the same uint8 images) and Lightning Trainer;
symmetric BYOL on both sides, i.e. two online forward+backward passes and two target forward
passes per step. Our online probe is off here (lightly's BYOL has none).

What differs is how each library is meant to be used: lightly's BYOL is its
``BYOLProjectionHead``/``BYOLPredictionHead``, ``NegativeCosineSimilarity``,
``deactivate_requires_grad``/``update_momentum`` and its ``BYOLTransform`` (per-sample
PIL/torchvision transforms in a ``DataLoader``, the honest peer setup), ours is the library's
``PretrainModule`` with batched augmentation on the device. Lightly's views use our view
settings for the dataset (crop scale, no blur at <= 32 px, solarize 0 / 0.2, flip 0.5), so
both sides draw the same distribution of views.

Configurations alternate inside each (backbone, batch) group for ``--rounds`` rounds; step
times are pooled into medians and reported as ratios measured side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402  (the shared timing harness beside this file)

from tribyol.config import RunConfig  # noqa: E402
from tribyol.data import TensorImages, get_spec  # noqa: E402
from tribyol.data.pretrain import load_pretrain_data  # noqa: E402
from tribyol.engine.trainer import resolve_precision  # noqa: E402
from tribyol.nets import build_backbone  # noqa: E402

try:
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms.byol_transform import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
    )
except ImportError as err:  # pragma: no cover - depends on the side venv
    raise SystemExit(
        f"lightly is not importable ({err}); run bash benchmarks/setup_lightly.sh and use "
        "benchmarks/.lightly-venv/bin/python"
    ) from None


class LightlyBYOL(L.LightningModule):
    """BYOL as lightly's own BYOL example builds it, with our backbone and head sizes."""

    def __init__(self, backbone: nn.Module, hidden: int, out: int, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(backbone.out_dim, hidden, out)
        self.prediction_head = BYOLPredictionHead(out, hidden, out)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
        self.tau = float(cfg.method.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        update_momentum(self.backbone, self.backbone_momentum, m=self.tau)
        update_momentum(self.projection_head, self.projection_head_momentum, m=self.tau)
        (x0, x1) = batch[0]
        p0, p1 = self.forward(x0), self.forward(x1)
        with torch.no_grad():
            z0, z1 = self.forward_momentum(x0), self.forward_momentum(x1)
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        self.log("train_loss_ssl", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.SGD(self.parameters(), lr=o.lr, momentum=o.momentum,
                               weight_decay=o.weight_decay)


class PILImages(Dataset):
    """The same uint8 images, handed out one PIL image at a time (lightly's input)."""

    def __init__(self, images: TensorImages, transform: Any) -> None:
        self.images, self.labels = images.images.cpu(), images.labels.cpu()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        x = self.images[i]
        array = x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
        return self.transform(Image.fromarray(array)), int(self.labels[i])


def lightly_transform(cfg: RunConfig, size: int, mean: tuple, std: tuple) -> BYOLTransform:
    """lightly's BYOL transform with our per-dataset view settings (same view distribution)."""
    v = cfg.augment
    blur = v.blur_p if v.blur_p is not None else ([1.0, 0.1] if size > v.blur_min_size else [0.0])
    common = dict(input_size=size, cj_prob=v.jitter_p, cj_bright=v.brightness,
                  cj_contrast=v.contrast, cj_sat=v.saturation, cj_hue=v.hue,
                  min_scale=v.crop_scale[0], random_gray_scale=v.grayscale_p, hf_prob=v.flip_p,
                  normalize={"mean": list(mean), "std": list(std)})
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(
            gaussian_blur=blur[0 % len(blur)], solarization_prob=v.solarize_p[0], **common),
        view_2_transform=BYOLView2Transform(
            gaussian_blur=blur[1 % len(blur)], solarization_prob=v.solarize_p[1 % len(v.solarize_p)],
            **common),
    )


def fit_lightly(case: tp.Case, dataset: TensorImages, workers: int, args: argparse.Namespace,
                workdir: Path) -> None:
    cfg = case.cfg
    spec = get_spec(cfg.data.dataset)
    size = cfg.data.image_size or spec.image_size
    if case.module is None:
        backbone = build_backbone(cfg.model.backbone, dataset.channels, size, cfg.model.small_stem,
                                  cfg.model.width)
        case.module = LightlyBYOL(backbone, cfg.model.hidden_dim, cfg.model.proj_dim, cfg)
    mean, std = spec.mean, spec.std
    loader = DataLoader(
        PILImages(dataset, lightly_transform(cfg, size, mean, std)),
        batch_size=case.batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=False,
    )
    timer = tp.StepTimer(args.device)
    trainer = tp.make_trainer(args, resolve_precision(cfg), args.warmup + args.steps, [timer],
                              cfg.train.log_every_steps, workdir)
    with tp.RSSSampler() as rss:
        trainer.fit(case.module, train_dataloaders=loader)
    tp.record_times(case, timer, args)
    case.peak_mem_mb = max(case.peak_mem_mb, (rss.peak - rss.start) / 2**20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="convnet,resnet18")
    p.add_argument("--batches", default="32")
    p.add_argument("--precision", default="32", help="32 or bf16 (both sides)")
    p.add_argument("--dataset", default="fashionmnist")
    p.add_argument("--synthetic", action="store_true", help="random uint8 images, not the files")
    p.add_argument("--data-root", default="data")
    p.add_argument("--lightly-workers", default="0,2",
                   help="DataLoader workers for lightly's per-sample transforms (comma list)")
    p.add_argument("--variants", default="base", help="our variants too, e.g. base,cl")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmarks/out/peer_lightly.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Options the shared harness reads.
    args.device, args.gpu_busy, args.show_kernels = torch.device("cpu"), 0, False
    args.cudnn_benchmark, args.image_size, args.no_probe, args.set = False, None, True, None
    workers = [int(w) for w in args.lightly_workers.split(",") if w.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="tribyol-peer-"))
    started, load_start = time.time(), tp.loadavg()
    all_cases: list[tuple[tp.Case, int | None]] = []
    for backbone in tp.csv_list(args.backbones):
        for batch in [int(b) for b in tp.csv_list(args.batches)]:
            group: list[tuple[tp.Case, int | None]] = []
            for method in ("byol", "tribyol"):
                for variant in tp.csv_list(args.variants):
                    cfg = tp.make_config(args, method, backbone, batch, args.precision, variant)
                    group.append((tp.Case(method, backbone, batch, args.precision, variant, cfg), None))
            for w in workers:
                cfg = tp.make_config(args, "byol", backbone, batch, args.precision, "base")
                group.append((tp.Case("lightly-byol", backbone, batch, args.precision,
                                      f"workers={w}", cfg), w))
            n = batch * (args.warmup + args.steps + 1) * 2
            cfg0 = group[0][0].cfg
            if args.synthetic:
                dataset = tp.synthetic_images(cfg0, n)
            else:
                cfg0.data.root, cfg0.data.limit = args.data_root, n
                dataset = load_pretrain_data(cfg0)
            print(f"== {backbone} b{batch}: {len(group)} configs x {args.rounds} rounds",
                  file=sys.stderr, flush=True)
            for _ in range(args.rounds):
                for case, w in group:
                    if w is None:
                        tp.fit_round(case, dataset, args, workdir)
                    else:
                        fit_lightly(case, dataset, w, args, workdir)
            for case, _ in group:
                case.module = None
            all_cases.extend(group)
            tp.print_table(tp.summarise([c for c, _ in group]), file=sys.stderr)
    rows = tp.summarise([c for c, _ in all_cases])
    tp.print_table(rows)
    print()
    print_ratios([c for c, _ in all_cases], tp.csv_list(args.variants)[0])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {**tp.machine_info(args.device), "lightly": _lightly_version()},
        "loadavg_start": load_start, "loadavg_end": tp.loadavg(),
        "seconds": time.time() - started,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _lightly_version() -> str:
    import lightly

    return str(getattr(lightly, "__version__", "?"))


def print_ratios(cases: list[tp.Case], ours_variant: str = "base") -> None:
    """Paired ratios inside each (backbone, batch) group: per round, then the median over rounds."""
    print("| backbone | batch | ours BYOL / lightly BYOL (images/s, wall, paired) | "
          "same, ours channels_last | ours BYOL / lightly BYOL workers=0 (CPU time) | "
          "same, ours channels_last | TriBYOL / BYOL (wall, paired) | TriBYOL / BYOL (CPU time) |")
    print("|---|---|---|---|---|---|---|---|")
    for backbone, batch in sorted({(c.backbone, c.batch) for c in cases}):
        sel = {(c.method, c.variant): c for c in cases
               if c.backbone == backbone and c.batch == batch and c.round_medians}
        ours, tri = sel.get(("byol", ours_variant)), sel.get(("tribyol", ours_variant))
        cl = sel.get(("byol", "cl"))
        peers = [(v, c) for (m, v), c in sorted(sel.items()) if m == "lightly-byol"]

        def speedup(mine: tp.Case | None, peers: list = peers) -> str:
            if mine is None:
                return "-"
            return ", ".join(f"{tp.paired_ratio(peer, mine):.2f}x vs {v}" for v, peer in peers)

        cost = f"{tp.paired_ratio(tri, ours):.3f}" if ours and tri else "-"
        w0 = sel.get(("lightly-byol", "workers=0"))

        def cpu_speedup(mine: tp.Case | None, w0: tp.Case | None = w0) -> str:
            ratio = tp.cpu_ratio(w0, mine) if mine and w0 else None
            return f"{ratio:.2f}x" if ratio else "-"

        cpu_cost = tp.cpu_ratio(tri, ours) if ours and tri else None
        print(f"| {backbone} | {batch} | {speedup(ours)} | {speedup(cl)} | {cpu_speedup(ours)} | "
              f"{cpu_speedup(cl)} | {cost} | {f'{cpu_cost:.3f}' if cpu_cost else '-'} |")


if __name__ == "__main__":
    sys.exit(main())
