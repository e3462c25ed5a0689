"""``tribyol export``: a run's encoder as safetensors, written atomically.

An exported ResNet encoder loads into a plain ``torchvision.models.resnet*`` (after the stem
swap its metadata describes, for small images or non-RGB inputs). Reading checkpoints and
encoders is ``tribyol.checkpoints``'s job.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from tribyol.checkpoints import (
    BACKBONE_PREFIX,
    encoder_metadata,
    encoder_state,
    find_checkpoint,
    load_checkpoint,
    load_encoder,
)
from tribyol.errors import CheckpointError

# What callers of this module used before ``tribyol.checkpoints`` existed.
__all__ = ["BACKBONE_PREFIX", "CheckpointError", "encoder_metadata", "encoder_state",
           "export_encoder", "find_checkpoint", "load_checkpoint", "load_encoder"]


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
