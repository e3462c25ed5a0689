"""PIRL's shared pieces: the per-image memory bank, the NCE loss, the objective of both
transforms, and the transforms' draws from the step's generator."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import gen
from tests.methods.helpers import NUM_IMAGES, views
from tests.methods.helpers import make_pirl as make
from tribyol.errors import ConfigError
from tribyol.methods.losses import info_nce
from tribyol.methods.pirl import MemoryBank


def test_info_nce_hand_computed():
    q = torch.tensor([[2.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    negs = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])  # cosines 0 and -1
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert info_nce(q, p, negs, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every logit
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert info_nce(q, p, negs, 0.5).item() == pytest.approx(expected, rel=1e-6)
    # an excluded negative drops out of the denominator
    exclude = torch.tensor([[True, False]])
    expected = -math.log(math.e / (math.e + math.exp(-1)))
    assert info_nce(q, p, negs, 1.0, exclude).item() == pytest.approx(expected, rel=1e-6)


def test_bank_is_a_per_image_moving_average():
    bank = MemoryBank(size=5, dim=2, momentum=0.5)
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(5))
    before = bank.memory.clone()
    values = torch.tensor([[3.0, 0.0], [0.0, -2.0]])
    bank.update(torch.tensor([3, 1]), values)
    expected = F.normalize(0.5 * before[[3, 1]] + 0.5 * F.normalize(values, dim=1), dim=1)
    torch.testing.assert_close(bank.memory[[3, 1]], expected)
    torch.testing.assert_close(bank.memory[[0, 2, 4]], before[[0, 2, 4]])  # other images keep theirs
    # the same image seen again keeps moving towards its representation
    for _ in range(30):
        bank.update(torch.tensor([3]), values[:1])
    torch.testing.assert_close(bank.memory[3], torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)


def test_bank_rows_are_a_snapshot_and_saved_with_the_module():
    bank = MemoryBank(size=4, dim=3)
    rows = bank.rows(torch.tensor([0, 2]))
    kept = rows.clone()
    bank.update(torch.tensor([0, 2]), torch.randn(2, 3))
    torch.testing.assert_close(rows, kept)
    other = MemoryBank(size=4, dim=3)
    other.load_state_dict(bank.state_dict())
    torch.testing.assert_close(other.memory, bank.memory)


@pytest.mark.parametrize(("name", "lam"), [("pirl-jigsaw", 0.3), ("pirl-rotation", 0.5)])
def test_pirl_loss_positive_is_the_images_bank_row(name: str, lam: float) -> None:
    """lam * NCE(m_I, g(t(v'))) + (1 - lam) * NCE(m_I, f(v)): the positive is image I's bank
    row as it was before this batch, the negatives the drawn rows of other images; then each
    seen image's row moves half-way to f(v)."""
    m = make(name, lam=lam, num_negatives=8)
    v, v_t = views(2)
    idx = torch.tensor([4, 0, 7, 19, 11, 2])
    bank_before = m.bank.memory.clone()
    out = m([v, v_t], indices=idx, generator=gen(5))
    out.loss.backward()
    g = gen(5)
    with torch.no_grad():
        transformed = m.transformed_embedding(v_t, g)
        drawn = torch.randint(0, NUM_IMAGES, (8,), generator=g)  # drawn after the transform
        f = m.head_f(m.backbone(v))
    own = idx.view(-1, 1) == drawn.view(1, -1)
    pos, negs = bank_before[idx], bank_before[drawn]
    expected = lam * info_nce(transformed, pos, negs, 0.07, own) + (1 - lam) * info_nce(
        f, pos, negs, 0.07, own)
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-4, atol=1e-5)
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    moved = F.normalize(0.5 * bank_before[idx] + 0.5 * F.normalize(f, dim=1), dim=1)
    torch.testing.assert_close(m.bank.memory[idx], moved, rtol=1e-4, atol=1e-5)
    others = torch.ones(NUM_IMAGES, dtype=torch.bool)
    others[idx] = False
    torch.testing.assert_close(m.bank.memory[others], bank_before[others])


def test_an_image_is_not_its_own_negative():
    """With the whole bank drawn as negatives, each image's own row must be left out."""
    m = make(num_images=6, num_negatives=6)
    with torch.no_grad():  # every row the same: the own row would be a perfect 'negative'
        m.bank.memory.copy_(F.normalize(torch.ones(6, 8), dim=1))
    idx = torch.arange(6)
    drawn = torch.tensor([0, 1, 2, 3, 4, 5])
    m.negative_rows = lambda count, device, generator: drawn
    v, v_t = views(2)
    out = m([v, v_t], indices=idx, generator=gen())
    # positive and the 5 other rows are one vector: logits all equal -> loss log(1 + 5)
    assert out.loss.item() == pytest.approx(math.log(6), rel=1e-5)


def test_indices_are_required():
    with pytest.raises(ValueError, match="dataset index"):
        make()(views(2))


@pytest.mark.parametrize("name", ["pirl-jigsaw", "pirl-rotation"])
def test_transforms_draw_from_the_given_generator_only(name):
    m = make(name)
    (v,) = views(1)
    with torch.no_grad():
        torch.manual_seed(1)
        a = m.transformed_embedding(v, gen(3))
        torch.manual_seed(2)  # the global RNG changes; the given generator decides alone
        b = m.transformed_embedding(v, gen(3))
        c = m.transformed_embedding(v, gen(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_bank_has_one_row_per_training_image():
    assert make(num_images=37).bank.memory.shape == (37, 8)
    with pytest.raises(ValueError, match="training images"):
        make(num_images=0)


@pytest.mark.parametrize(("bad", "says"), [
    ({"lam": 1.5}, "method.lam must be in [0, 1], got 1.5"),
    ({"num_negatives": 0}, "method.num_negatives must be >= 1, got 0"),
    ({"temperature": 0}, "method.temperature must be > 0 and finite, got 0"),
    ({"memory_momentum": 1.0}, "method.memory_momentum must be in [0, 1), got 1.0"),
    ({"bank_size": 10}, "unknown config key 'method.bank_size'"),  # the queue before issue 13
])
def test_bad_options(bad, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        make(**bad)
