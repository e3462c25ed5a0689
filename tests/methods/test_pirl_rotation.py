"""PIRL-Rotation: batched rotations, loss and gradients."""

from __future__ import annotations

import torch

from tests.methods.test_byol import make, views
from tribyol.methods.memory_bank import info_nce
from tribyol.methods.pirl_rotation import rotate_batch


def test_rotation_hand_computed():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2).repeat(4, 1, 1, 1)
    out = rotate_batch(x, torch.tensor([0, 1, 2, 3]))
    assert out[0, 0].tolist() == [[1, 2], [3, 4]]
    assert out[1, 0].tolist() == [[2, 4], [1, 3]]  # 90 degrees counter-clockwise
    assert out[2, 0].tolist() == [[4, 3], [2, 1]]
    assert out[3, 0].tolist() == [[3, 1], [4, 2]]


def test_rotation_per_sample_matches_rot90():
    x = torch.randn(6, 2, 5, 5)
    turns = torch.tensor([3, 0, 2, 1, 1, 0])
    out = rotate_batch(x, turns)
    for b in range(6):
        torch.testing.assert_close(out[b], torch.rot90(x[b], int(turns[b]), dims=(1, 2)))


def test_loss_and_gradients():
    m = make("pirl-rotation", bank_size=8)
    v, v_key = views(2)
    bank_before = m.bank.queue.clone()
    torch.manual_seed(3)
    out = m([v, v_key])
    out.loss.backward()
    torch.manual_seed(3)
    with torch.no_grad():
        g = m.transformed_embedding(v)
        f = m.head_f(m.backbone(v))
        key = m.key(v_key)
    expected = 0.5 * info_nce(g, key, bank_before, 0.07) + 0.5 * info_nce(f, key, bank_before, 0.07)
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-4, atol=1e-5)
    for name, p in m.named_parameters():
        if name.startswith("key."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert int(m.bank.ptr) == 6  # a batch of 6 keys written
