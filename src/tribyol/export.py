"""Safe loading of runs and checkpoints, and export of encoders as safetensors.

Checkpoints are only ever read with ``torch.load(weights_only=True)``; exported weights are
safetensors. An exported ResNet encoder loads into a plain ``torchvision.models.resnet*``
(after the stem swap its metadata describes, for small images or non-RGB inputs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from tribyol.engine.callbacks import CHECKPOINT_NAME, PREVIOUS_NAME
from tribyol.errors import CheckpointError

BACKBONE_PREFIX = "method.backbone."


def find_checkpoint(source: str | Path) -> Path:
    """A run directory -> its ``last.ckpt``; a file -> itself."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / "checkpoints" / CHECKPOINT_NAME
        if not ckpt.exists():
            raise FileNotFoundError(
                f"{source} has no checkpoints/{CHECKPOINT_NAME}; is it a run directory of "
                "`tribyol pretrain`, and did the run save at least once?"
            )
        return ckpt
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; pass a run directory or a .ckpt file")
    return source


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (no pickled code runs); a broken file names itself."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        previous = path.with_name(PREVIOUS_NAME)
        hint = (f" The previous good checkpoint is {previous}; `tribyol pretrain --resume` "
                "falls back to it by itself."
                if previous.exists() and path.name != PREVIOUS_NAME else "")
        # torch's weights-only refusal is many lines; the one naming the refused global matters
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
        lines = [line for line in lines if line]
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
        reason = reason[:200]
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated, corrupt or holds objects other "
            f"than tensors and plain data ({type(err).__name__}: {reason}).{hint}"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a tribyol/Lightning checkpoint (no state_dict)")
    return ckpt


def encoder_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    state = {
        k[len(BACKBONE_PREFIX):]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(BACKBONE_PREFIX)
    }
    if not state:
        raise CheckpointError("checkpoint holds no encoder weights (method.backbone.*)")
    return state


def encoder_metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """Rebuild the encoder description from the checkpoint's hyper-parameters."""
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
    m = cfg.model
    return {
        "format": "tribyol-encoder-v1",
        "backbone": m.backbone,
        "in_channels": str(info["channels"]),
        "image_size": str(info["image_size"]),
        "small_stem": str(uses_small_stem(info["image_size"], m.small_stem)).lower(),
        "width": str(m.width),
        "method": cfg.method["name"],
        "dataset": cfg.data.dataset,
        "batch_size": str(cfg.train.batch_size),
        "epochs": str(cfg.train.epochs),
        "mean": ",".join(map(str, info["mean"])),
        "std": ",".join(map(str, info["std"])),
    }


def export_encoder(source: str | Path, out: str | Path) -> Path:
    """Write the encoder of a run (or checkpoint) to ``out`` as safetensors with metadata."""
    ckpt = load_checkpoint(find_checkpoint(source))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in encoder_state(ckpt).items()}
    save_file(state, str(out), metadata=encoder_metadata(ckpt))
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


def load_encoder(source: str | Path) -> tuple[nn.Module, dict[str, str]]:
    """An encoder with its weights, from a run directory, a ``.ckpt`` or a ``.safetensors``."""
    source = Path(source)
    if source.suffix == ".safetensors":
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        with safe_open(str(source), framework="pt") as f:
            meta = dict(f.metadata() or {})
        if meta.get("format") != "tribyol-encoder-v1":
            raise CheckpointError(f"{source} is not a tribyol encoder export (no metadata)")
        state = load_file(str(source))
    else:
        ckpt = load_checkpoint(find_checkpoint(source))
        meta, state = encoder_metadata(ckpt), encoder_state(ckpt)
    encoder = build_encoder_from_metadata(meta)
    encoder.load_state_dict(state)
    return encoder, meta
