"""TriBYOL with N views, by hand: identity networks make every term a cosine of raw vectors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.methods.helpers import make


def identity_tribyol(**options):
    """A TriBYOL whose online, predictor and targets are all the identity: q(v) = z(v) = v."""
    m = make("tribyol", **options)
    m.backbone = nn.Identity()
    m.projector = m.predictor = nn.Identity()
    m.online = nn.Identity()
    m.targets = nn.ModuleList([nn.Identity() for _ in m.targets])
    return m


def ell(a, b) -> float:
    """2 - 2 cos(a, b) for plain lists."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return 2 - 2 * dot / (math.hypot(*a) * math.hypot(*b))


def test_four_views_loss_by_hand():
    vecs = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]]  # anchor, then three views
    m = identity_tribyol(num_views=4)
    loss = m([torch.tensor([v]) for v in vecs]).loss.item()
    # pairs (anchor, v_j): cos = 0, -1, 1/sqrt(2); with q = z every pair's two directions agree
    pair = [ell(vecs[0], v) for v in vecs[1:]]
    assert pair == pytest.approx([2.0, 4.0, 2 - math.sqrt(2)])
    assert loss == pytest.approx(2 / 3 * sum(pair), rel=1e-6)


def test_three_views_equal_the_posters_formula_with_distinct_targets():
    # q = identity, target 1 negates, target 2 swaps the coordinates: every term differs.
    m = identity_tribyol(target_policy="independent-init")
    neg, swap = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        neg.weight.copy_(-torch.eye(2))
        swap.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    m.targets = nn.ModuleList([neg, swap])
    v, v1, v2 = [3.0, 1.0], [1.0, 2.0], [0.5, -1.0]
    z1 = lambda a: [-a[0], -a[1]]  # noqa: E731
    z2 = lambda a: [a[1], a[0]]  # noqa: E731
    expected = 0.5 * (ell(v, z1(v1)) + ell(v1, z1(v))) + 0.5 * (ell(v, z2(v2)) + ell(v2, z2(v)))
    loss = m([torch.tensor([x]) for x in (v, v1, v2)]).loss.item()
    assert loss == pytest.approx(expected, rel=1e-6)
