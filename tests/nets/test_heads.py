"""``byol_heads``: the projector, predictor, online network and frozen targets of BYOL,
TriBYOL and Cross (and SimSiam's heads), built in one place."""

from __future__ import annotations

import torch

from tests.methods.helpers import make
from tribyol.methods import MethodContext
from tribyol.nets import build_backbone
from tribyol.nets.heads import byol_heads, projection_head


def context() -> MethodContext:
    torch.manual_seed(0)
    return MethodContext(build_backbone("convnet", 1, 16, width=4), hidden_dim=16, proj_dim=8)


def test_byol_heads_shapes_sharing_and_frozen_targets():
    ctx = context()
    heads = byol_heads(ctx, num_targets=2)
    assert heads.online[0] is ctx.backbone and heads.online[1] is heads.projector
    assert heads.projector[0].in_features == ctx.backbone.out_dim
    assert heads.projector[0].out_features == 16 and heads.projector[-1].out_features == 8
    assert heads.predictor[0].in_features == 8 and heads.predictor[0].out_features == 16
    assert len(heads.targets) == 2
    online = heads.online.state_dict()
    for target in heads.targets:
        assert target is not heads.online
        assert not any(p.requires_grad for p in target.parameters())
        for key, value in target.state_dict().items():  # starts as an exact copy
            assert torch.equal(value, online[key]), key
    assert all(p.requires_grad for p in heads.online.parameters())


def test_byol_heads_predictor_bottleneck_and_no_target():
    heads = byol_heads(context(), num_targets=0, pred_hidden_dim=2)
    assert heads.predictor[0].out_features == 2 and heads.targets == []


def test_projection_head_draws_what_byol_heads_draws_first():
    a, b = projection_head(context()), byol_heads(context()).projector
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_methods_use_the_heads_they_were_given():
    for name in ("byol", "cross"):
        m = make(name)
        assert m.online[0] is m.backbone and m.online[1] is m.projector
        assert not any(p.requires_grad for p in m.target.parameters())
    m = make("tribyol", target_policy="alternating-ema")
    assert m.online[1] is m.projector and len(m.targets) == 2
    assert make("simsiam").predictor[0].out_features == 2  # SimSiam's bottleneck: 8 // 4
