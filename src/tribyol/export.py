"""Export of encoders as safetensors, and loading an encoder from any source.

An exported ResNet encoder loads into a plain ``torchvision.models.resnet*`` (after the stem
swap its metadata describes, for small images or non-RGB inputs). Checkpoint files themselves
are handled by ``tribyol.checkpoints``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from tribyol.checkpoints import (
    BACKBONE_PREFIX,
    encoder_state,
    find_checkpoint,
    load_checkpoint,
)
from tribyol.errors import CheckpointError

ENCODER_FORMAT = "tribyol-encoder-v1"
# Metadata an encoder cannot be rebuilt without.
REQUIRED_METADATA = ("backbone", "in_channels", "image_size", "small_stem", "mean", "std")

__all__ = [
    "BACKBONE_PREFIX",
    "CheckpointError",
    "encoder_metadata",
    "encoder_state",
    "export_encoder",
    "find_checkpoint",
    "load_checkpoint",
    "load_encoder",
]


def encoder_metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """The encoder's description and the run's budget, from the checkpoint."""
    from tribyol.config import RunConfig, build_dataclass
    from tribyol.nets import uses_small_stem

    hp = ckpt.get("hyper_parameters") or {}
    if "config" not in hp or "data_info" not in hp:
        raise CheckpointError(
            "checkpoint has no tribyol run config (hyper_parameters.config / data_info); "
            "export needs a checkpoint written by `tribyol pretrain`"
        )
    cfg = build_dataclass(RunConfig, hp["config"])
    info = hp["data_info"]
    m, t = cfg.model, cfg.train
    run = ckpt.get("tribyol_run") or {}
    steps = int(ckpt.get("global_step", 0))
    world = int(run.get("world_size", 1))
    per_epoch = int(run.get("steps_per_epoch", 0))
    meta = {
        "format": ENCODER_FORMAT,
        "backbone": m.backbone,
        "in_channels": str(info["channels"]),
        "image_size": str(info["image_size"]),
        "small_stem": str(uses_small_stem(info["image_size"], m.small_stem)).lower(),
        "width": str(m.width),
        "method": cfg.method["name"],
        "dataset": cfg.data.dataset,
        # The batch that BatchNorm and the loss saw is batch_size per device; an optimizer step
        # averages accumulate x world_size of them.
        "batch_size": str(t.batch_size),
        "accumulate": str(t.accumulate),
        "world_size": str(world),
        "steps_done": str(steps),
        "epochs_planned": str(t.epochs),
        "mean": ",".join(map(str, info["mean"])),
        "std": ",".join(map(str, info["std"])),
    }
    if per_epoch > 0:
        meta["epochs_done"] = f"{steps / per_epoch:.4g}"
    if "labels_seen" in run:
        meta["labels_seen"] = str(run["labels_seen"])
    return meta


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise FileExistsError(
            f"--out {out} is a directory; pass a file path such as {out}/encoder.safetensors"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or another --out")
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {out}: {existing} is not a writable folder; pick another --out")


def export_encoder(source: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the encoder of a run (or checkpoint) to ``out`` as safetensors with metadata.

    An existing ``out`` is refused unless ``overwrite``; the file is written aside and renamed
    into place, so a failed export never leaves a half-written file.
    """
    out = Path(out)
    _check_out(out, overwrite)
    ckpt = load_checkpoint(find_checkpoint(source))
    state = {k: v.contiguous() for k, v in encoder_state(ckpt).items()}
    meta = encoder_metadata(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def build_encoder_from_metadata(meta: dict[str, str]) -> nn.Module:
    from tribyol.nets import build_backbone

    return build_backbone(
        meta["backbone"],
        in_channels=int(meta["in_channels"]),
        image_size=int(meta["image_size"]),
        small_stem=meta["small_stem"] == "true",
        width=int(meta.get("width", 32)),
    )


def read_export(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Metadata and tensors of an exported encoder, checked; a bad file is a ``CheckpointError``."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read {path}: it is truncated or not a safetensors file ({err}). "
            "Export it again with `tribyol export RUN --out FILE`."
        ) from None
    if meta.get("format") != ENCODER_FORMAT:
        raise CheckpointError(f"{path} is not a tribyol encoder export (no tribyol metadata)")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise CheckpointError(
            f"{path}'s metadata lacks {', '.join(missing)}; export it again with `tribyol export`"
        )
    return meta, state


def load_encoder(source: str | Path) -> tuple[nn.Module, dict[str, str]]:
    """An encoder with its weights, from a run directory, a ``.ckpt`` or a ``.safetensors``."""
    source = Path(source)
    if source.suffix == ".safetensors":
        meta, state = read_export(source)
    else:
        ckpt = load_checkpoint(find_checkpoint(source))
        meta, state = encoder_metadata(ckpt), encoder_state(ckpt)
    try:
        encoder = build_encoder_from_metadata(meta)
        encoder.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{source}: its weights do not fit the encoder its metadata describes ({first})"
        ) from None
    return encoder, meta
