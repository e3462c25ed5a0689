"""Checkpoint files: tensor checksums catch silent damage, messages stay whole and true."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

from tribyol.checkpoints import (
    CHECKSUM_KEY,
    load_checkpoint,
    read_checkpoint,
    tensor_checksum,
)
from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.errors import CheckpointError


def zero_inside_tensor_data(path: Path, size: int = 4096) -> None:
    """Overwrite ``size`` bytes in the middle of the largest tensor record with zeros.

    torch's zip records are stored uncompressed and their CRCs are not checked on load, so
    without a checksum of our own this damage loads silently.
    """
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    size = min(size, info.file_size // 2)
    middle = start + info.file_size // 2 - size // 2
    assert any(raw[middle: middle + size]), "the region must hold data to damage"
    raw[middle: middle + size] = bytes(size)
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # the damage itself goes unnoticed by torch


@pytest.fixture
def run(tiny) -> tuple[Path, object]:
    cfg = tiny(("train.max_steps", 3), ("train.ckpt_every_steps", 1), ("name", "r"),
               ("model.width", 32))
    return pretrain(cfg), cfg


def test_every_checkpoint_carries_a_checksum_that_verifies(run) -> None:
    run_dir, _ = run
    ckpt = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt[CHECKSUM_KEY]["sha256"] == tensor_checksum(ckpt)
    # one weight changed after saving: the stored checksum no longer matches, and reading refuses
    first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel())
    ckpt["state_dict"][first] = ckpt["state_dict"][first] + 1.0
    changed = run_dir.parent / "changed.ckpt"
    torch.save(ckpt, changed)
    with pytest.raises(CheckpointError, match="fails its checksum"):
        read_checkpoint(changed)


def test_zeroed_tensor_data_is_refused_by_eval_and_export(run, tmp_path, capsys) -> None:
    run_dir, _ = run
    last = run_dir / "checkpoints" / "last.ckpt"
    zero_inside_tensor_data(last)
    with pytest.raises(CheckpointError, match="fails its checksum"):
        read_checkpoint(last)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "e.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "fails its checksum" in err
    assert f"previous checkpoint {run_dir / 'checkpoints' / 'previous.ckpt'} (step 2) is readable" in err
    assert not (tmp_path / "e.safetensors").exists()
    assert main(["eval", "knn", str(run_dir), "--no-store", "--no-cache"]) == 2
    assert "fails its checksum" in capsys.readouterr().err


def test_zeroed_tensor_data_falls_back_to_previous_on_resume(run, tiny) -> None:
    run_dir, _ = run
    zero_inside_tensor_data(run_dir / "checkpoints" / "last.ckpt")
    cfg = tiny(("train.max_steps", 4), ("train.ckpt_every_steps", 1), ("name", "r"),
               ("model.width", 32))
    pretrain(cfg, resume=True)
    assert (run_dir / "checkpoints" / "last.ckpt.corrupt").exists()
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_both_checkpoints_broken_calls_neither_good(run, capsys) -> None:
    run_dir, _ = run
    for name in ("last.ckpt", "previous.ckpt"):
        zero_inside_tensor_data(run_dir / "checkpoints" / name)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert "good" not in str(info.value) and "cannot be read either" in str(info.value)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refusal_of_a_pickle_keeps_torchs_warning_whole(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "arbitrary code execution" in message
    assert "Unsupported global: GLOBAL print was not an allowed global by default." in message
    # torch's advice to re-run with weights_only=False (or allowlist the class) "if you trust
    # the source" is never repeated: a checkpoint's origin is not known
    assert "weights_only" not in message and "trust" not in message, message
    assert "allowlist" not in message and "safe_globals" not in message


