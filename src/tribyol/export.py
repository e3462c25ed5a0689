"""``tribyol export``: a run's encoder as safetensors, written atomically.

An exported ResNet encoder loads into a plain ``torchvision.models.resnet*`` (after the stem
swap its metadata describes, for small images or non-RGB inputs). Reading checkpoints and
encoders is ``tribyol.checkpoints``'s job.
"""

from __future__ import annotations

import os
from pathlib import Path

from tribyol.checkpoints import (
    BACKBONE_PREFIX,
    EXPORT_CHECKSUM,
    EncoderInfo,
    check_finite,
    encoder_metadata,
    encoder_state,
    find_checkpoint,
    load_checkpoint,
    load_encoder,
    tensor_checksum,
    write_safetensors,
)
from tribyol.errors import CheckpointError, ConfigError

# What callers of this module used before ``tribyol.checkpoints`` existed.
__all__ = ["BACKBONE_PREFIX", "CheckpointError", "encoder_metadata", "encoder_state",
           "export_encoder", "find_checkpoint", "load_checkpoint", "load_encoder"]


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the filesystem of ``folder`` takes (255 on most)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up
        return False


def _check_out(out: Path, overwrite: bool) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if _exists(p)), Path("."))
    too_long = [part for part in out.parts if len(os.fsencode(part)) > _name_max(existing)]
    if too_long:
        raise ConfigError(
            f"--out: the name {too_long[0][:40]}... is {len(os.fsencode(too_long[0]))} bytes, "
            f"more than the {_name_max(existing)} a file name may have here; pick a shorter one"
        )
    if out.is_dir():
        raise FileExistsError(
            f"--out {out} is a directory; pass a file path such as {out}/encoder.safetensors"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or another --out")
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
    EncoderInfo.from_metadata(meta, str(source))  # what eval will refuse, refused now
    check_finite(state, str(source))
    # Read back by ``read_export``: damage to the tensor data fails the comparison.
    meta[EXPORT_CHECKSUM] = tensor_checksum(state)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(out, state, meta)
    except OSError as err:
        raise PermissionError(
            f"cannot write {out}: {err.strerror or err}; pick another --out"
        ) from None
    return out
