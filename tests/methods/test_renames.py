"""One vocabulary (issue 12): renamed options and state-dict keys keep working for one release.

TriBYOL's ``views`` is now ``num_views``; Cross's ``student`` / ``teacher`` are ``online`` /
``target``, so its checkpoints' keys changed and old ones are renamed as they load."""

from __future__ import annotations

import copy
import logging
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from tests.methods.helpers import make, views
from tribyol.cli import PRETRAIN_FLAGS, build_parser, overrides_from_args
from tribyol.errors import ConfigError
from tribyol.methods import canonical_method, resolve_options, upgrade_state_keys
from tribyol.methods.byol import BYOL
from tribyol.methods.cross import Cross

DEPRECATED = "method.views is deprecated; use method.num_views (the old name goes in the next release)"


def test_old_option_name_is_accepted_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="tribyol"), \
            pytest.warns(DeprecationWarning, match="method.views is deprecated; use method.num_views"):
        cls, options = resolve_options({"name": "tribyol", "views": 4, "tau": 0.9})
    assert options.num_views == 4 and options.tau == 0.9
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("tribyol", logging.WARNING, DEPRECATED)]


def test_old_option_name_builds_the_same_method():
    with pytest.warns(DeprecationWarning):
        old = make("tribyol", views=4, concat_views=True)
    new = make("tribyol", num_views=4, concat_views=True)
    assert old.num_views == new.num_views == 4
    assert old(views(4)).loss.item() == new(views(4)).loss.item()


def test_old_option_name_is_validated_under_the_new_one():
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="num_views must be >= 3"):
        resolve_options({"name": "tribyol", "views": 2})


def test_old_and_new_name_together_are_refused():
    with pytest.raises(ConfigError, match="method.views and method.num_views are one option"):
        resolve_options({"name": "tribyol", "views": 4, "num_views": 4})


def test_new_name_works_without_a_warning(caplog):
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="tribyol"):
        warnings.simplefilter("error")
        _, options = resolve_options({"name": "tribyol", "num_views": 5})
    assert options.num_views == 5
    assert not caplog.records


def test_canonical_method_copies_and_keeps_the_key_order():
    given = {"name": "tribyol", "tau": 0.9, "views": 4, "symmetric": False}
    with pytest.warns(DeprecationWarning):
        out = canonical_method(given)
    assert list(out.items()) == [("name", "tribyol"), ("tau", 0.9), ("num_views", 4), ("symmetric", False)]
    assert given["views"] == 4 and "num_views" not in given


@pytest.mark.parametrize("method", [{"name": "byol", "views": 4}, {"name": "no-such", "views": 4},
                                    {"name": ["tribyol"], "views": 4}])
def test_canonical_method_leaves_other_methods_alone(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert canonical_method(method) == method


def test_an_old_name_on_a_method_without_it_is_an_unknown_option():
    with pytest.raises(ConfigError, match="unknown config key 'method.views'"):
        resolve_options({"name": "byol", "views": 4})


def test_a_misspelt_option_still_gets_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'num_views'"):
        resolve_options({"name": "tribyol", "num_view": 4})
    with pytest.raises(ConfigError, match="unknown method 'triboyl'.*Did you mean 'tribyol'"):
        resolve_options({"name": "triboyl"})


@pytest.mark.parametrize("flag", ["--num-views", "--views"])
def test_views_flag_sets_num_views(flag, caplog):
    args = build_parser().parse_args(["pretrain", flag, "4"])
    overrides = overrides_from_args(args, PRETRAIN_FLAGS)
    assert ("method.num_views", 4) in overrides
    deprecated = "--views is deprecated; use --num-views" in caplog.text
    assert deprecated == (flag == "--views")


def test_num_views_flag_help_states_tribyols_default():
    from tribyol.cli import PRETRAIN_OPTIONS
    from tribyol.methods import METHODS

    assert PRETRAIN_OPTIONS["num_views"].default_text == str(METHODS["tribyol"].Options().num_views)


# -- state-dict keys ------------------------------------------------------------------------------

OLD_NAMES = {"online.": "student.", "target.": "teacher."}


def to_old_keys(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Cross's state dict as checkpoints before the rename hold it (student / teacher)."""
    out = {}
    for key, value in state.items():
        for new, old in OLD_NAMES.items():
            if key.startswith(prefix + new):
                key = prefix + old + key[len(prefix + new):]
        out[key] = value.clone()
    return out


def scrambled_cross() -> Cross:
    """A Cross with the same architecture as ``make("cross")`` but other weights."""
    m = make("cross")
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.fill_(0.25)
    return m


def test_old_cross_keys_load_strictly_and_give_the_same_loss():
    m = make("cross")
    old = to_old_keys(m.state_dict())
    assert any(k.startswith("student.") for k in old) and not any(k.startswith("online.") for k in old)
    vs = views(2)
    expected = m(vs).loss
    fresh = scrambled_cross()
    assert fresh(vs).loss.item() != expected.item()
    fresh.load_state_dict(old, strict=True)
    assert torch.equal(fresh(vs).loss, expected)


def test_old_cross_keys_load_under_a_prefix():
    """In a training checkpoint the method sits under ``method.`` (the LightningModule's child)."""
    m = make("cross")
    old = to_old_keys({f"method.{k}": v for k, v in m.state_dict().items()}, prefix="method.")
    vs = views(2)
    expected = m(vs).loss
    parent = nn.Module()
    parent.method = scrambled_cross()
    parent.load_state_dict(old, strict=True)
    assert torch.equal(parent.method(vs).loss, expected)


def test_copies_of_cross_keep_the_renaming():
    m = make("cross")
    fresh = copy.deepcopy(scrambled_cross())
    fresh.load_state_dict(to_old_keys(m.state_dict()), strict=True)
    assert torch.equal(fresh(views(2)).loss, m(views(2)).loss)


def test_current_keys_load_unchanged():
    m = make("cross")
    fresh = scrambled_cross()
    fresh.load_state_dict(m.state_dict(), strict=True)
    assert torch.equal(fresh(views(2)).loss, m(views(2)).loss)


def test_upgrade_state_keys_renames_keys_and_state_dicts():
    current = make("cross").state_dict()
    old = to_old_keys(current)
    assert upgrade_state_keys(Cross, list(old)) == list(current)
    assert upgrade_state_keys(make("cross"), old.keys()) == list(current)  # an instance too
    checkpoint = {f"method.{k}": v for k, v in old.items()}
    upgraded = upgrade_state_keys(Cross, checkpoint, prefix="method.")
    assert list(upgraded) == [f"method.{k}" for k in current]
    assert all(upgraded[f"method.{k}"] is v for k, v in zip(current, old.values(), strict=True))
    assert upgrade_state_keys(Cross, ["student.0.x", "studentx.0", "online.student.w"]) == [
        "online.0.x", "studentx.0", "online.student.w"]
    assert upgrade_state_keys(Cross, ["student.w"], prefix="method.") == ["student.w"]  # not under it
    assert upgrade_state_keys(BYOL, ["student.w"]) == ["student.w"]  # no renames


def test_upgrade_state_keys_keeps_a_key_whose_new_name_is_taken():
    assert upgrade_state_keys(Cross, ["student.w", "online.w"]) == ["student.w", "online.w"]


def test_upgrade_state_keys_renames_the_module_metadata():
    state = OrderedDict([("student.0.w", torch.zeros(1))])
    state._metadata = OrderedDict([("", {"version": 1}), ("student", {"version": 1}),  # type: ignore[attr-defined]
                                   ("student.0", {"version": 2})])
    out = upgrade_state_keys(Cross, state)
    assert list(out) == ["online.0.w"]
    assert list(out._metadata) == ["", "online", "online.0"]  # type: ignore[attr-defined]
    assert "student.0.w" in state  # the input is left as it was
