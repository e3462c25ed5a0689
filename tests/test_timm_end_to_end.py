"""Issue 22's done-when: an N-band image folder pre-trains with ``timm:resnet18``, evaluates
(linear, kNN) and exports into plain ``timm.create_model(NAME, in_chans=N, num_classes=0)``
with strict keys; every method runs on a timm encoder; bad timm input is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tests.helpers import error_line, uint16_tiff_folder
from tribyol.cli import main

timm = pytest.importorskip("timm")
tifffile = pytest.importorskip("tifffile")

BANDS, SIZE, PER_CLASS = 13, 32, 8


def tiff_folder(root: Path) -> Path:
    """``root/{train,test}/c<k>/<i>.tif``: 13-band uint16 tiles, two classes."""
    return uint16_tiff_folder(root, {"train": PER_CLASS, "test": PER_CLASS // 2}, BANDS, SIZE)


def test_a_13_band_tiff_folder_pretrains_evaluates_and_exports_into_timm(
        tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from tribyol.checkpoints import load_encoder

    root = tiff_folder(tmp_path / "tiles")
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "folder", "--data-root", str(root)]
    assert main(["pretrain", *args, "--backbone", "timm:resnet18", "--batch-size", "8",
                 "--max-steps", "2", "--runs-root", "runs", "--name", "ms", "--set",
                 f"data.channels={BANDS}", "--set", "data.stats=data", "--set",
                 "model.hidden_dim=32", "--set", "model.proj_dim=16", "--set",
                 "train.accelerator=cpu", "--set", "train.precision=32", "--set",
                 "train.progress_bar=false"]) == 0
    for protocol in ("linear", "knn"):
        assert main(["eval", protocol, "runs/ms", *args, "--device", "cpu",
                     "--force-small-test"]) == 0  # 8 test tiles: a smoke test, not a score
    assert main(["export", "runs/ms", "--out", "ms.safetensors"]) == 0

    plain = timm.create_model("resnet18", in_chans=BANDS, num_classes=0)
    plain.load_state_dict(load_file("ms.safetensors"), strict=True)  # timm's own keys, all
    ours, meta = load_encoder("ms.safetensors")
    assert (meta["backbone"], meta["in_channels"], meta["small_stem"]) == ("timm:resnet18",
                                                                          str(BANDS), "false")
    assert len(meta["mean"].split(",")) == BANDS  # the data's own per-band statistics
    x = torch.randn(2, BANDS, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), ours.eval()(x))
    assert plain(x).shape == (2, plain.num_features)


@pytest.mark.parametrize("method", ["tribyol", "byol", "simclr", "simsiam", "cross"])
def test_every_method_trains_a_timm_encoder(tmp_path: Path, method: str) -> None:
    from tribyol.checkpoints import load_encoder
    from tribyol.engine import pretrain

    run = pretrain(tiny_config(tmp_path, ("model.backbone", "timm:test_resnet"),
                               ("method.name", method), ("train.max_steps", 2),
                               ("data.limit", 32)))
    assert run.name == f"{method}_timm-test_resnet_b16_e1_digits"  # no ':' in a folder name
    encoder, meta = load_encoder(run)
    assert type(encoder).__module__.startswith("timm.") and meta["backbone"] == "timm:test_resnet"


def test_an_unknown_timm_model_is_one_line_with_close_names(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--dataset", "digits", "--backbone", "timm:resnt18"]) == 2
    line = error_line(capsys)
    assert "timm:resnt18" in line and "did you mean timm:resnet18" in line
    assert main(["pretrain", "--dataset", "digits", "--backbone", "timm:nonexistent"]) == 2
    assert "timm:nonexistent" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_weights_of_the_wrong_shapes_are_one_line_and_write_nothing(tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    from safetensors.torch import save_file

    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(),
              tmp_path / "other.safetensors")
    monkeypatch.chdir(tmp_path)
    code = main(["pretrain", "--dataset", "digits", "--backbone", "timm:test_resnet",
                 "--max-steps", "1", "--set", "model.weights=other.safetensors", "--set",
                 "train.accelerator=cpu"])
    assert code == 2
    line = error_line(capsys)
    assert "other.safetensors does not fit timm:test_resnet" in line and "wrong shape" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.safetensors"]  # no run folder


def test_the_config_checks_timm_options_before_any_data_is_read(tmp_path: Path) -> None:
    from tribyol.errors import ConfigError
    from tribyol.resolve import load_config

    cfg = load_config(None, [("model.backbone", "timm:resnet18.a1_in1k")])  # a tag is fine
    assert cfg.model.backbone == "timm:resnet18.a1_in1k" and cfg.model.weights is None
    refused = [([("model.norm", "gn-ws")], ConfigError, "model.norm=gn-ws"),
               ([("model.small_stem", True)], ConfigError, "small_stem"),
               ([("model.weights", str(tmp_path / "no.pt"))], FileNotFoundError, "no.pt")]
    for extra, kind, word in refused:
        with pytest.raises(kind, match=word):
            load_config(None, [("model.backbone", "timm:resnet18"), *extra])
    with pytest.raises(ConfigError, match="model.weights is for timm backbones"):
        load_config(None, [("model.backbone", "convnet"), ("model.weights", "x.pt")])


def test_model_weights_start_a_run_with_timm_adapting_the_first_conv(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tribyol.data.pretrain import data_info_for
    from tribyol.engine.module import PretrainModule
    from tribyol.engine.run import load_pretrain_data

    torch.manual_seed(0)
    rgb = timm.create_model("test_resnet", in_chans=3, num_classes=10).state_dict()
    save_file(rgb, tmp_path / "rgb.safetensors")  # an RGB classifier; digits have 1 band
    cfg = tiny_config(tmp_path, ("model.backbone", "timm:test_resnet"),
                      ("model.weights", str(tmp_path / "rgb.safetensors")))
    module = PretrainModule(cfg, data_info_for(cfg, load_pretrain_data(cfg)))
    state = module.method.backbone.state_dict()
    first = "conv1.0.weight"
    torch.testing.assert_close(state[first], timm.models.adapt_input_conv(1, rgb[first]))
    torch.testing.assert_close(state["layer4.0.conv2.weight"], rgb["layer4.0.conv2.weight"])
    assert module.cfg.model.weights and "fc.weight" not in state
