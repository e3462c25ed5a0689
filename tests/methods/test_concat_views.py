"""concat_views: one pass over all views gives the separate passes' loss when BN is frozen."""

from __future__ import annotations

import pytest
import torch

from tests.methods.helpers import make, views


def _loss_pair(name: str, n: int, **options) -> tuple[torch.Tensor, torch.Tensor]:
    separate = make(name, concat_views=False, **options).eval()  # eval: BN uses running stats
    joined = make(name, concat_views=True, **options).eval()
    vs = views(n)
    return separate(vs).loss.detach(), joined(vs).loss.detach()


@pytest.mark.parametrize("symmetric", [True, False])
def test_byol_concat_matches_separate_passes(symmetric):
    a, b = _loss_pair("byol", 2, symmetric=symmetric)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("policy", ["shared", "independent-init", "alternating-ema"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_tribyol_concat_matches_separate_passes(policy, symmetric):
    a, b = _loss_pair("tribyol", 3, target_policy=policy, symmetric=symmetric)
    torch.testing.assert_close(a, b)


def test_tribyol_concat_four_views():
    a, b = _loss_pair("tribyol", 4, num_views=4)
    torch.testing.assert_close(a, b)


def _count(module: torch.nn.Module, counter: dict[str, int], key: str) -> None:
    module.register_forward_hook(lambda *_: counter.__setitem__(key, counter[key] + 1))


@pytest.mark.parametrize(("concat", "online", "target"), [(False, 3, 3), (True, 1, 1)])
def test_tribyol_shared_pass_counts(concat, online, target):
    m = make("tribyol", concat_views=concat)
    calls = {"online": 0, "target": 0}
    _count(m.backbone, calls, "online")
    _count(m.targets[0], calls, "target")
    out = m(views(3))
    assert calls == {"online": online, "target": target}  # one target pass per view at most
    assert out.features is not None and out.features.shape[0] == 6


def test_concat_trains_in_train_mode():
    m = make("tribyol", concat_views=True)
    m(views(3)).loss.backward()
    assert all(p.grad is not None for p in m.backbone.parameters())
    assert all(p.grad is None for p in m.targets[0].parameters())


def _freeze_batchnorm(m: torch.nn.Module) -> torch.nn.Module:
    """Train mode, but every BatchNorm on its running statistics."""
    m.train()
    for module in m.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return m


@pytest.mark.parametrize(("name", "n", "options"), [
    ("byol", 2, {}), ("tribyol", 3, {}), ("tribyol", 3, {"target_policy": "independent-init"}),
    ("tribyol", 3, {"symmetric": False}), ("tribyol", 4, {"num_views": 4})])
def test_train_mode_concat_differs_from_separate_passes_only_by_batchnorm(name, n, options):
    """In train mode BatchNorm normalises one batch of all views (concat) or each view alone:
    the losses differ. With BatchNorm alone frozen, the rest in train mode, they are equal, so
    BatchNorm's batch is the only thing concat_views changes."""
    vs = views(n)
    separate = make(name, concat_views=False, **options)
    joined = make(name, concat_views=True, **options)
    assert separate.training and joined.training
    a, b = separate(vs).loss.detach(), joined(vs).loss.detach()
    assert abs(a - b) > 1e-4, (a, b)
    separate = _freeze_batchnorm(make(name, concat_views=False, **options))
    joined = _freeze_batchnorm(make(name, concat_views=True, **options))
    torch.testing.assert_close(separate(vs).loss.detach(), joined(vs).loss.detach())


@pytest.mark.parametrize("concat", [False, True])
def test_train_mode_batchnorm_batch_is_every_view_with_concat(concat):
    """What ConcatViewsOptions documents: one pass normalises the N * B samples of all views
    together; separate passes normalise B at a time (online encoder and projector, target)."""
    m = make("tribyol", concat_views=concat)
    batches: dict[str, list[int]] = {"online": [], "target": []}
    for side, nets in (("online", (m.backbone, m.projector)), ("target", (m.targets[0],))):
        for net in nets:
            for module in net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.register_forward_hook(
                        lambda _m, inputs, _o, side=side: batches[side].append(len(inputs[0])))
    m(views(3))  # b = 6 per view
    assert batches["online"] and batches["target"]
    expected = 18 if concat else 6
    assert set(batches["online"]) == set(batches["target"]) == {expected}, batches
