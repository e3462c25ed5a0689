"""The shared pieces: the EMA update and its schedule (the losses: ``test_losses.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tribyol.methods.base import ema_update_, tau_at
from tribyol.nets.heads import frozen_copy


def test_ema_update_is_exact():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = frozen_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in target.parameters()]
    ema_update_(target, online, 0.9)
    for t, t0, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=0, atol=1e-7)
        assert not t.requires_grad


def test_tau_schedules():
    assert tau_at(50, 100, 0.996, "constant") == 0.996
    assert tau_at(0, 100, 0.996, "cosine") == pytest.approx(0.996)
    assert tau_at(100, 100, 0.996, "cosine") == pytest.approx(1.0)
    assert tau_at(50, 100, 0.996, "cosine") == pytest.approx(0.998)
