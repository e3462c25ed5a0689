"""SimSiam: the symmetric negative-cosine loss, stop-gradient, predictor bottleneck."""

from __future__ import annotations

import math

import pytest
import torch

from tests.methods.helpers import make, views
from tribyol.errors import ConfigError
from tribyol.methods.losses import negative_cosine
from tribyol.methods.simsiam import simsiam_loss


def test_loss_hand_computed():
    p1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cos = 1, 1/sqrt(2)
    p2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    z1 = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # cos = -1, 1
    assert negative_cosine(p1, z2).item() == pytest.approx(-(1 + 1 / math.sqrt(2)) / 2)
    assert negative_cosine(p2, z1).item() == pytest.approx(0.0, abs=1e-7)
    expected = 0.5 * -(1 + 1 / math.sqrt(2)) / 2
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected)


def test_stop_gradient_on_the_projections():
    p1, p2, z1, z2 = (torch.randn(4, 3, requires_grad=True) for _ in range(4))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None
    assert torch.isfinite(p1.grad).all() and p1.grad.abs().sum() > 0


def test_one_step_gradients_flow_everywhere():
    m = make("simsiam")
    v1, v2 = views(2)
    out = m([v1, v2])
    out.loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with torch.no_grad():
        z1, z2 = m.projector(m.backbone(v1)), m.projector(m.backbone(v2))
        expected = simsiam_loss(m.predictor(z1), m.predictor(z2), z1, z2)
    torch.testing.assert_close(out.loss.detach(), expected)


def test_predictor_bottleneck_option():
    assert make("simsiam").predictor[0].out_features == 2  # proj_dim 8 // 4
    assert make("simsiam", pred_hidden_dim=5).predictor[0].out_features == 5
    with pytest.raises(ConfigError):
        make("simsiam", pred_hidden_dim=0)
