"""PIRL's shared pieces: the FIFO memory bank and the InfoNCE loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tribyol.methods.memory_bank import MemoryBank, info_nce


def test_info_nce_hand_computed():
    q = torch.tensor([[2.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    negs = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])  # cosines 0 and -1
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert info_nce(q, p, negs, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every logit
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert info_nce(q, p, negs, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_gradient_only_to_the_query():
    q, p, n = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    info_nce(q, p, n, 0.1).backward()
    assert p.grad is None and n.grad is None
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_bank_starts_with_unit_rows_and_pushes_fifo_with_wraparound():
    bank = MemoryBank(size=5, dim=2)
    torch.testing.assert_close(bank.queue.norm(dim=1), torch.ones(5))
    a = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    bank.push(a)
    torch.testing.assert_close(bank.queue[:3], F.normalize(a, dim=1))
    assert int(bank.ptr) == 3
    b = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [-1.0, -1.0]])
    untouched = bank.queue[1:3].clone()
    bank.push(b)  # rows 3, 4, then wraps to row 0
    torch.testing.assert_close(bank.queue[3:], F.normalize(b[:2], dim=1))
    torch.testing.assert_close(bank.queue[0], F.normalize(b[2], dim=0))
    torch.testing.assert_close(bank.queue[1:3], untouched)
    assert int(bank.ptr) == 1


def test_bank_keeps_newest_when_given_more_than_it_holds():
    bank = MemoryBank(size=3, dim=2)
    keys = torch.tensor([[1.0, float(i)] for i in range(5)])
    bank.push(keys)
    assert {tuple(r) for r in bank.queue.tolist()} == {
        tuple(F.normalize(k, dim=0).tolist()) for k in keys[2:]
    }


def test_negatives_snapshot_survives_a_push_before_backward():
    bank = MemoryBank(size=4, dim=3)
    q = torch.randn(2, 3, requires_grad=True)
    loss = info_nce(q, torch.randn(2, 3), bank.negatives(), 0.2)
    bank.push(torch.randn(2, 3))  # in place on the bank; the loss must still backpropagate
    loss.backward()
    assert q.grad is not None


def test_bank_is_saved_with_the_module():
    bank = MemoryBank(size=4, dim=3)
    bank.push(torch.randn(2, 3))
    state = bank.state_dict()
    other = MemoryBank(size=4, dim=3)
    other.load_state_dict(state)
    torch.testing.assert_close(other.queue, bank.queue)
    assert int(other.ptr) == 2


@pytest.mark.parametrize(("name", "lam"), [("pirl-jigsaw", 0.3), ("pirl-rotation", 0.5)])
def test_pirl_loss_gradients_and_bank_push(name: str, lam: float) -> None:
    """PIRLBase for both transforms: lam * NCE(g) + (1 - lam) * NCE(f) over the bank as it was
    before this batch; no gradient into the key network; the batch's keys pushed afterwards."""
    from tests.methods.test_byol import make, views

    m = make(name, bank_size=16, lam=lam)
    v, v_key = views(2)
    bank_before = m.bank.queue.clone()
    torch.manual_seed(5)  # the transform draws tiles / rotations
    out = m([v, v_key])
    out.loss.backward()
    torch.manual_seed(5)
    with torch.no_grad():
        g = m.transformed_embedding(v)
        f = m.head_f(m.backbone(v))
        key = m.key(v_key)
    expected = lam * info_nce(g, key, bank_before, 0.07) + (1 - lam) * info_nce(f, key, bank_before, 0.07)
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-4, atol=1e-5)
    for pname, p in m.named_parameters():
        if pname.startswith("key."):
            assert p.grad is None, pname
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    torch.testing.assert_close(m.bank.queue[:6], F.normalize(key, dim=1))
    assert int(m.bank.ptr) == 6
