"""Helpers several test modules share (tests/conftest.py holds the fixtures)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn


def scramble(net: nn.Module, seed: int) -> None:
    """Random weights *and* BatchNorm statistics, so a wrong key, stem or stale statistic shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def random_png_folder(root: Path, classes: int = 10, per_class: int = 10) -> Path:
    """``root/train/class<c>/<c>_<i>.png``: seeded random 8x8 RGB images, an ImageFolder."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{c}_{i:03d}.png")
    return root


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the explicit randomness the augment and method tests pass."""
    return torch.Generator().manual_seed(seed)


def within_sampling_error(hits: torch.Tensor, p: float) -> float:
    """The observed rate of ``hits`` is ``p`` to within 4.5 binomial standard errors; returns the rate."""
    rate = hits.float().mean().item()
    tolerance = 4.5 * max((p * (1 - p) / len(hits)) ** 0.5, 1 / len(hits))
    assert abs(rate - p) <= tolerance, (rate, p)
    return rate


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error: `` line on stderr, with no traceback beside it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def imagenet_file(folder: Path, name: str = "resnet18-f37072fd.pth") -> tuple[Path, dict[str, torch.Tensor]]:
    """A stand-in for torchvision's resnet18 ImageNet file: a random resnet18's state dict."""
    import torchvision  # only the tests that stand in for ImageNet weights pay for it

    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    return folder / name, state


# `tribyol pretrain` flags for a few fast CPU steps on sklearn digits (conftest.TINY's CLI twin).
TINY_FLAGS = [
    "--dataset", "digits", "--limit", "64", "--batch-size", "16", "--epochs", "1",
    "--precision", "32", "--accelerator", "cpu", "--devices", "1",
    "--set", "model.width=8", "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
    "--set", "train.progress_bar=false",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago: the rendezvous of a spawned process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_run(run_dir: Path, runs_root: Path, name: str) -> Path:
    """A copy of ``run_dir`` as ``runs_root/name``, for a test that changes or resumes a shared run."""
    return Path(shutil.copytree(run_dir, runs_root / name, symlinks=True))


def uint16_tiff_folder(root: Path, counts: dict[str, int], bands: int, side: int,
                       ramp: int = 0) -> Path:
    """``root/<split>/c<k>/<i>.tif`` for each split's count per class: one-page uint16 tiles with
    the bands last (as Sentinel-2 GeoTIFFs are), two classes told apart by their brightness;
    ``ramp`` brightens file i by ``ramp * i``, so statistics over different files differ."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    for split, count in counts.items():
        for k in range(2):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(count):
                tile = rng.integers(0, 3000, (side, side, bands), dtype=np.uint16) + 4000 * k + ramp * i
                tifffile.imwrite(folder / f"{i}.tif", tile, photometric="minisblack",
                                 planarconfig="contig")
    return root
