"""Each method's counted passes (``Method.passes``) and the compute factor reproduce's
``equal_compute`` derives from them (issue 23, item 4)."""

from __future__ import annotations

import pytest

from tests.methods.helpers import make, views
from tribyol.methods.registry import compute_factor, resolve_options, step_cost

CASES = [  # (options, online forward+backward, target forwards, factor relative to BYOL)
    ({"name": "byol"}, 2, 2, 1.0),
    ({"name": "byol", "symmetric": False}, 1, 1, 0.5),
    ({"name": "tribyol"}, 3, 3, 1.5),
    ({"name": "tribyol", "target_policy": "independent-init"}, 3, 4, 1.625),
    ({"name": "tribyol", "target_policy": "alternating-ema"}, 3, 4, 1.625),
    ({"name": "tribyol", "num_views": 4}, 4, 4, 2.0),
    ({"name": "tribyol", "symmetric": False}, 1, 2, 0.625),
    ({"name": "tribyol", "num_views": 4, "target_policy": "independent-init",
      "symmetric": False}, 1, 3, 0.75),
]


@pytest.mark.parametrize(("options", "online", "target", "factor"), CASES)
def test_counted_passes_are_the_passes_a_step_runs(options, online, target, factor) -> None:
    """``passes`` states what ``forward_views`` does: hooks count the projector's calls (every
    online pass of a view batch goes through it) and each target's, in one step."""
    cls, opts = resolve_options(options)
    assert cls.passes(opts) == (online, target)
    m = make(**options)
    counts = {"online": 0, "target": 0}

    def hook(kind):
        return lambda *_: counts.__setitem__(kind, counts[kind] + 1)

    m.projector.register_forward_hook(hook("online"))
    for t in getattr(m, "targets", None) or [m.target]:
        t.register_forward_hook(hook("target"))
    m(views(m.num_views))
    assert (counts["online"], counts["target"]) == (online, target)
    assert compute_factor(options) == pytest.approx(factor)


def test_step_cost_weighs_a_backward_as_two_forwards() -> None:
    assert step_cost({"name": "byol"}) == 8.0  # 2 views x 3 online + 2 target forwards
    assert step_cost({"name": "tribyol"}) == 12.0  # 3 x 3 + 3
    assert step_cost({}) == 12.0  # the default method is tribyol
    assert compute_factor({"name": "simclr"}) is None  # a method that counts nothing
