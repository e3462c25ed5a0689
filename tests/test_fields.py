"""Option fields: one default, meaning and check per field, and the error a bad value gets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tribyol.config.fields import at_least, check_fields, default_text, flag_help, one_of, option, within
from tribyol.errors import ConfigError


@dataclass
class Toy:
    steps: int = option(10, "optimizer steps", rule=at_least(1))
    mode: str = option("fast", "how to run", rule=one_of(("fast", "exact")))
    probs: list[float] = option(help="per-view probabilities", rule=within(0, 1, "[]"),
                                default_factory=lambda: [0.0, 0.2])
    limit: int | None = option(None, "a subset of N images", rule=at_least(1), default_text="all")


def dotted(name: str) -> str:
    return f"toy.{name}"


def test_good_values_pass_and_none_skips_the_rule() -> None:
    check_fields(Toy(), dotted)
    check_fields(Toy(steps=1, mode="exact", probs=[1.0], limit=None), dotted)


def test_a_bad_value_names_rule_value_meaning_and_default() -> None:
    with pytest.raises(ConfigError) as err:
        check_fields(Toy(steps=0), dotted)
    assert str(err.value) == "toy.steps must be >= 1, got 0 (optimizer steps; default 10)"


def test_a_close_name_is_suggested_and_a_far_one_is_not() -> None:
    hint = r"got 'exct' \(how to run; default fast\)\. Did you mean 'exact'\?"
    with pytest.raises(ConfigError, match=hint):
        check_fields(Toy(mode="exct"), dotted)
    with pytest.raises(ConfigError) as err:
        check_fields(Toy(mode="zzzz"), dotted)
    assert "Did you mean" not in str(err.value)


def test_list_items_are_each_checked() -> None:
    with pytest.raises(ConfigError, match=r"toy.probs must all be in \[0, 1\], got 1.5"):
        check_fields(Toy(probs=[0.1, 1.5]), dotted)


def test_help_shows_the_default_once() -> None:
    fields = {f.name: f for f in Toy.__dataclass_fields__.values()}
    assert flag_help(fields["steps"]) == "optimizer steps (default 10)"
    assert flag_help(fields["limit"]) == "a subset of N images (default: all)"
    assert default_text(fields["probs"]) == "default 0,0.2"
