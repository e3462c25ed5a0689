"""Exported encoders: written atomically as safetensors, read back with their checks, and
loaded, with their weights, from a run directory, a ``.ckpt`` or a ``.safetensors`` file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from tribyol.checkpoints.files import encoder_state, find_checkpoint, load_checkpoint, tensor_checksum
from tribyol.checkpoints.metadata import ENCODER_FORMAT, EXPORT_CHECKSUM, EncoderInfo, encoder_metadata
from tribyol.errors import CheckpointError


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights with NaN or Inf: such an encoder scores at chance without an error."""
    bad = [name for name, t in state.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{where}: weights {listed} hold NaN or Inf values; the run diverged or the file is "
            "damaged: use an earlier checkpoint of the run"
        )


def file_mode() -> int:
    """The mode a plain ``open`` gives a new file under this process's umask (0644 under 022):
    ``mkstemp`` and safetensors make 0600, which would lock others out of shared results."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def temp_name(path: Path) -> str:
    """A hidden temporary name prefix beside ``path``, short enough for any legal name."""
    stem = os.fsencode(path.name)[:100].decode(errors="ignore")
    return f".{stem}."


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str]) -> Path:
    """Write ``tensors`` to ``path`` atomically: a temporary file in the same folder, fsync,
    the umask's mode, rename; a failed write leaves no half file behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_name(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, file_mode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
    saved = meta.get(EXPORT_CHECKSUM)  # exports before the checksum have none to compare
    if saved is not None and saved != tensor_checksum(state):
        raise CheckpointError(
            f"{path} fails its checksum: its tensor data changed after it was exported (disk or "
            "copy damage); export it again with `tribyol export RUN --out FILE`"
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
    check_finite(state, str(source))
    try:
        encoder = EncoderInfo.from_metadata(meta, str(source)).build_encoder()
        encoder.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{source}: its weights do not fit the encoder its metadata describes ({first})"
        ) from None
    return encoder, meta
