"""Encoders: the small-image stem, any channel count, out_dim, and the ConvNet."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from tribyol.nets import BACKBONES, MLPHead, build_backbone, uses_small_stem
from tribyol.nets.backbones import ConvNet


def test_small_stem_rule() -> None:
    assert uses_small_stem(16) and uses_small_stem(32) and uses_small_stem(64)
    assert not uses_small_stem(65) and not uses_small_stem(96) and not uses_small_stem(224)
    assert uses_small_stem(224, small_stem=True)
    assert not uses_small_stem(32, small_stem=False)


@pytest.mark.parametrize(("name", "out_dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_small_stem_at_64px_or_less(name: str, out_dim: int) -> None:
    net = build_backbone(name, in_channels=3, image_size=64)
    assert isinstance(net, torchvision.models.ResNet)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1) and net.conv1.bias is None
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)
    assert net.out_dim == out_dim
    net.eval()
    with torch.no_grad():
        feats = net(torch.randn(2, 3, 16, 16))
        # No downsampling in the stem: layer1 keeps the full 16 x 16 grid.
        grid = net.layer1(net.relu(net.bn1(net.conv1(torch.randn(1, 3, 16, 16)))))
    assert tuple(feats.shape) == (2, out_dim)
    assert tuple(grid.shape[-2:]) == (16, 16)


def test_resnet_standard_stem_above_64px() -> None:
    net = build_backbone("resnet18", in_channels=3, image_size=96)
    reference = torchvision.models.resnet18()
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, nn.MaxPool2d)
    # Same parameter names and shapes as torchvision's, fc aside.
    ours = {k: v.shape for k, v in net.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert ours == theirs
    net.eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(1, 3, 96, 96)).shape) == (1, 512)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("image_size", [28, 96])
def test_resnet_takes_any_channel_count(channels: int, image_size: int) -> None:
    net = build_backbone("resnet18", in_channels=channels, image_size=image_size)
    assert net.conv1.in_channels == channels
    assert net.conv1.kernel_size == ((3, 3) if image_size <= 64 else (7, 7))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, channels, image_size, image_size))
    assert tuple(out.shape) == (2, 512) and torch.isfinite(out).all()
    with pytest.raises(RuntimeError):
        net(torch.randn(1, channels + 1, image_size, image_size))


def test_small_stem_can_be_forced_either_way() -> None:
    forced_off = build_backbone("resnet18", 1, 32, small_stem=False)
    assert forced_off.conv1.kernel_size == (7, 7) and forced_off.conv1.in_channels == 1
    assert isinstance(forced_off.maxpool, nn.MaxPool2d)
    forced_on = build_backbone("resnet18", 3, 224, small_stem=True)
    assert forced_on.conv1.kernel_size == (3, 3) and isinstance(forced_on.maxpool, nn.Identity)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_convnet_width_and_channels(channels: int) -> None:
    net = build_backbone("convnet", in_channels=channels, image_size=16, width=4)
    assert isinstance(net, ConvNet) and net.out_dim == 32
    out = net(torch.randn(3, channels, 16, 16))
    assert tuple(out.shape) == (3, 32)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert build_backbone("convnet", 3, 64, width=8).out_dim == 64
    assert tuple(build_backbone("convnet", 3, 9, width=2)(torch.randn(2, 3, 9, 9)).shape) == (2, 16)


def test_every_other_registered_backbone_has_out_dim() -> None:
    assert {"convnet", "resnet18", "resnet50"} <= set(BACKBONES)
    for name in sorted(set(BACKBONES) - {"resnet18", "resnet50"}):  # those two: tested above
        net = build_backbone(name, 3, 16, width=4)
        net.eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 16, 16)).shape == (1, net.out_dim), name


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("resnet19", 3, 32)


def test_mlp_head_shape() -> None:
    head = MLPHead(32, hidden_dim=16, out_dim=8)
    assert tuple(head(torch.randn(4, 32)).shape) == (4, 8)
    assert (head.in_dim, head.hidden_dim, head.out_dim) == (32, 16, 8)
