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
