"""Checkpoint files: their names, tensor checksums, finding and safe reading.

Checkpoints are only ever read with ``torch.load(weights_only=True)``. Each checkpoint that
tribyol writes carries a SHA-256 of all its tensors (``CHECKSUM_KEY``), so damage inside the
tensor data, which a zip archive does not detect, is caught when the file is read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from tribyol.errors import CheckpointError, torch_load_reason

CHECKPOINT_NAME = "last.ckpt"
PREVIOUS_NAME = "previous.ckpt"
CHECKSUM_KEY = "tribyol_checksum"
BACKBONE_PREFIX = "method.backbone."


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


def storage_nbytes(checkpoint: dict[str, Any]) -> int:
    """Bytes of tensor data ``torch.save`` writes for ``checkpoint`` (each storage once): its
    file size, less a small pickle and zip overhead."""
    storages: dict[tuple[int, str], int] = {}
    for _, t in _tensors(checkpoint):
        s = t.untyped_storage()
        storages[(s.data_ptr(), str(s.device))] = s.nbytes()
    return sum(storages.values())


def last_good_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest checkpoint in ``folder`` that opens (``last.ckpt``, else ``previous.ckpt``)
    and its step, or ``None``. Its tensors are mapped, not read: quick at any size, for an
    error message (``read_checkpoint`` is what verifies a file)."""
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        path = folder / name
        if not path.is_file():
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # unreadable: the next one, if any
            continue
        if isinstance(ckpt, dict) and "state_dict" in ckpt:
            return path, int(ckpt.get("global_step", 0))
    return None


def describe_kept(folder: Path) -> str:
    """``the last good checkpoint is <path> (step N)``, or that there is none yet."""
    found = last_good_checkpoint(folder)
    if found is None:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint is {found[0]} (step {found[1]})"


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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify one checkpoint file; ``CheckpointError`` says what is wrong with it."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated, corrupt or holds objects other "
            f"than tensors and plain data ({type(err).__name__}: {torch_load_reason(err)})."
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


