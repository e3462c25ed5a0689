"""timm encoders for N bands: built offline, strict-key exports, local weights adapted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tribyol.errors import USER_ERRORS, ConfigError
from tribyol.nets.timm_backbone import timm_encoder

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def images(c: int, b: int = 2, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, size, size, generator=g)


def test_13_band_resnet18_forward_and_strict_safetensors_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = timm_encoder("timm:resnet18", in_chans=13).eval()
    assert net.out_dim == net.num_features == 512
    x = images(13)
    with torch.no_grad():
        features = net(x)
    assert features.shape == (2, 512)
    safetensors_torch.save_file(net.state_dict(), tmp_path / "encoder.safetensors")
    # What a user does with the export: plain timm, strict keys.
    plain = timm.create_model("resnet18", in_chans=13, num_classes=0).eval()
    plain.load_state_dict(safetensors_torch.load_file(tmp_path / "encoder.safetensors"), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), features)


def test_local_weights_load_and_first_conv_adapts(tmp_path: Path) -> None:
    torch.manual_seed(1)
    rgb = timm.create_model("test_resnet", in_chans=3, num_classes=10)  # a classifier checkpoint
    torch.save({"state_dict": rgb.state_dict()}, tmp_path / "rgb.pt")
    want = {k: v for k, v in rgb.state_dict().items() if not k.startswith("fc.")}
    same = timm_encoder("test_resnet", 3, weights=tmp_path / "rgb.pt")
    assert same.state_dict().keys() == want.keys()  # the classifier dropped, the rest loaded
    for key, value in want.items():
        torch.testing.assert_close(same.state_dict()[key], value)
    net = timm_encoder("test_resnet", 13, weights=tmp_path / "rgb.pt")
    first = net.pretrained_cfg["first_conv"] + ".weight"
    assert net.state_dict()[first].shape[1] == 13
    expected = timm.models.adapt_input_conv(13, want[first])  # timm's own adaptation
    torch.testing.assert_close(net.state_dict()[first], expected)
    torch.testing.assert_close(net.state_dict()["layer4.0.conv2.weight"], want["layer4.0.conv2.weight"])


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ConfigError) as err:
        timm_encoder("timm:resnet1", 3)
    message = str(err.value)
    assert "resnet1" in message and "resnet18" in message and "\n" not in message


def test_wrong_shape_weights_are_one_error_line(tmp_path: Path) -> None:
    # timm's tiny test models keep this fast; the checks are the same for any architecture.
    other = timm.create_model("test_efficientnet", num_classes=0)
    safetensors_torch.save_file(other.state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(ConfigError) as err:
        timm_encoder("test_resnet", 3, weights=tmp_path / "other.safetensors")
    message = str(err.value)
    assert "other.safetensors" in message and "\n" not in message and "; " in message
    state = timm.create_model("test_resnet", num_classes=0).state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4 and not k.startswith("conv1."))
    state[key] = torch.zeros(*state[key].shape[:2], 5, 5)
    safetensors_torch.save_file(state, tmp_path / "wide.safetensors")
    with pytest.raises(ConfigError, match=f"wrong shape, first {key}"):
        timm_encoder("test_resnet", 3, weights=tmp_path / "wide.safetensors")


def test_missing_or_unsafe_weight_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.weights"):
        timm_encoder("test_resnet", 3, weights=tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(USER_ERRORS) as err:
        timm_encoder("test_resnet", 3, weights=tmp_path / "junk.pt")
    assert "junk.pt" in str(err.value) and "weights_only" not in str(err.value)


def test_image_size_reaches_vits_only() -> None:
    vit = timm_encoder("timm:test_vit", 4, image_size=32).eval()
    with torch.no_grad():
        assert vit(images(4, size=32)).shape == (2, vit.out_dim)
    cnn = timm_encoder("timm:test_resnet", 4, image_size=32)  # no img_size argument: left out
    assert cnn.out_dim == cnn.num_features


def test_build_backbone_takes_timm_names_and_refuses_what_timm_models_lack() -> None:
    from tribyol.nets import build_backbone, is_backbone

    net = build_backbone("timm:test_resnet", in_channels=5, image_size=16)
    assert net.out_dim == net.num_features and net(images(5)).shape == (2, net.out_dim)
    assert is_backbone("timm:test_resnet") and is_backbone("resnet18")
    assert not is_backbone("timm:nonexistent") and not is_backbone("resnet19")
    for kwargs, word in (({"norm": "gn"}, "model.norm=gn"), ({"small_stem": True}, "small_stem")):
        with pytest.raises(ConfigError, match=word):
            build_backbone("timm:test_resnet", in_channels=3, image_size=16, **kwargs)
    with pytest.raises(ConfigError, match="model.weights is for timm backbones"):
        build_backbone("resnet18", in_channels=3, image_size=16, weights="any.pt")


def test_activation_checkpointing_on_timm_resnets_gives_the_same_gradients() -> None:
    from tribyol.nets import build_backbone

    torch.manual_seed(0)
    plain = build_backbone("timm:test_resnet", in_channels=3, image_size=16)
    torch.manual_seed(0)
    recomputed = build_backbone("timm:test_resnet", in_channels=3, image_size=16,
                                activation_checkpointing=True)
    assert recomputed.state_dict().keys() == plain.state_dict().keys()  # exports unchanged
    assert type(recomputed.layer1).__name__ == "_CheckpointedStage"
    x = images(3, b=4).requires_grad_(False)
    for net in (plain, recomputed):
        net(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    torch.testing.assert_close(plain.bn1.running_mean, recomputed.bn1.running_mean)
    torch.testing.assert_close(plain.layer1[0].bn1.running_var, recomputed.layer1[0].bn1.running_var)
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        build_backbone("timm:test_vit", in_channels=3, image_size=32, activation_checkpointing=True)
