"""Cross (reconstruction): cross-view + cross-model terms, target without gradients."""

from __future__ import annotations

import pytest
import torch

from tests.methods.helpers import make, views
from tribyol.errors import ConfigError
from tribyol.methods.losses import normalized_mse


def terms(m, v1, v2):
    with torch.no_grad():
        q1, q2 = m.predictor(m.online(v1)), m.predictor(m.online(v2))
        t1, t2 = m.target(v1), m.target(v2)
    view = normalized_mse(q1, t2) + normalized_mse(q2, t1)
    model = normalized_mse(q1, t1) + normalized_mse(q2, t2)
    return view, model


@pytest.mark.parametrize(("wv", "wm"), [(1.0, 1.0), (0.7, 0.3)])
def test_loss_is_weighted_mean_of_both_terms(wv, wm):
    m = make("cross", cross_view_weight=wv, cross_model_weight=wm)
    v1, v2 = views(2)
    out = m([v1, v2])
    view, model = terms(m, v1, v2)
    torch.testing.assert_close(out.loss.detach(), (wv * view + wm * model) / (wv + wm))
    torch.testing.assert_close(out.logs["cross_model"], model)


def test_one_directional():
    m = make("cross", symmetric=False)
    v1, v2 = views(2)
    with torch.no_grad():
        q1 = m.predictor(m.online(v1))
        expected = 0.5 * (normalized_mse(q1, m.target(v2)) + normalized_mse(q1, m.target(v1)))
    torch.testing.assert_close(m([v1, v2]).loss.detach(), expected)


def test_without_cross_model_term_it_is_byol():
    vs = views(2)
    cross = make("cross", cross_model_weight=0.0)(vs).loss
    byol = make("byol")(vs).loss
    torch.testing.assert_close(cross, byol)


def test_cross_model_term_hand_computed_at_init():
    # At initialisation the target equals the online network, so the cross-model term is
    # l(q(v), z(v)) computed from the online network alone.
    m = make("cross", cross_view_weight=0.0, symmetric=False)
    v1, v2 = views(2)
    with torch.no_grad():
        z = m.projector(m.backbone(v1))
        q = m.predictor(z)
        cos = (q / q.norm(dim=1, keepdim=True) * z / z.norm(dim=1, keepdim=True)).sum(1)
    torch.testing.assert_close(m([v1, v2]).loss.detach(), (2 - 2 * cos).mean())


def test_target_takes_no_gradient_and_follows_by_ema():
    m = make("cross", tau=0.5)
    m(views(2)).loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    for name, p in m.online.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is not None for p in m.predictor.parameters())
    with torch.no_grad():
        for p in m.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target.parameters()]
    m.after_optimizer_step(1, 10)
    for t, t0, s in zip(m.target.parameters(), before, m.online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * t0 + 0.5 * s)


@pytest.mark.parametrize("bad", [{"cross_model_weight": -1.0},
                                 {"cross_view_weight": 0.0, "cross_model_weight": 0.0}])
def test_bad_weights_rejected(bad):
    with pytest.raises(ConfigError):
        make("cross", **bad)
