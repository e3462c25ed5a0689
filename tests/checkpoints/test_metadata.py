"""Encoder metadata: ``EncoderInfo`` round-trips through an export's metadata, and a bad or
missing field is named."""

from __future__ import annotations

import pytest

from tribyol.checkpoints import EncoderInfo
from tribyol.errors import CheckpointError


def test_encoder_info_round_trips_through_export_metadata() -> None:
    from tribyol.checkpoints import ENCODER_FORMAT

    info = EncoderInfo(backbone="resnet18", in_channels=1, image_size=28, small_stem=True,
                       mean=(0.286,), std=(0.353,), width=32, method="tribyol",
                       dataset="fashionmnist", batch_size=32, accumulate=2, world_size=1,
                       steps_done=1875, epochs_planned=80, epochs_done=1.0, labels_seen="none")
    meta = info.to_metadata()
    assert meta["format"] == ENCODER_FORMAT
    assert (meta["small_stem"], meta["mean"], meta["epochs_done"], meta["steps_done"]) == (
        "true", "0.286", "1", "1875")
    assert EncoderInfo.from_metadata(meta) == info
    # fields an older export lacks stay None; unknown keys are ignored
    old = EncoderInfo.from_metadata({k: meta[k] for k in
                                     ("backbone", "in_channels", "image_size", "small_stem", "mean", "std")}
                                    | {"weights": "x.pth"})
    assert (old.batch_size, old.accumulate, old.labels_seen) == (None, None, None)


def test_encoder_info_names_a_bad_or_missing_field() -> None:

    meta = {"backbone": "convnet", "in_channels": "3", "image_size": "32", "small_stem": "true",
            "mean": "0.5,0.5,0.5", "std": "0.2,0.2,0.2"}
    with pytest.raises(CheckpointError, match="enc.safetensors's metadata lacks std"):
        EncoderInfo.from_metadata({k: v for k, v in meta.items() if k != "std"}, "enc.safetensors")
    with pytest.raises(CheckpointError, match="bad value"):
        EncoderInfo.from_metadata({**meta, "image_size": "big"}, "enc.safetensors")


def test_timm_backbones_pass_the_metadata_check_and_unknown_ones_do_not() -> None:
    pytest.importorskip("timm")
    meta = EncoderInfo("timm:test_resnet", 13, 32, False, (0.1,) * 13, (0.2,) * 13).to_metadata()
    info = EncoderInfo.from_metadata(meta)
    assert info.backbone == "timm:test_resnet"
    import torch

    encoder = info.build_encoder()  # timm's own model, for 13 bands
    assert type(encoder).__module__.startswith("timm.")
    assert encoder(torch.zeros(2, 13, 32, 32)).shape == (2, encoder.out_dim)
    with pytest.raises(CheckpointError, match="timm:NAME of a timm model"):
        EncoderInfo.from_metadata({**meta, "backbone": "timm:nonexistent"})
