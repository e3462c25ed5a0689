"""Frozen-encoder features: batched extraction and an on-disk cache (safetensors).

The cache key covers everything that changes the numbers: the encoder's weights (hashed), the
dataset and split, the images themselves (``fingerprint``: the pixels of an in-memory set, each
file's path, label, size, mtime and inode for a folder), which of them (an index hash), and the
input pipeline (size, channels, normalisation). A key that matches is the same features, so
``eval linear`` and ``eval knn`` on one run extract once, and a re-split or edited folder is
extracted again. A cache that cannot be written is skipped with a warning, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from tribyol.augment import eval_transform
from tribyol.channels import LUMA
from tribyol.checkpoints import write_safetensors

log = logging.getLogger(__name__)

CACHE_ENV = "TRIBYOL_CACHE_DIR"
PROGRESS_SECONDS = 10.0  # at most one progress line this often: quick extractions print none


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


def _labelled(images: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
    """The images and labels without those labelled -1 (unlabelled or corrupt: never scored
    as an image), and how many were left out."""
    keep = y >= 0
    if bool(keep.all()):
        return images, y, 0
    return images[keep.to(images.device)], y[keep], int((~keep).sum())


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
    progress: str | None = None,
    scale: float | None = None, value_range: Any = None,
) -> tuple[Tensor, Tensor]:
    """Features ``[N, D]`` (float32, CPU) and labels ``[N]`` of ``dataset`` under ``encoder``.

    ``dataset`` is indexed with lists of indices and returns ``(images, labels)``
    (``TensorImages``/``FolderImages``); the pixels become floats by ``scale`` and
    ``value_range`` as in pre-training (``Source.pixels``). ``in_channels`` converts the
    images' channels to the encoder's; ``indices`` restricts extraction to those items. Items
    labelled -1 (unlabelled, or a corrupt file of a folder read with ``bad_images="drop"``)
    are left out, so N counts the images scored. The encoder runs in eval mode without
    gradients; its training mode and device are restored afterwards. ``progress`` names the
    set in a progress line on stderr (the log) at most every ``PROGRESS_SECONDS``.
    """
    device = torch.device(device) if device is not None else default_device()
    order = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices).long().cpu()
    param = next(encoder.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    was_training = encoder.training
    encoder.to(device).eval()
    feats, labels = [], []
    dropped, last_report = 0, time.monotonic()
    try:
        for start in range(0, len(order), batch_size):
            if progress and time.monotonic() - last_report >= PROGRESS_SECONDS:
                log.info("%s: %d/%d images", progress, start, len(order))
                last_report = time.monotonic()
            images, y = dataset[order[start : start + batch_size]]
            images, y, left_out = _labelled(images, torch.as_tensor(y).long())
            dropped += left_out
            if not len(y):
                continue
            images = images.to(device, non_blocking=True)
            if in_channels is not None:
                images = adapt_channels(images, in_channels)
            x = eval_transform(images, image_size, mean, std, scale, value_range)
            feats.append(encoder(x).float())  # one copy to the host at the end, not per batch
            labels.append(y)
    finally:
        encoder.to(home).train(was_training)
    if dropped:
        log.warning("%s%d of %d images left out (unlabelled or corrupt); the score counts the "
                    "other %d", f"{progress}: " if progress else "", dropped, len(order),
                    len(order) - dropped)
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats).cpu(), torch.cat(labels).cpu()


class CachedFeatures(NamedTuple):
    features: Tensor  # [N, D]
    labels: Tensor  # [N]
    path: Path | None  # the cache file, or None when the cache is off


class FeatureCache:
    """Features stored as ``<root>/<key>.safetensors``; ``enabled=False`` makes it a no-op.

    A cache folder that cannot be written (a read-only home, a full disk) turns the cache off
    with one warning: the evaluation goes on, extracting features each time.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def _turn_off(self, err: OSError) -> None:
        log.warning("cannot write the feature cache in %s (%s); going on without it. Pass "
                    "--cache-dir DIR (or set $%s) to cache elsewhere, or --no-cache", self.root,
                    err.strerror or err, CACHE_ENV)
        self.enabled = False

    @staticmethod
    def key(**parts: Any) -> str:
        """A stable hash of JSON-able ``parts`` (sorted keys)."""
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str) -> tuple[Tensor, Tensor] | None:
        path = self.path(key)
        try:
            if not (self.enabled and path.is_file()):
                return None
            data = load_file(str(path))
            return data["features"], data["labels"]
        except Exception:  # a truncated file from a killed run, an unreadable folder: recompute
            return None

    def save(self, key: str, features: Tensor, labels: Tensor, meta: dict[str, str]) -> Path | None:
        if not self.enabled:
            return None
        tensors = {"features": features.contiguous(), "labels": labels.contiguous()}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # atomic: readers never see half a file; the umask's mode, not mkstemp's 0600
            return write_safetensors(self.path(key), tensors,
                                     {k: str(v) for k, v in meta.items()})
        except OSError as err:
            self._turn_off(err)
            return None

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
        scale: float | None = None,
        value_range: Any = None,
    ) -> CachedFeatures:
        """Cached ``extract_features``: a set without a ``fingerprint`` is never cached."""
        fingerprint = getattr(dataset, "fingerprint", None)
        progress = f"{name.split('@')[0]} {split} features"  # the label, not the folder's path
        if not self.enabled or fingerprint is None:
            feats, labels = extract_features(
                encoder, dataset, image_size, mean, std, batch_size, device,
                in_channels=in_channels, indices=indices, progress=progress,
                scale=scale, value_range=value_range,
            )
            return CachedFeatures(feats, labels, None)
        index_hash = None
        if indices is not None:
            index_hash = hashlib.sha256(torch.as_tensor(indices).long().numpy().tobytes()).hexdigest()
        parts = {
            "weights": encoder_hash or weights_hash(encoder),
            "dataset": name,
            "split": split,
            "num_items": len(dataset),
            "images": fingerprint(),  # which files or pixels, as they are now
            "indices": index_hash,
            "image_size": image_size,
            "in_channels": in_channels,
            "mean": [round(float(m), 6) for m in mean],
            "std": [round(float(s), 6) for s in std],
        }
        if scale is not None or value_range is not None:  # uint8 / 255: the keys they had
            parts["pixels"] = [scale, value_range and [list(p) for p in value_range]]
        key = self.key(**parts)
        hit = self.load(key)
        if hit is not None:
            return CachedFeatures(hit[0], hit[1], self.path(key))
        feats, labels = extract_features(
            encoder, dataset, image_size, mean, std, batch_size, device,
            in_channels=in_channels, indices=indices, progress=progress,
            scale=scale, value_range=value_range,
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
