"""PIRL-Rotation: batched rotations, loss and gradients."""

from __future__ import annotations

import torch

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
