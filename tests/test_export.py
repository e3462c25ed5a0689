"""Export round trip: run -> ``tribyol export`` -> safetensors -> a plain torchvision ResNet."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tests.helpers import scramble
from tribyol.checkpoints import (
    BACKBONE_PREFIX,
    CHECKPOINT_NAME,
    load_checkpoint,
    load_encoder,
    tensor_checksum,
)
from tribyol.cli import main
from tribyol.config import RunConfig, to_dict
from tribyol.errors import CheckpointError
from tribyol.nets import build_backbone


def write_run(run_dir: Path, state_dict: dict[str, torch.Tensor],
              hyper_parameters: dict[str, Any]) -> Path:
    """A run directory whose last.ckpt holds what Lightning writes for these two keys."""
    ckpt = run_dir / "checkpoints" / CHECKPOINT_NAME
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": state_dict, "hyper_parameters": hyper_parameters,
                "epoch": 0, "global_step": 1}, ckpt)
    return run_dir


def export(run: Path, out: Path) -> dict[str, str]:
    assert main(["export", str(run), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        return dict(f.metadata())


def plain_torchvision_resnet18(meta: dict[str, str]) -> nn.Module:
    """torchvision's own resnet18, with only the stem swap the export metadata describes."""
    net = torchvision.models.resnet18()
    channels = int(meta["in_channels"])
    if meta["small_stem"] == "true":
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def load_into_torchvision(out: Path, net: nn.Module) -> nn.Module:
    result = net.load_state_dict(load_file(str(out)), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    net.fc = nn.Identity()  # features, as the encoder gives them
    return net.eval()


def test_export_of_a_resnet18_run_loads_into_torchvision(tiny, tmp_path: Path) -> None:
    """A 16 px, 1-channel digits run: small stem, one input channel."""
    from tribyol.data.pretrain import data_info_for
    from tribyol.engine.module import PretrainModule, build_encoder
    from tribyol.engine.run import load_pretrain_data, run_name

    cfg: RunConfig = tiny(("model.backbone", "resnet18"), ("data.limit", 8))
    info = data_info_for(cfg, load_pretrain_data(cfg))
    assert (info.channels, info.image_size) == (1, 16)
    # The real module, so parameter names and hyper-parameters are exactly a run's; a full
    # Lightning run writes these same two entries but takes ~10 s for a resnet18.
    module = PretrainModule(to_dict(cfg), vars(info))
    scramble(module.method.backbone, seed=1)
    run = write_run(Path(cfg.runs_root) / run_name(cfg), module.state_dict(),
                    dict(module.hparams))

    meta = export(run, tmp_path / "x.safetensors")
    assert meta["format"] == "tribyol-encoder-v1" and meta["backbone"] == "resnet18"
    assert (meta["in_channels"], meta["image_size"], meta["small_stem"]) == ("1", "16", "true")
    assert meta["mean"] == "0.3" and meta["std"] == "0.35" and meta["dataset"] == "digits"

    net = load_into_torchvision(tmp_path / "x.safetensors", plain_torchvision_resnet18(meta))
    # NCHW like torchvision's (the run trained channels_last, which rounds differently)
    encoder = module.method.backbone.eval().to(memory_format=torch.contiguous_format)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = encoder(x)
        assert torch.allclose(net(x), expected, atol=1e-5)
        # And the same encoder comes back from the run directory and from the export.
        for source in (run, tmp_path / "x.safetensors"):
            loaded, _ = load_encoder(source)
            assert torch.allclose(loaded.eval()(x), expected, atol=1e-5)
        fresh = build_encoder(cfg, info).eval()
        assert not torch.allclose(fresh(x), expected, atol=1e-3)  # the weights matter


def test_export_at_224px_rgb_loads_into_unmodified_torchvision(tiny, tmp_path: Path) -> None:
    cfg: RunConfig = tiny(("model.backbone", "resnet18"), ("data.image_size", 224))
    encoder = build_backbone("resnet18", in_channels=3, image_size=224)
    scramble(encoder, seed=2)
    info = {"channels": 3, "image_size": 224, "num_classes": 10, "num_train_images": 64,
            "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    state = {BACKBONE_PREFIX + k: v for k, v in encoder.state_dict().items()}
    state["method.projector.0.weight"] = torch.zeros(2, 2)  # not part of the encoder
    ckpt = write_run(tmp_path / "run", state, {"config": to_dict(cfg), "data_info": info})
    ckpt = ckpt / "checkpoints" / CHECKPOINT_NAME

    meta = export(ckpt, tmp_path / "rgb.safetensors")  # a .ckpt file works as well as a run
    assert (meta["in_channels"], meta["image_size"], meta["small_stem"]) == ("3", "224", "false")

    net = load_into_torchvision(tmp_path / "rgb.safetensors", torchvision.models.resnet18())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net(x), encoder.eval()(x), atol=1e-5)


def test_export_of_a_real_run(tiny_run: Path, tmp_path: Path) -> None:
    """The whole path with the real Trainer's checkpoint (a tiny ConvNet, a few steps)."""
    run = tiny_run  # read only: the export is written under tmp_path
    ckpt = load_checkpoint(run / "checkpoints" / CHECKPOINT_NAME)
    meta = export(run, tmp_path / "convnet.safetensors")
    assert (meta["backbone"], meta["width"], meta["in_channels"]) == ("convnet", "8", "1")
    assert meta["method"] == "tribyol" and meta["epochs_planned"] == "1"
    # the budget actually run: 2 steps of the 4 in an epoch (64 digits / batch 16)
    assert (meta["steps_done"], meta["epochs_done"]) == ("2", "0.5")
    assert (meta["batch_size"], meta["accumulate"], meta["world_size"]) == ("16", "1", "1")
    assert meta["labels_seen"] == "none"

    exported = load_file(str(tmp_path / "convnet.safetensors"))
    in_ckpt = {k[len(BACKBONE_PREFIX):]: v for k, v in ckpt["state_dict"].items()
               if k.startswith(BACKBONE_PREFIX)}
    assert exported.keys() == in_ckpt.keys()
    assert all(torch.equal(exported[k], in_ckpt[k]) for k in exported)
    encoder, _ = load_encoder(tmp_path / "convnet.safetensors")
    reference = build_backbone("convnet", 1, 16, width=8)
    reference.load_state_dict(in_ckpt)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(encoder.eval()(x), reference.eval()(x), atol=1e-6)


def test_export_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    (tmp_path / "empty_run").mkdir()
    assert main(["export", str(tmp_path / "empty_run"), "--out", str(tmp_path / "y")]) == 2
    assert "checkpoints/last.ckpt" in capsys.readouterr().err
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        load_checkpoint(broken)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {BACKBONE_PREFIX + "w": torch.zeros(1)}}, foreign)
    try:  # a CheckpointError, or exit code 2 should the CLI report it as a plain error
        code = main(["export", str(foreign), "--out", str(tmp_path / "z.safetensors")])
    except CheckpointError as err:
        message = str(err)
    else:
        assert code == 2
        message = capsys.readouterr().err
    assert "tribyol pretrain" in message
    assert not (tmp_path / "x.safetensors").exists()
    assert not (tmp_path / "z.safetensors").exists()


def convnet_run(tiny, tmp_path: Path, nan: bool = False) -> Path:
    """A run directory holding a scrambled 1-channel ConvNet (width 8), NaN in one weight."""
    cfg: RunConfig = tiny()
    encoder = build_backbone("convnet", in_channels=1, image_size=16, width=8)
    scramble(encoder, seed=3)
    state = {BACKBONE_PREFIX + k: v.clone() for k, v in encoder.state_dict().items()}
    if nan:
        next(v for v in state.values() if v.is_floating_point())[0] = float("nan")
    info = {"channels": 1, "image_size": 16, "num_classes": 10, "num_train_images": 64,
            "mean": (0.3,), "std": (0.35,)}
    return write_run(tmp_path / ("nan_run" if nan else "run"), state,
                     {"config": to_dict(cfg), "data_info": info})


def rewrite(path: Path, out: Path, **changes: Any) -> Path:
    """``path``'s export with metadata fields changed, or ``weights=`` replaced."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    state = changes.pop("weights", None) or load_file(str(path))
    meta.update({k: str(v) for k, v in changes.items()})
    save_file(state, str(out), metadata=meta)
    return out


def eval_error(source: Path, capsys: pytest.CaptureFixture) -> str:
    """The one stderr line of ``eval knn SOURCE`` (refused before any data is read)."""
    code = main(["eval", "knn", str(source), "--dataset", "digits", "--no-store", "--no-cache",
                 "--device", "cpu", "--k", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_zeroed_bytes_in_an_export_are_refused(tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "enc.safetensors"
    meta = export(convnet_run(tiny, tmp_path), out)
    assert len(meta["tensor_sha256"]) == 64
    raw = bytearray(out.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]  # tensor data after the JSON header
    middle = (start + len(raw)) // 2
    assert any(raw[middle: middle + 4096])
    raw[middle: middle + 4096] = bytes(len(raw[middle: middle + 4096]))
    out.write_bytes(bytes(raw))
    load_file(str(out))  # safetensors itself does not notice
    with pytest.raises(CheckpointError, match="fails its checksum"):
        load_encoder(out)
    assert "fails its checksum" in eval_error(out, capsys)


def test_non_finite_weights_are_refused(tiny, tmp_path: Path, capsys) -> None:
    run = convnet_run(tiny, tmp_path, nan=True)
    assert main(["export", str(run), "--out", str(tmp_path / "nan.safetensors")]) == 2
    assert "NaN or Inf" in capsys.readouterr().err
    assert not (tmp_path / "nan.safetensors").exists()
    assert "NaN or Inf" in eval_error(run, capsys)  # the run itself, as a source
    # an export written with NaN weights (by an older version, or by hand), checksum and all
    good = tmp_path / "good.safetensors"
    export(convnet_run(tiny, tmp_path), good)
    weights = load_file(str(good))
    next(v for v in weights.values() if v.is_floating_point())[0] = float("inf")
    bad = rewrite(good, tmp_path / "inf.safetensors", weights=weights,
                  tensor_sha256=tensor_checksum(weights))
    line = eval_error(bad, capsys)
    assert "NaN or Inf" in line and "inf.safetensors" in line


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("mean", "nan", "mean='nan' (finite numbers"),
    ("std", "0", "std='0' (positive finite numbers"),
    ("std", "0.3,0.3", "std='0.3,0.3'"),  # two values for a 1-channel encoder
    ("image_size", "-5", "image_size='-5' (a positive integer)"),
    ("in_channels", "inf", "in_channels='inf' (a positive integer)"),
    ("small_stem", "maybe", "small_stem='maybe' (true or false)"),
    ("backbone", "vit", "backbone='vit' (one of convnet"),
])
def test_bad_metadata_is_one_error_line(tiny, tmp_path: Path, capsys, field, value,
                                        expected) -> None:
    good = tmp_path / "good.safetensors"
    export(convnet_run(tiny, tmp_path), good)
    bad = rewrite(good, tmp_path / "bad.safetensors", **{field: value})
    line = eval_error(bad, capsys)
    assert "metadata has bad values" in line and expected in line, line


def test_export_is_readable_by_others_under_umask_022(tiny, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        export(convnet_run(tiny, tmp_path), tmp_path / "enc.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "enc.safetensors").stat().st_mode) == 0o644  # not 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_export_name_too_long_is_one_error_line(tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / ("e" * 300 + ".safetensors")
    assert main(["export", str(convnet_run(tiny, tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: --out: the name") and "312 bytes" in line, err
