"""The losses in ``methods/losses.py``, each against values worked out by hand on tiny tensors
(a wrong sign, scale or temperature fails), and each defined there only."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tribyol.methods.losses as losses
from tribyol.methods.losses import info_nce, negative_cosine, normalized_mse, nt_xent

R = 1 / math.sqrt(2)  # cos 45 degrees


def test_normalized_mse_hand_computed():
    q = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-2.0, 0.0]])
    # orthogonal: 2 - 0; 45 degrees: 2 - 2/sqrt(2); opposite: 2 + 2
    expected = (2.0 + (2.0 - math.sqrt(2.0)) + 4.0) / 3
    assert normalized_mse(q, z).item() == pytest.approx(expected, abs=1e-6)


def test_normalized_mse_two_by_two():
    q = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[5.0, 0.0], [0.0, -3.0]])  # cos 1 (any length), cos -1/sqrt(2)
    assert normalized_mse(q, z).item() == pytest.approx(((2 - 2) + (2 + 2 * R)) / 2, abs=1e-6)
    # it is the squared distance of the unit vectors, summed over the dimension
    qn, zn = q / q.norm(dim=1, keepdim=True), z / z.norm(dim=1, keepdim=True)
    assert normalized_mse(q, z).item() == pytest.approx(((qn - zn) ** 2).sum(1).mean().item())


def test_normalized_mse_is_fp32_under_bf16_inputs():
    q = torch.randn(4, 8).bfloat16()
    z = torch.randn(4, 8).bfloat16()
    assert normalized_mse(q, z).dtype == torch.float32


def test_negative_cosine_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 3.0], [0.0, -1.0]])  # cos 1/sqrt(2), -1
    assert negative_cosine(p, z).item() == pytest.approx(-(R - 1) / 2, abs=1e-6)
    assert negative_cosine(p, 4 * p).item() == pytest.approx(-1.0, abs=1e-6)  # its minimum


def test_negative_cosine_stops_the_gradient_of_z():
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    negative_cosine(p, z).backward()
    assert z.grad is None
    # d(-cos)/dp at p = e1, z = e2 (orthogonal, unit): -(z - cos * p) / |p| = (0, -1)
    torch.testing.assert_close(p.grad, torch.tensor([[0.0, -1.0]]))


def nt_xent_two_pairs_by_hand(t: float) -> float:
    """z1 = [e1, e2], z2 = [(1, 1), (1, -1)]: the cosines between the four unit vectors are
    0, +-1/sqrt(2); each anchor's denominator holds the three other vectors."""
    e = math.exp
    anchors = [
        # (cos to the positive, cosines to the two negatives)
        (R, [0.0, R]),  # e1: positive (1,1)/sqrt2; negatives e2, (1,-1)/sqrt2
        (-R, [0.0, R]),  # e2: positive (1,-1)/sqrt2; negatives e1, (1,1)/sqrt2
        (R, [R, 0.0]),  # (1,1)/sqrt2: positive e1; negatives e2, (1,-1)/sqrt2
        (-R, [R, 0.0]),  # (1,-1)/sqrt2: positive e2; negatives e1, (1,1)/sqrt2
    ]
    terms = [-math.log(e(pos / t) / (e(pos / t) + sum(e(c / t) for c in negs)))
             for pos, negs in anchors]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("t", [1.0, 0.5, 0.1])
def test_nt_xent_two_pairs_hand_computed(t):
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [3.0, -3.0]])
    assert nt_xent(z1, z2, t).item() == pytest.approx(nt_xent_two_pairs_by_hand(t), rel=1e-6)


def test_nt_xent_identity_views():
    e = torch.eye(2)
    # Each anchor: positive at cosine 1, two negatives at cosine 0 -> -log(e / (e + 2)).
    assert nt_xent(e, e.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def stand_in_gather(z1: torch.Tensor, z2: torch.Tensor, mine: slice):
    """An all-gather for a rank holding rows ``mine``: returns every rank's normalised first
    views on the first call and second views on the second, as ``simclr.gather_with_grad``."""
    everyone = iter([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])

    def gather(a: torch.Tensor) -> torch.Tensor:
        keys = next(everyone)
        torch.testing.assert_close(a, keys[mine])  # the rank's own slice, normalised
        return keys

    return gather


def test_nt_xent_gathered_keys_give_the_global_batch_loss():
    """Two stand-in ranks of 2 images each: the mean of their losses is the loss over the whole
    batch of 4, so each rank finds its anchors at its own offset among the gathered keys."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    rank0 = nt_xent(z1[:2], z2[:2], 0.5, stand_in_gather(z1, z2, slice(0, 2)), rank=0)
    rank1 = nt_xent(z1[2:], z2[2:], 0.5, stand_in_gather(z1, z2, slice(2, 4)), rank=1)
    assert ((rank0 + rank1) / 2).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-6)
    # rank 1's anchors at rank 0's offset would pair with the wrong keys
    wrong = nt_xent(z1[2:], z2[2:], 0.5, stand_in_gather(z1, z2, slice(2, 4)), rank=0)
    assert wrong.item() != pytest.approx(rank1.item(), rel=1e-3)


def test_info_nce_hand_computed():
    q = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos 1, 1/sqrt(2)
    negs = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])  # q0: cos 0, -1; q1: cos 1, 0
    e, t = math.exp, 0.5
    first = -math.log(e(1 / t) / (e(1 / t) + e(0 / t) + e(-1 / t)))
    second = -math.log(e(R / t) / (e(R / t) + e(1 / t) + e(0 / t)))
    assert info_nce(q, p, negs, t).item() == pytest.approx((first + second) / 2, rel=1e-6)
    # excluding q1's first negative (cos 1) takes it out of q1's denominator only
    exclude = torch.tensor([[False, False], [True, False]])
    second = -math.log(e(R / t) / (e(R / t) + e(0 / t)))
    assert info_nce(q, p, negs, t, exclude).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_info_nce_gradient_only_to_the_query():
    q, p, n = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    info_nce(q, p, n, 0.1).backward()
    assert p.grad is None and n.grad is None
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


LOSSES = ("normalized_mse", "negative_cosine", "nt_xent", "info_nce")


def test_each_loss_is_defined_once_and_used_from_losses():
    folder = Path(losses.__file__).parent
    for path in folder.glob("*.py"):
        source = path.read_text()
        for name in LOSSES:
            defined = re.search(rf"^def {name}\(", source, re.MULTILINE) is not None
            assert defined == (path.name == "losses.py"), (path.name, name)
    import tribyol.methods.byol as byol
    import tribyol.methods.cross as cross
    import tribyol.methods.pirl as pirl
    import tribyol.methods.simclr as simclr
    import tribyol.methods.simsiam as simsiam
    import tribyol.methods.tribyol as tribyol
    for module in (byol, cross, tribyol):
        assert module.normalized_mse is losses.normalized_mse
    assert simsiam.negative_cosine is losses.negative_cosine
    assert simclr.nt_xent is losses.nt_xent
    assert pirl.info_nce is losses.info_nce


def test_labelled_cross_entropy_is_the_mean_over_labelled_images_only() -> None:
    from tribyol.methods.losses import labelled_cross_entropy

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]], requires_grad=True)
    labels = torch.tensor([0, 0, -1])  # the third image is unlabelled
    loss, acc = labelled_cross_entropy(logits, labels)
    # -log softmax: image 0 -> log(1 + e^-2), image 1 -> log(1 + e^1); mean of the two
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == pytest.approx(0.5)  # image 0 right, image 1 wrong
    none, zero = labelled_cross_entropy(logits, torch.full((3,), -1))
    none.backward()  # no labelled image: 0, and still a graph
    assert none.item() == 0.0 and zero.item() == 0.0
