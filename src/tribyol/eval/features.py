"""Frozen-encoder features: batched extraction and an on-disk cache (safetensors).

The cache key covers everything that changes the numbers: the encoder's weights (hashed), the
dataset and split, which images (an index hash), and the input pipeline (size, channels,
normalisation). A key that matches is the same features, so ``eval linear`` and ``eval knn``
on one run extract once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tribyol.channels import LUMA
from tribyol.views import eval_transform

CACHE_ENV = "TRIBYOL_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$TRIBYOL_CACHE_DIR`` if set, else ``~/.cache/tribyol/features``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "tribyol" / "features"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): the encoder's identity."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def adapt_channels(images: Tensor, channels: int) -> Tensor:
    """uint8 ``[B, C, H, W]`` to ``channels``: 1 -> 3 by repeating, 3 -> 1 by luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, device=images.device).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot turn {c}-channel images into {channels}-channel ones")


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: Any,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    *,
    in_channels: int | None = None,
    indices: Sequence[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Features ``[N, D]`` (float32, CPU) and labels ``[N]`` of ``dataset`` under ``encoder``.

    ``dataset`` is indexed with lists of indices and returns ``(uint8 images, labels)``
    (``TensorImages``/``FolderImages``). ``in_channels`` converts the images' channels to the
    encoder's; ``indices`` restricts extraction to those items. The encoder runs in eval mode
    without gradients; its training mode and device are restored afterwards.
    """
    device = torch.device(device) if device is not None else default_device()
    order = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices).long().cpu()
    param = next(encoder.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    was_training = encoder.training
    encoder.to(device).eval()
    feats, labels = [], []
    try:
        for start in range(0, len(order), batch_size):
            images, y = dataset[order[start : start + batch_size]]
            images = images.to(device, non_blocking=True)
            if in_channels is not None:
                images = adapt_channels(images, in_channels)
            x = eval_transform(images, image_size, mean, std)
            feats.append(encoder(x).float())  # one copy to the host at the end, not per batch
            labels.append(torch.as_tensor(y).long())
    finally:
        encoder.to(home).train(was_training)
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats).cpu(), torch.cat(labels).cpu()


class CachedFeatures(NamedTuple):
    features: Tensor  # [N, D]
    labels: Tensor  # [N]
    path: Path | None  # the cache file, or None when the cache is off


class FeatureCache:
    """Features stored as ``<root>/<key>.safetensors``; ``enabled=False`` makes it a no-op."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    @staticmethod
    def key(**parts: Any) -> str:
        """A stable hash of JSON-able ``parts`` (sorted keys)."""
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str) -> tuple[Tensor, Tensor] | None:
        path = self.path(key)
        if not (self.enabled and path.exists()):
            return None
        try:
            data = load_file(str(path))
        except Exception:  # a truncated file from a killed run: recompute rather than fail
            return None
        return data["features"], data["labels"]

    def save(self, key: str, features: Tensor, labels: Tensor, meta: dict[str, str]) -> Path | None:
        if not self.enabled:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tensors = {"features": features.contiguous(), "labels": labels.contiguous()}
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})
        os.replace(tmp, path)  # atomic: readers never see half a file
        return path

    def features(
        self,
        encoder: nn.Module,
        dataset: Any,
        *,
        name: str,
        split: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        in_channels: int | None = None,
        indices: Tensor | None = None,
        batch_size: int = 256,
        device: torch.device | str | None = None,
        encoder_hash: str | None = None,
    ) -> CachedFeatures:
        """Cached ``extract_features``."""
        index_hash = None
        if indices is not None:
            index_hash = hashlib.sha256(torch.as_tensor(indices).long().numpy().tobytes()).hexdigest()
        parts = {
            "weights": encoder_hash or weights_hash(encoder),
            "dataset": name,
            "split": split,
            "num_items": len(dataset),
            "indices": index_hash,
            "image_size": image_size,
            "in_channels": in_channels,
            "mean": [round(float(m), 6) for m in mean],
            "std": [round(float(s), 6) for s in std],
        }
        key = self.key(**parts)
        hit = self.load(key)
        if hit is not None:
            return CachedFeatures(hit[0], hit[1], self.path(key))
        feats, labels = extract_features(
            encoder, dataset, image_size, mean, std, batch_size, device,
            in_channels=in_channels, indices=indices,
        )
        meta = {k: json.dumps(v) for k, v in parts.items()}
        meta["classes"] = json.dumps(class_names(dataset))  # for plot legends; not in the key
        return CachedFeatures(feats, labels, self.save(key, feats, labels, meta))


def class_names(dataset: Any) -> list[str]:
    """The dataset's class names by label (``dataset.classes``), or [] where it has none."""
    return [str(c) for c in getattr(dataset, "classes", None) or ()]


def cached_class_names(path: str | Path) -> list[str]:
    """Class names stored with a cached features file ([] for files written without them)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        names = json.loads(meta.get("classes", "[]"))
    except json.JSONDecodeError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []
