"""SimCLR: NT-Xent by hand, against a loop reference, and with negatives gathered over ranks."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from tests.helpers import free_port
from tests.methods.helpers import make, views
from tribyol.errors import ConfigError
from tribyol.methods.losses import nt_xent
from tribyol.methods.simclr import simclr_loss


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Chen et al.'s definition, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = [torch.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i]
        losses.append(-torch.log(torch.exp(z[i] @ z[pos] / t) / sum(sims)))
    return torch.stack(losses).mean()


def test_nt_xent_hand_computed():
    e = torch.eye(2)
    # Each anchor: positive at cosine 1, two negatives at cosine 0 -> -log(e / (e + 2)).
    assert nt_xent(e, e.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_reference(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    torch.testing.assert_close(nt_xent(z1, z2, t), reference_nt_xent(z1, z2, t))


def test_one_step_gradients_and_temperature_option():
    m = make("simclr", temperature=0.2)
    out = m(views(2))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ConfigError):
        make("simclr", temperature=0.0)


def _ddp_worker(rank: int, world: int, port: int, z1, z2, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = z1.shape[0] // world
        a1 = z1[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        a2 = z2[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        loss = simclr_loss(a1, a2, 0.5)
        loss.backward()
        # by value: shared-memory tensors can vanish with this process before they are read
        queue.put((rank, loss.item(), a1.grad.numpy().copy(), a2.grad.numpy().copy()))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_gathers_negatives_and_gradients_from_all_ranks():
    world, b = 2, 3
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(world * b, 4, generator=g), torch.randn(world * b, 4, generator=g)
    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, world, port, z1, z2, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=240) for _ in range(world))  # slow on a busy CPU
    for p in procs:
        p.join(timeout=60)
    # The global loss is the mean of the ranks' losses; DDP averages gradients over ranks, so a
    # rank's slice gradient / world must equal the full-batch gradient of that slice.
    f1, f2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = nt_xent(f1, f2, 0.5)
    full.backward()
    assert sum(r[1] for r in results) / world == pytest.approx(full.item(), rel=1e-5)
    for rank, _, g1, g2 in results:
        g1, g2 = torch.from_numpy(g1), torch.from_numpy(g2)
        torch.testing.assert_close(g1 / world, f1.grad[rank * b : (rank + 1) * b])
        torch.testing.assert_close(g2 / world, f2.grad[rank * b : (rank + 1) * b])


def test_the_method_gathers_through_simclr_gather_with_grad(monkeypatch):
    """SimCLR's loss looks ``simclr.gather_with_grad`` up when it runs: the DDP test's hook
    (tests/engine/child_hooks) replaces that attribute to record what each rank gathered."""
    import tribyol.methods.simclr as simclr

    seen = []
    original = simclr.gather_with_grad
    monkeypatch.setattr(simclr, "gather_with_grad", lambda x: seen.append(x.shape) or original(x))
    make("simclr")(views(2))
    assert seen == [(6, 8), (6, 8)]  # both views' normalised projections, once each
