"""TriBYOL: the triple-view loss, target policies, target passes, N views."""

from __future__ import annotations

import re

import pytest
import torch

from tests.methods.helpers import make, views
from tribyol.errors import ConfigError
from tribyol.methods import resolve_options
from tribyol.methods.losses import normalized_mse


def ell(m, target, a, b):
    """l(q(a), z_target(b)) without gradients."""
    with torch.no_grad():
        return normalized_mse(m.predictor(m.online(a)), target(b))


def test_symmetric_triple_view_loss_matches_poster_formula():
    m = make("tribyol", target_policy="independent-init")
    v, v1, v2 = views(3)
    loss = m([v, v1, v2]).loss.detach()
    t1, t2 = m.targets
    expected = 0.5 * (ell(m, t1, v, v1) + ell(m, t1, v1, v)) + 0.5 * (
        ell(m, t2, v, v2) + ell(m, t2, v2, v)
    )
    torch.testing.assert_close(loss, expected)


def test_one_directional_triple_view_loss():
    m = make("tribyol", target_policy="independent-init", symmetric=False)
    v, v1, v2 = views(3)
    loss = m([v, v1, v2]).loss.detach()
    t1, t2 = m.targets
    torch.testing.assert_close(loss, ell(m, t1, v, v1) + ell(m, t2, v, v2))


def test_four_views_keep_the_three_view_scale():
    m = make("tribyol", num_views=4)
    vs = views(4)
    loss = m(vs).loss.detach()
    t = m.targets[0]
    pairs = [0.5 * (ell(m, t, vs[0], vj) + ell(m, t, vj, vs[0])) for vj in vs[1:]]
    torch.testing.assert_close(loss, (2 / 3) * sum(pairs))
    assert m.num_views == 4


@pytest.mark.parametrize(
    ("policy", "symmetric", "calls"),
    [("shared", True, 3), ("shared", False, 2), ("independent-init", True, 4)],
)
def test_target_passes(policy, symmetric, calls):
    m = make("tribyol", target_policy=policy, symmetric=symmetric)
    count = {"n": 0}
    for t in m.targets:
        t.register_forward_hook(lambda *_: count.__setitem__("n", count["n"] + 1))
    m(views(3))
    assert count["n"] == calls  # shared: each view's target projection computed once


def test_shared_has_one_target_and_independent_init_differs():
    assert len(make("tribyol").targets) == 1
    m = make("tribyol", target_policy="independent-init")
    a, b = (list(t.parameters())[0] for t in m.targets)
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, list(m.online.parameters())[0])


def test_alternating_ema_updates_one_target_per_step():
    m = make("tribyol", target_policy="alternating-ema", tau=0.5)
    with torch.no_grad():
        for p in m.online.parameters():
            p.add_(1.0)
    before = [[p.clone() for p in t.parameters()] for t in m.targets]
    m.after_optimizer_step(1, 10)  # step 1 -> target 0
    changed = [
        any(not torch.equal(p, q) for p, q in zip(t.parameters(), b, strict=True))
        for t, b in zip(m.targets, before, strict=True)
    ]
    assert changed == [True, False]
    m.after_optimizer_step(2, 10)  # step 2 -> target 1
    assert not torch.equal(list(m.targets[1].parameters())[0], before[1][0])


def test_targets_take_no_gradient():
    m = make("tribyol", target_policy="independent-init")
    m(views(3)).loss.backward()
    assert all(p.grad is None for t in m.targets for p in t.parameters())
    assert all(p.grad is not None for p in m.predictor.parameters())


@pytest.mark.parametrize(("bad", "says"), [
    ({"target_policy": "copy"}, "method.target_policy must be one of shared, independent-init"),
    ({"num_views": 2}, "method.num_views must be >= 3 for TriBYOL, and at most 64, got 2"),
    ({"num_views": 65}, "method.num_views must be >= 3 for TriBYOL, and at most 64, got 65"),
    ({"tau": 1.5}, "method.tau must be in [0, 1], got 1.5"),
    ({"tau_final": -0.1}, "method.tau_final must be in [0, 1], got -0.1"),
    ({"tau_schedule": "linear"}, "method.tau_schedule must be one of constant, cosine"),
    ({"symetric": True}, "unknown config key 'method.symetric'. Did you mean 'symmetric'?"),
    # issue 12's old name is read only from older config trees (config.upgrade_tree)
    ({"views": 2}, "unknown config key 'method.views'. Did you mean 'num_views'?"),
])
def test_bad_options_are_rejected(bad, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        make("tribyol", **bad)


def test_num_views_limits_are_accepted():
    assert make("tribyol", num_views=3).num_views == 3
    assert resolve_options({"name": "tribyol", "num_views": 64})[1].num_views == 64


def conv_stds(net: torch.nn.Module) -> dict[str, float]:
    """Std of every conv weight with at least 1000 entries (smaller ones are too noisy)."""
    return {name: m.weight.std().item() for name, m in net.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 1000}


@pytest.mark.parametrize("backbone", ["resnet18", "convnet"])
@pytest.mark.parametrize("with_builder", [True, False])
def test_independent_init_target_starts_like_a_freshly_built_encoder(backbone, with_builder):
    """The second target's encoder must start with the builder's initialisation: torchvision's
    ResNet init (Kaiming-normal, fan-out) is ~2.4x wider than PyTorch's default conv init."""
    from tribyol.methods import MethodContext, resolve_options
    from tribyol.nets import build_backbone

    def build():
        return build_backbone(backbone, 1, 16, width=16)

    torch.manual_seed(0)
    cls, opts = resolve_options({"name": "tribyol", "target_policy": "independent-init"})
    ctx = MethodContext(build(), hidden_dim=16, proj_dim=8,
                        new_backbone=build if with_builder else None)
    m = cls(ctx, opts)
    fresh = conv_stds(build())
    second = conv_stds(m.targets[1][0])
    assert len(fresh) >= 3 and second.keys() == fresh.keys()
    for name, std in fresh.items():
        assert 0.9 < second[name] / std < 1.1, (name, second[name], std)
    # it is a new draw, not a copy of the online encoder
    online, target = m.online[0].state_dict(), m.targets[1][0].state_dict()
    assert not any(torch.equal(online[k], target[k]) for k in online if k.endswith("conv1.weight"))


def test_engine_builds_the_independent_target_with_the_backbone_builder():
    from tribyol.config import to_dict
    from tribyol.engine.module import PretrainModule
    from tribyol.nets import build_backbone
    from tribyol.resolve import load_config

    cfg = load_config(None, [("model.backbone", "resnet18"), ("model.hidden_dim", 16),
                             ("model.proj_dim", 8), ("method.target_policy", "independent-init"),
                             ("model.channels_last", False)])
    info = {"channels": 1, "image_size": 16, "num_classes": 10, "num_train_images": 64,
            "mean": [0.5], "std": [0.5]}
    module = PretrainModule(to_dict(cfg), info)
    target = module.method.targets[1][0]
    fresh = build_backbone("resnet18", 1, 16)
    for name, m in fresh.named_modules():  # the replaced small stem included
        if isinstance(m, torch.nn.Conv2d):
            got = target.get_submodule(name).weight.std().item()
            assert 0.85 < got / m.weight.std().item() < 1.15, name


def train_steps(m, steps: int = 4, lr: float = 0.1) -> list[float]:
    """``steps`` real SGD steps, each followed by the EMA, on fixed random views; the losses."""
    opt = torch.optim.SGD(m.trainable_parameters(), lr=lr, momentum=0.9)
    losses = []
    for step in range(1, steps + 1):
        g = torch.Generator().manual_seed(100 + step)
        vs = [torch.randn(8, 1, 16, 16, generator=g) for _ in range(3)]
        loss = m(vs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.after_optimizer_step(step, steps)
        losses.append(loss.item())
    return losses


def two_identical_targets(**options):
    """TriBYOL with two target networks that both start as copies of the online network and
    take the same EMA every step: the poster's figure read literally."""
    m = make("tribyol", target_policy="independent-init", tau=0.9, **options)
    m.targets[1].load_state_dict(m.targets[0].state_dict())
    return m


def test_shared_target_equals_two_identical_ema_targets_over_real_steps():
    """The default ``shared`` policy is exact with separate passes: over several optimizer
    steps its losses and weights match two identical targets that each take the EMA."""
    shared = make("tribyol", tau=0.9)
    two = two_identical_targets()
    assert len(shared.targets) == 1 and len(two.targets) == 2
    losses_shared, losses_two = train_steps(shared), train_steps(two)
    assert losses_shared == pytest.approx(losses_two, rel=1e-5, abs=1e-6)
    assert losses_shared[-1] != pytest.approx(losses_shared[0], rel=1e-3)  # it did train
    for target in two.targets:
        for p, q in zip(shared.targets[0].parameters(), target.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for p, q in zip(shared.online.parameters(), two.online.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_with_concat_views_shared_and_two_targets_differ():
    """With concat_views the shared target normalises all three views in one BatchNorm batch,
    each of two targets only its pair: the losses differ (docs/methods.md says so)."""
    shared = train_steps(make("tribyol", tau=0.9, concat_views=True))
    two = train_steps(two_identical_targets(concat_views=True))
    assert abs(shared[-1] - two[-1]) > 1e-3
    # the figures docs/methods.md quotes (after 4 steps); separate passes for comparison
    assert (shared[-1], two[-1]) == pytest.approx((1.074, 1.066), abs=1e-3)
    assert train_steps(make("tribyol", tau=0.9))[-1] == pytest.approx(1.293, abs=1e-3)
