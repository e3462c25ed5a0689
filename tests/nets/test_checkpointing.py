"""``model.activation_checkpointing``: stages recomputed in backward, the same numbers as without.

Tolerances (fp32 on CPU): loss atol 1e-6; every gradient and BatchNorm buffer rtol 1e-5,
atol 1e-6. The recomputation runs the same kernels on the same inputs, so they are usually
bitwise equal; the tolerance only allows for a nondeterministic kernel.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from tribyol.cli import main
from tribyol.nets import build_backbone
from tribyol.nets.backbones import enable_activation_checkpointing, stages

GRAD_TOL = {"rtol": 1e-5, "atol": 1e-6}

NETS = [
    pytest.param({"name": "convnet", "width": 8}, id="convnet-w8"),
    pytest.param({"name": "resnet18", "small_stem": True}, id="resnet18-small-stem"),
]


def _pair(spec: dict) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    plain = build_backbone(in_channels=3, image_size=32, **spec)
    return plain, enable_activation_checkpointing(copy.deepcopy(plain))


def _step(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Two views through the encoder before one backward, as BYOL's online network does."""
    net.train()
    net.zero_grad(set_to_none=True)
    loss = ((net(x1) * w).sum(1) ** 2).mean() + (net(x2) * w).sum(1).tanh().mean()
    loss.backward()
    return loss.detach()


def _count_stage_runs(net: nn.Module) -> list[int]:
    """Forward calls of each stage's first layer (a recomputation calls it again)."""
    counts = [0] * 4
    for i, stage in enumerate(stages(net)):
        first = next(m for m in stage.modules() if isinstance(m, nn.Conv2d))
        first.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("spec", NETS)
def test_same_loss_gradients_and_running_stats(spec: dict) -> None:
    plain, ckpt = _pair(spec)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(4, 3, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g)
    w = torch.randn(plain.out_dim, generator=g)
    runs = _count_stage_runs(ckpt)

    loss_plain, loss_ckpt = _step(plain, x1, x2, w), _step(ckpt, x1, x2, w)

    assert runs == [4, 4, 4, 4]  # two views, each run in forward and again in backward
    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=1e-6)
    for (name, p), (name_c, p_c) in zip(plain.named_parameters(), ckpt.named_parameters(),
                                        strict=True):
        assert name == name_c and p_c.grad is not None, name
        torch.testing.assert_close(p_c.grad, p.grad, **GRAD_TOL, msg=f"gradient of {name}")
    # BatchNorm buffers: updated once per forward, not again by the recomputation.
    for (name, b), (_, b_c) in zip(plain.named_buffers(), ckpt.named_buffers(), strict=True):
        torch.testing.assert_close(b_c, b, **GRAD_TOL, msg=f"buffer {name}")
    assert all(int(b) == 2 for n, b in ckpt.named_buffers() if n.endswith("num_batches_tracked"))


@pytest.mark.parametrize("spec", NETS)
def test_state_dict_unchanged(spec: dict) -> None:
    plain, ckpt = _pair(spec)
    sd, sd_c = plain.state_dict(), ckpt.state_dict()
    assert list(sd_c) == list(sd)
    assert all(torch.equal(sd_c[k], sd[k]) for k in sd)
    plain.load_state_dict(sd_c)  # and the other way: exports load into the plain network
    ckpt.load_state_dict(sd)
    # The EMA target is a deep copy of the encoder: it keeps the same names.
    assert list(copy.deepcopy(ckpt).state_dict()) == list(sd)


@pytest.mark.parametrize("spec", NETS)
def test_eval_and_no_grad_are_not_recomputed(spec: dict) -> None:
    plain, ckpt = _pair(spec)
    runs = _count_stage_runs(ckpt)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain.eval()
    ckpt.eval()
    out_plain, out_ckpt = plain(x), ckpt(x)
    out_ckpt.sum().backward()
    assert runs == [1, 1, 1, 1]
    torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)
    ckpt.train()
    with torch.no_grad():  # e.g. the target network: nothing to recompute for
        ckpt(x)
    assert runs == [2, 2, 2, 2]


def test_off_by_default() -> None:
    net = build_backbone("convnet", in_channels=3, image_size=32, width=8)
    runs = _count_stage_runs(net)
    net.train()
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert runs == [1, 1, 1, 1]


def _pretrain(runs: Path, *extra: str) -> dict[str, torch.Tensor]:
    assert main([
        "pretrain", "--method", "tribyol", "--dataset", "digits", "--limit", "64",
        "--batch-size", "16", "--backbone", "convnet", "--precision", "32",
        "--accelerator", "cpu", "--runs-root", str(runs), "--set", "model.width=8",
        "--set", "model.hidden_dim=16", "--set", "model.proj_dim=8",
        "--set", "train.progress_bar=false", "--set", "train.max_steps=2", *extra,
    ]) == 0
    (ckpt,) = runs.glob("*/checkpoints/last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_pretrain_with_activation_checkpointing(tmp_path: Path) -> None:
    plain = _pretrain(tmp_path / "plain")
    ckpt = _pretrain(tmp_path / "ckpt", "--set", "model.activation_checkpointing=true")
    assert list(ckpt) == list(plain)
    for k in plain:  # two SGD steps from the same start: the same weights and statistics
        torch.testing.assert_close(ckpt[k], plain[k], **GRAD_TOL, msg=k)
