"""BYOL: symmetrised loss, targets without gradients, one EMA step per optimizer step."""

from __future__ import annotations

import pytest
import torch

from tests.methods.helpers import make, views
from tribyol.methods.losses import normalized_mse


def test_symmetric_loss_matches_formula():
    m = make()
    v1, v2 = views(2)
    loss = m(views(2)).loss
    with torch.no_grad():
        q1, q2 = m.predictor(m.online(v1)), m.predictor(m.online(v2))
        t1, t2 = m.target(v1), m.target(v2)
    expected = normalized_mse(q1, t2) + normalized_mse(q2, t1)
    torch.testing.assert_close(loss.detach(), expected)


def test_one_directional_loss():
    m = make(symmetric=False)
    v1, v2 = views(2)
    loss = m([v1, v2]).loss
    with torch.no_grad():
        expected = normalized_mse(m.predictor(m.online(v1)), m.target(v2))
    torch.testing.assert_close(loss.detach(), expected)


def test_target_gets_no_gradient_and_is_not_trained():
    m = make()
    m(views(2)).loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.online.parameters())
    trainable = {id(p) for p in m.trainable_parameters()}
    assert not trainable & {id(p) for p in m.target.parameters()}


def test_ema_step_after_optimizer_step():
    m = make(tau=0.9)
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    target_before = [p.clone() for p in m.target.parameters()]
    m(views(2)).loss.backward()
    opt.step()
    m.after_optimizer_step(1, 10)
    for t, t0, o in zip(m.target.parameters(), target_before, m.online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=0, atol=1e-6)


def test_cosine_tau_rises_from_base_to_final():
    m = make(tau=0.99, tau_schedule="cosine")
    assert [m.current_tau(s, 10) for s in (0, 5, 10)] == pytest.approx([0.99, 0.995, 1.0])
    assert make(tau=0.99).current_tau(5, 10) == 0.99  # constant by default
