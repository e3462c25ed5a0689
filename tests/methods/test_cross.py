"""Cross (reconstruction): cross-view + cross-model terms, target without gradients."""

from __future__ import annotations

import re

import pytest
import torch

from tests.methods.helpers import make, views
from tribyol.errors import CheckpointError, ConfigError
from tribyol.methods.byol import BYOL
from tribyol.methods.cross import Cross
from tribyol.methods.losses import normalized_mse


def terms(m, v1, v2):
    with torch.no_grad():
        q1, q2 = m.predictor(m.online(v1)), m.predictor(m.online(v2))
        t1, t2 = m.target(v1), m.target(v2)
    view = normalized_mse(q1, t2) + normalized_mse(q2, t1)
    model = normalized_mse(q1, t1) + normalized_mse(q2, t2)
    return view, model


@pytest.mark.parametrize(("wv", "wm"), [(1.0, 1.0), (0.7, 0.3)])
def test_loss_is_weighted_mean_of_both_terms(wv, wm):
    m = make("cross", cross_view_weight=wv, cross_model_weight=wm)
    v1, v2 = views(2)
    out = m([v1, v2])
    view, model = terms(m, v1, v2)
    torch.testing.assert_close(out.loss.detach(), (wv * view + wm * model) / (wv + wm))
    torch.testing.assert_close(out.logs["cross_model"], model)


def test_one_directional():
    m = make("cross", symmetric=False)
    v1, v2 = views(2)
    with torch.no_grad():
        q1 = m.predictor(m.online(v1))
        expected = 0.5 * (normalized_mse(q1, m.target(v2)) + normalized_mse(q1, m.target(v1)))
    torch.testing.assert_close(m([v1, v2]).loss.detach(), expected)


def test_without_cross_model_term_it_is_byol():
    vs = views(2)
    cross = make("cross", cross_model_weight=0.0)(vs).loss
    byol = make("byol")(vs).loss
    torch.testing.assert_close(cross, byol)


def test_cross_model_term_hand_computed_at_init():
    # At initialisation the target equals the online network, so the cross-model term is
    # l(q(v), z(v)) computed from the online network alone.
    m = make("cross", cross_view_weight=0.0, symmetric=False)
    v1, v2 = views(2)
    with torch.no_grad():
        z = m.projector(m.backbone(v1))
        q = m.predictor(z)
        cos = (q / q.norm(dim=1, keepdim=True) * z / z.norm(dim=1, keepdim=True)).sum(1)
    torch.testing.assert_close(m([v1, v2]).loss.detach(), (2 - 2 * cos).mean())


def test_target_takes_no_gradient_and_follows_by_ema():
    m = make("cross", tau=0.5)
    m(views(2)).loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    for name, p in m.online.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is not None for p in m.predictor.parameters())
    with torch.no_grad():
        for p in m.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target.parameters()]
    m.after_optimizer_step(1, 10)
    for t, t0, s in zip(m.target.parameters(), before, m.online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * t0 + 0.5 * s)


@pytest.mark.parametrize(("bad", "says"), [
    ({"cross_model_weight": -1.0}, "method.cross_model_weight must be finite and >= 0, got -1.0"),
    ({"cross_view_weight": 0.0, "cross_model_weight": 0.0},
     "method.cross_view_weight + method.cross_model_weight must be > 0, got 0"),
])
def test_bad_weights_rejected(bad, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        make("cross", **bad)


def old_keys(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Cross's state dict as tribyol wrote it before issue 12 (the poster's student / teacher)."""
    old = {f"{prefix}online.": f"{prefix}student.", f"{prefix}target.": f"{prefix}teacher."}
    out = {}
    for key, value in state.items():
        for new, was in old.items():
            key = was + key[len(new):] if key.startswith(new) else key
        out[key] = value
    return out


def test_current_keys_load_strictly():
    m, fresh = make("cross"), make("cross", tau=0.5)
    with torch.no_grad():
        for p in fresh.parameters():
            p.fill_(0.25)
    fresh.load_state_dict(m.state_dict(), strict=True)
    assert torch.equal(fresh(views(2)).loss, m(views(2)).loss)


def test_a_checkpoint_from_before_the_rename_is_refused_with_one_line():
    m = make("cross")
    with pytest.raises(CheckpointError, match="before the issue-12 rename") as err:
        make("cross").load_state_dict(old_keys(m.state_dict()))
    assert "student." in str(err.value) and "re-run" in str(err.value)
    assert "\n" not in str(err.value)
    parent = torch.nn.Module()  # in a training checkpoint the method sits under "method."
    parent.method = make("cross")
    with pytest.raises(CheckpointError, match="before the issue-12 rename"):
        parent.load_state_dict(old_keys({f"method.{k}": v for k, v in m.state_dict().items()},
                                        prefix="method."))


def test_the_resume_check_refuses_old_keys_before_comparing():
    current = [f"method.{k}" for k in make("cross").state_dict()]
    keys = list(old_keys(dict.fromkeys(current), prefix="method."))
    with pytest.raises(CheckpointError, match="holds method.(student|teacher)."):
        Cross.check_state_keys(keys, prefix="method.")
    Cross.check_state_keys(current, prefix="method.")
    Cross.check_state_keys(["student.w"], prefix="method.")  # not the method's
    BYOL.check_state_keys(keys, prefix="method.")  # another method has nothing to refuse
