"""``model.norm``: bn | gn | gn-ws (GroupNorm, weight-standardised convs), encoder and heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from tests.test_export import export, scramble, write_run
from tribyol.checkpoints import load_encoder
from tribyol.cli import main
from tribyol.config import to_dict
from tribyol.nets import MLPHead, build_backbone
from tribyol.nets.backbones import WSConv2d, enable_activation_checkpointing


def _bns(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("norm", ["gn", "gn-ws"])
@pytest.mark.parametrize("spec", [{"name": "convnet", "width": 8, "norm_groups": 4},
                                  {"name": "resnet18", "small_stem": True}], ids=["convnet", "resnet18"])
def test_no_batchnorm_left(norm: str, spec: dict) -> None:
    net = build_backbone(in_channels=3, image_size=32, norm=norm, **spec)
    assert not _bns(net) and any(isinstance(m, nn.GroupNorm) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(isinstance(m, WSConv2d) for m in convs) == (norm == "gn-ws")
    head = MLPHead(16, 32, 8, norm=norm)
    assert not _bns(head) and isinstance(head[1], nn.LayerNorm)
    assert isinstance(MLPHead(16, 32, 8)[1], nn.BatchNorm1d)  # bn stays the default


def test_standardized_weight_has_zero_mean_unit_std() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(3, 5, 3)
    with torch.no_grad():
        conv.weight.mul_(7).add_(3)
    w = conv.standardized_weight().flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(w.std(1, unbiased=False), torch.ones(5), atol=1e-4, rtol=0)
    assert list(conv.state_dict()) == list(nn.Conv2d(3, 5, 3).state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 3, 8, 8)
    plain = nn.functional.conv2d(x, conv.standardized_weight(), conv.bias)
    torch.testing.assert_close(conv(x), plain)


@pytest.mark.parametrize("norm", ["bn", "gn-ws"])
def test_batch_independence(norm: str) -> None:
    """In train mode, sample 0's features depend on its batch-mates under bn only."""
    torch.manual_seed(0)
    net = build_backbone("convnet", 3, 32, width=8, norm=norm, norm_groups=4).train()
    x = torch.randn(4, 3, 32, 32)
    other = torch.cat([x[:1], 5 * torch.randn(3, 3, 32, 32) + 2])
    with torch.no_grad():
        same = torch.allclose(net(x)[0], net(other)[0], atol=1e-5)
    assert same == (norm == "gn-ws")


def test_activation_checkpointing_with_gn_ws() -> None:
    torch.manual_seed(0)
    plain = build_backbone("convnet", 3, 32, width=8, norm="gn-ws", norm_groups=4)
    ckpt = enable_activation_checkpointing(build_backbone("convnet", 3, 32, width=8,
                                                          norm="gn-ws", norm_groups=4))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for net in (plain, ckpt):
        net.train()(x).square().sum().backward()
    for (k, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=k)


def _cli_error(capsys: pytest.CaptureFixture, tmp_path: Path, *sets: str) -> str:
    args = ["pretrain", "--dataset", "digits", "--runs-root", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not any(tmp_path.iterdir())  # refused before anything was written
    return err[0]


def test_groups_that_do_not_divide_are_refused(capsys, tmp_path: Path) -> None:
    err = _cli_error(capsys, tmp_path, "model.norm=gn", "model.width=8")
    assert "model.norm_groups=32" in err and "8" in err
    err = _cli_error(capsys, tmp_path, "model.norm=gn-ws", "model.backbone=resnet18",
                     "model.norm_groups=48")
    assert "model.norm_groups=48" in err


def test_sync_bn_with_gn_is_refused(capsys, tmp_path: Path) -> None:
    err = _cli_error(capsys, tmp_path, "model.norm=gn", "model.sync_bn=true")
    assert "model.sync_bn" in err and "model.norm=gn" in err


def test_two_step_pretrain_with_gn_ws(tmp_path: Path) -> None:
    assert main([
        "pretrain", "--method", "tribyol", "--dataset", "digits", "--limit", "64",
        "--batch-size", "16", "--backbone", "convnet", "--precision", "32",
        "--accelerator", "cpu", "--runs-root", str(tmp_path), "--set", "model.width=8",
        "--set", "model.norm=gn-ws", "--set", "model.norm_groups=4",
        "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
        "--set", "train.progress_bar=false", "--set", "train.max_steps=2",
    ]) == 0
    (run,) = tmp_path.glob("*/checkpoints/last.ckpt")
    state = torch.load(run, map_location="cpu", weights_only=True)["state_dict"]
    # Encoder, heads and targets: GroupNorm / LayerNorm, no BatchNorm statistics anywhere.
    assert not [k for k in state if "running_mean" in k]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    encoder, meta = load_encoder(run.parent.parent)
    assert (meta["norm"], meta["norm_groups"]) == ("gn-ws", "4") and not _bns(encoder)


class StandardizedConv(nn.Conv2d):  # docs/architecture.md's snippet, outside tribyol's builders
    def forward(self, x):
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(x, (self.weight - mean) / torch.sqrt(var + 1e-5), self.bias)


def test_gn_ws_export_loads_into_plain_torchvision(tiny, tmp_path: Path) -> None:
    from tribyol.data.pretrain import data_info_for
    from tribyol.engine.module import PretrainModule
    from tribyol.engine.run import load_pretrain_data, run_name

    cfg = tiny(("model.backbone", "resnet18"), ("model.norm", "gn-ws"), ("data.limit", 8))
    info = data_info_for(cfg, load_pretrain_data(cfg))
    module = PretrainModule(to_dict(cfg), vars(info))
    scramble(module.method.backbone, seed=1)
    run = write_run(Path(cfg.runs_root) / run_name(cfg), module.state_dict(), dict(module.hparams))
    out = tmp_path / "x.safetensors"
    meta = export(run, out)
    assert (meta["norm"], meta["norm_groups"], meta["small_stem"]) == ("gn-ws", "32", "true")

    net = torchvision.models.resnet18(norm_layer=lambda c: nn.GroupNorm(32, c))
    net.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)  # small_stem=true, in_channels=1
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    for m in net.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = StandardizedConv
    net.load_state_dict(load_file(out))

    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loaded, _ = load_encoder(out)
    with torch.no_grad():
        expected = loaded.eval()(x)
        torch.testing.assert_close(net.eval()(x), expected, atol=1e-5, rtol=1e-5)
        plain = module.method.backbone.eval().to(memory_format=torch.contiguous_format)
        torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=1e-5)
