"""Name -> method class. Adding a method: write its file, decorate the class with ``@register``
and import the module in ``tribyol/methods/__init__.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tribyol.config.fields import did_you_mean
from tribyol.config.structured import build_dataclass
from tribyol.errors import ConfigError

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    if cls.Options().name != cls.name:
        raise ValueError(f"{cls.__name__}.Options needs name: str = method_name({cls.name!r})")
    METHODS[cls.name] = cls
    return cls


def option_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.Options)}


def resolve_options(method: Mapping[str, Any]) -> tuple[type, Any]:
    """``{"name": "tribyol", "tau": 0.99}`` -> (class, its Options, built and validated once).

    An unknown method, an option of another method, a value of the wrong type or one against
    its rule: one ``ConfigError`` that names ``method.<option>``."""
    name = method.get("name")
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}'.{did_you_mean(str(name), METHODS)} "
            f"Known: {', '.join(sorted(METHODS))}"
        )
    cls, own = METHODS[name], option_names(METHODS[name])
    for key in (k for k in method if k not in own):
        owners = [m for m, c in sorted(METHODS.items()) if key in option_names(c)]
        if owners:
            raise ConfigError(f"method '{name}': method.{key} is an option of {', '.join(owners)}, "
                              f"not of {name}; drop it, or pick one of those methods")
    options = build_dataclass(cls.Options, dict(method), where="method")
    options.validate()
    return cls, options


# A step's cost in forward-pass units: an online forward+backward ~ 3 (the backward ~ 2
# forwards), a target forward (no gradient) 1. BYOL: 2 x 3 + 2 = 8; TriBYOL: 3 x 3 + 3 = 12.
ONLINE_UNITS, TARGET_UNITS = 3, 1


def step_cost(method: Mapping[str, Any]) -> float | None:
    """A step's counted cost of ``{"name": ..., option: value}`` (units above, per view batch),
    from the method's own ``passes``; None where the method does not count its passes."""
    cls, options = resolve_options({"name": "tribyol", **method})
    counted = cls.passes(options)
    if counted is None:
        return None
    online, target = counted
    return float(ONLINE_UNITS * online + TARGET_UNITS * target)


def compute_factor(method: Mapping[str, Any]) -> float | None:
    """A step's cost relative to default BYOL's (TriBYOL 1.5, independent-init 1.625, 4 views
    2.0, symmetric=false 0.625); None where the method does not count its passes."""
    cost = step_cost(method)
    return None if cost is None else cost / float(step_cost({"name": "byol"}) or 1.0)


def default_options(name: str) -> dict[str, Any]:
    """The documented defaults of a method's options, its name first (for config files and
    --help)."""
    return dataclasses.asdict(METHODS[name].Options())
