"""Checkpoint files and encoders: names, finding, safe reading, checksums, encoder metadata.

Checkpoints are only ever read with ``torch.load(weights_only=True)``. Each checkpoint that
tribyol writes carries a SHA-256 of all its tensors (``CHECKSUM_KEY``), so damage inside the
tensor data, which a zip archive does not detect, is caught when the file is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from tribyol.config import RunConfig
from tribyol.errors import CheckpointError
from tribyol.nets import build_backbone, uses_small_stem
from tribyol.structured import build_dataclass

CHECKPOINT_NAME = "last.ckpt"
PREVIOUS_NAME = "previous.ckpt"
CHECKSUM_KEY = "tribyol_checksum"
BACKBONE_PREFIX = "method.backbone."
ENCODER_FORMAT = "tribyol-encoder-v1"
# Metadata an encoder cannot be rebuilt without.
REQUIRED_METADATA = ("backbone", "in_channels", "image_size", "small_stem", "mean", "std")


def _tensors(obj: Any, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a nested dict/list, with its path, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [(path, obj)]
    if isinstance(obj, dict):
        return [item for key in sorted(obj, key=str) if key != CHECKSUM_KEY
                for item in _tensors(obj[key], f"{path}/{key}")]
    if isinstance(obj, (list, tuple)):
        return [item for i, value in enumerate(obj) for item in _tensors(value, f"{path}/{i}")]
    return []


def tensor_checksum(checkpoint: dict[str, Any]) -> str:
    """SHA-256 over the paths, dtypes, shapes and bytes of every tensor in ``checkpoint``."""
    digest = hashlib.sha256()
    for path, tensor in _tensors(checkpoint):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{path}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer, no copy
    return digest.hexdigest()


def add_checksum(checkpoint: dict[str, Any]) -> None:
    """Store the checksum inside the checkpoint dict (called as the last step before saving)."""
    checkpoint[CHECKSUM_KEY] = {"sha256": tensor_checksum(checkpoint)}


def find_checkpoint(source: str | Path) -> Path:
    """A run directory -> its ``last.ckpt``; a file -> itself."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / "checkpoints" / CHECKPOINT_NAME
        if not ckpt.exists():
            previous = ckpt.with_name(PREVIOUS_NAME)
            hint = f" It has {previous}: pass that file instead." if previous.exists() else ""
            raise FileNotFoundError(
                f"{source} has no checkpoints/{CHECKPOINT_NAME}; is it a run directory of "
                f"`tribyol pretrain`, and did the run save at least once?{hint}"
            )
        return ckpt
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; pass a run directory or a .ckpt file")
    return source


def _torch_reason(err: Exception) -> str:
    """torch's own reason, whole, on one line (its weights-only refusal spans many lines)."""
    text = " ".join(line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines()
                    if line.strip())
    if "WeightsUnpickler error" not in text:
        return text
    reason = text[text.index("WeightsUnpickler error"):].split(" Check the documentation")[0]
    if "Unsupported global" in reason:
        reason += (" Loading this file without weights_only could result in arbitrary code "
                   "execution; tribyol never does that")
    return reason


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify one checkpoint file; ``CheckpointError`` says what is wrong with it."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated, corrupt or holds objects other "
            f"than tensors and plain data ({type(err).__name__}: {_torch_reason(err)})."
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a tribyol/Lightning checkpoint (no state_dict)")
    saved = ckpt.get(CHECKSUM_KEY)
    if isinstance(saved, dict) and saved.get("sha256") != tensor_checksum(ckpt):
        raise CheckpointError(
            f"checkpoint {path} fails its checksum: its tensor data changed after it was saved "
            "(disk or copy damage)."
        )
    return ckpt


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``read_checkpoint``, and on failure name ``previous.ckpt`` if that one is readable."""
    path = Path(path)
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        previous = path.with_name(PREVIOUS_NAME)
        if path.name == PREVIOUS_NAME or not previous.exists():
            raise
        try:
            step = read_checkpoint(previous).get("global_step")
        except CheckpointError:
            raise CheckpointError(f"{err} {previous} cannot be read either.") from None
        raise CheckpointError(
            f"{err} The previous checkpoint {previous} (step {step}) is readable: pass that file "
            "instead (`tribyol pretrain --resume` falls back to it by itself)."
        ) from None


def encoder_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder's weights, with the ``method.backbone.`` prefix dropped."""
    state = {
        k[len(BACKBONE_PREFIX):]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(BACKBONE_PREFIX)
    }
    if not state:
        raise CheckpointError("checkpoint holds no encoder weights (method.backbone.*)")
    return state


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder is and how it was trained: an export's metadata, typed.

    ``to_metadata`` writes the safetensors metadata (strings only); ``from_metadata`` reads it
    back, so the same fields are never parsed in two places. Fields after ``std`` are optional
    (exports from older versions, or torchvision's ImageNet weights, lack some).
    """

    backbone: str
    in_channels: int
    image_size: int
    small_stem: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    width: int | None = None  # the ConvNet's base width (None: its default, 32)
    method: str | None = None
    dataset: str | None = None
    # The batch BatchNorm and the loss saw is batch_size per device; an optimizer step
    # averages accumulate x world_size of them.
    batch_size: int | None = None
    accumulate: int | None = None
    world_size: int | None = None
    steps_done: int | None = None
    epochs_planned: int | None = None
    epochs_done: float | None = None
    labels_seen: str | None = None

    def to_metadata(self) -> dict[str, str]:
        meta = {"format": ENCODER_FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif f.name == "epochs_done":
                value = f"{value:.4g}"
            meta[f.name] = str(value)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str = "the encoder") -> EncoderInfo:
        """Parse an export's metadata (extra keys are ignored); a missing or unreadable field
        that the encoder needs is a ``CheckpointError``."""
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise CheckpointError(
                f"{where}'s metadata lacks {', '.join(missing)}; export it again with `tribyol export`"
            )
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        try:
            for f in dataclasses.fields(cls):
                if f.name in meta:
                    values[f.name] = _parse(meta[f.name], hints[f.name])
        except ValueError as err:
            raise CheckpointError(f"{where}'s metadata has a bad value ({err})") from None
        return cls(**values)

    def build_encoder(self) -> nn.Module:
        """The encoder this describes, freshly initialised."""
        return build_backbone(self.backbone, in_channels=self.in_channels,
                              image_size=self.image_size, small_stem=self.small_stem,
                              width=self.width or 32)


def _parse(text: str, hint: Any) -> Any:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is bool:
        return text == "true"
    if typing.get_origin(kind) is tuple:
        return tuple(float(v) for v in text.split(","))
    return kind(float(text)) if kind is int else kind(text)


def encoder_info(ckpt: dict[str, Any]) -> EncoderInfo:
    """The encoder's description and the run's budget, from a training checkpoint."""
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
    per_epoch = int(run.get("steps_per_epoch", 0))
    return EncoderInfo(
        backbone=m.backbone,
        in_channels=int(info["channels"]),
        image_size=int(info["image_size"]),
        small_stem=uses_small_stem(info["image_size"], m.small_stem),
        mean=tuple(float(v) for v in info["mean"]),
        std=tuple(float(v) for v in info["std"]),
        width=m.width,
        method=cfg.method["name"],
        dataset=cfg.data.dataset,
        batch_size=t.batch_size,
        accumulate=t.accumulate,
        world_size=int(run.get("world_size", 1)),
        steps_done=steps,
        epochs_planned=t.epochs,
        epochs_done=steps / per_epoch if per_epoch > 0 else None,
        labels_seen=str(run["labels_seen"]) if "labels_seen" in run else None,
    )


def encoder_metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """``encoder_info(ckpt)`` as an export's metadata."""
    return encoder_info(ckpt).to_metadata()


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
    EncoderInfo.from_metadata(meta, str(path))  # checked here, before anyone builds from it
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
        encoder = EncoderInfo.from_metadata(meta, str(source)).build_encoder()
        encoder.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{source}: its weights do not fit the encoder its metadata describes ({first})"
        ) from None
    return encoder, meta
