"""The registry: a method's options from ``{"name": ..., option: value}``, built and checked
once (``resolve_options``), with one ``ConfigError`` naming ``method.<option>``."""

from __future__ import annotations

import dataclasses

import pytest

from tribyol.config.fields import check_fields
from tribyol.errors import ConfigError
from tribyol.methods import METHODS, MethodOptions, default_options, resolve_options
from tribyol.methods.registry import register


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_options_hold_its_name_first_and_only_option_fields(name):
    cls, options = resolve_options({"name": name})
    assert cls is METHODS[name] and isinstance(options, MethodOptions)
    assert options.name == name == cls.name
    assert next(iter(default_options(name).items())) == ("name", name)
    for f in dataclasses.fields(options):
        assert f.metadata.get("help"), f"{name}: method.{f.name} has no option() field"
    assert not hasattr(cls.Options, "__post_init__")  # the rules are the fields' own


def test_options_are_typed_and_coerced():
    _, options = resolve_options({"name": "tribyol", "tau": "0.9", "num_views": 4.0})
    assert options.tau == 0.9 and options.num_views == 4
    with pytest.raises(ConfigError, match="method.num_views: expected a whole number, got 3.5"):
        resolve_options({"name": "tribyol", "num_views": 3.5})


def test_an_error_names_the_option_its_rule_and_default():
    with pytest.raises(ConfigError) as err:
        resolve_options({"name": "simclr", "temperature": -1})
    assert str(err.value) == ("method.temperature must be > 0 and finite, got -1.0 (NT-Xent's "
                              "temperature; default 0.5)")


def test_a_name_that_does_not_match_the_class_is_refused():
    with pytest.raises(ConfigError, match="method.name must be one of byol, got 'tribyol'"):
        check_fields(METHODS["byol"].Options(name="tribyol"), lambda n: f"method.{n}")
    with pytest.raises(ConfigError, match="method.name"):  # built directly: validate checks it
        METHODS["byol"].Options(name="tribyol").validate()


def test_register_needs_the_name_field():
    class NoName:
        name = "no-name"

        @dataclasses.dataclass
        class Options(MethodOptions):
            pass

    with pytest.raises(ValueError, match="method_name\\('no-name'\\)"):
        register(NoName)
    assert "no-name" not in METHODS


def test_an_option_of_another_method_says_whose():
    with pytest.raises(ConfigError, match="method.num_views is an option of tribyol, not of byol"):
        resolve_options({"name": "byol", "num_views": 4})


def test_an_unknown_option_is_an_unknown_config_key():
    with pytest.raises(ConfigError, match="unknown config key 'method.views'"):
        resolve_options({"name": "byol", "views": 4})


def test_a_misspelt_option_or_method_gets_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'num_views'"):
        resolve_options({"name": "tribyol", "num_view": 4})
    with pytest.raises(ConfigError, match="unknown method 'triboyl'.*Did you mean 'tribyol'"):
        resolve_options({"name": "triboyl"})
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_options({"name": ["tribyol"]})
