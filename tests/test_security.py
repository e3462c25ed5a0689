"""Loading a checkpoint or weights never runs code hidden in a pickle.

The payload's ``__reduce__`` tells pickle to call ``open(marker, "w")``: if any of our loaders
unpickled it the unsafe way, the marker file would appear. A positive control shows the payload
does fire under a plain ``torch.load(weights_only=False)``, so its absence means something.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_RUN_STEPS
from tests.helpers import copy_run
from tribyol.checkpoints import load_checkpoint, load_encoder
from tribyol.cli import main
from tribyol.engine import pretrain
from tribyol.errors import CheckpointError

SRC = Path(__file__).resolve().parents[1] / "src" / "tribyol"


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def poisoned(path: Path, marker: Path) -> Path:
    """A file shaped like a checkpoint (or a state dict) that carries the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 0, "global_step": 1,
                "loops": {}, "optimizer_states": [], "hyper_parameters": Payload(marker)}, path)
    return path


def test_positive_control_the_payload_fires_when_unpickled_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.load(poisoned(tmp_path / "x.ckpt", marker), weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_checkpoint(poisoned(tmp_path / "x.ckpt", marker))
    assert not marker.exists()


def test_load_encoder_and_export_refuse(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    poisoned(run / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(CheckpointError):
        load_encoder(run)
    with pytest.raises(CheckpointError):
        load_encoder(run / "checkpoints" / "last.ckpt")
    assert main(["export", str(run), "--out", str(tmp_path / "enc.safetensors")]) == 2
    assert "error: cannot read checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_resume_refuses(tiny, tiny_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cfg = tiny(("train.max_steps", TINY_RUN_STEPS), ("name", "victim"))
    run_dir = copy_run(tiny_run, tmp_path / "runs", "victim")
    poisoned(run_dir / "checkpoints" / "last.ckpt", marker)
    poisoned(run_dir / "checkpoints" / "previous.ckpt", marker)
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        pretrain(cfg, resume=True)
    assert not marker.exists()


def test_lightning_resume_path_itself_is_weights_only(tiny, tiny_run: Path, tmp_path: Path) -> None:
    """Belt and braces: even past our check, ``trainer.fit`` loads with ``weights_only=True``."""
    import tribyol.engine.run as run

    marker = tmp_path / "pwned"
    cfg = tiny(("train.max_steps", TINY_RUN_STEPS), ("name", "victim2"))
    run_dir = copy_run(tiny_run, tmp_path / "runs", "victim2")
    ckpt = poisoned(run_dir / "checkpoints" / "last.ckpt", marker)
    original = run.select_resume_checkpoint
    try:
        run.select_resume_checkpoint = lambda _run_dir: ckpt  # skip our own validation
        with pytest.raises(Exception, match="(?i)weights.only|unpickl|global"):
            pretrain(cfg, resume=True)
    finally:
        run.select_resume_checkpoint = original
    assert not marker.exists()


def test_imagenet_weights_loader_refuses(tmp_path: Path) -> None:
    supervised = pytest.importorskip("tribyol.methods.supervised")
    from tribyol.nets import build_backbone

    marker = tmp_path / "pwned"
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload(marker)}, path)
    encoder = build_backbone("resnet18", 3, 32, None, 32)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|global"):
        supervised.load_imagenet_weights(encoder, path)
    assert not marker.exists()


def test_every_torch_load_in_src_is_weights_only() -> None:
    """A grep, so a new unsafe load is caught in review even before it has a test."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        assert "pickle.load" not in text and "torch.hub.load(" not in text, path
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):  # the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[match.start(): end + 1]
            calls.append(f"{path.name}: {call}")
            assert "weights_only=True" in call, f"{path}: {call}"
    assert calls, "expected at least the checkpoint loader"
