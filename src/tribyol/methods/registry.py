"""Name -> method class. Adding a method: write its file, decorate the class with ``@register``
and import the module in ``tribyol/methods/__init__.py``."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from typing import Any

from tribyol.config.fields import did_you_mean
from tribyol.config.structured import build_dataclass
from tribyol.errors import ConfigError

log = logging.getLogger("tribyol")  # the deprecation notes read "WARNING tribyol: ..."

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def canonical_method(method: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``method`` (``{"name": ..., option: value}``) with every deprecated option name
    the method's class lists in ``renamed_options`` replaced by its new name, in place in the
    key order. Each old name used warns (``DeprecationWarning`` and a log line); giving both the
    old and the new name is a ``ConfigError``. Unknown methods and options pass through as they
    are (``resolve_options`` reports them)."""
    values = dict(method)
    name = values.get("name")
    cls = METHODS.get(name) if isinstance(name, str) else None
    renamed: dict[str, str] = getattr(cls, "renamed_options", {})
    used = {old: new for old, new in renamed.items() if old in values}
    for old, new in used.items():
        if new in values:
            raise ConfigError(
                f"method.{old} and method.{new} are one option (method.{old} is its deprecated "
                f"name); give only method.{new}"
            )
        message = f"method.{old} is deprecated; use method.{new} (the old name goes in the next release)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning(message)
    return {used.get(key, key): value for key, value in values.items()}


def resolve_options(method: Mapping[str, Any]) -> tuple[type, Any]:
    """``{"name": "tribyol", "tau": 0.99}`` -> (class, validated Options)."""
    values = canonical_method(method)
    name = values.pop("name", None)
    if name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}'.{did_you_mean(str(name), METHODS)} "
            f"Known: {', '.join(sorted(METHODS))}"
        )
    cls = METHODS[name]
    own = {f.name for f in dataclasses.fields(cls.Options)}
    for key in values:
        if key in cls.removed_options:
            raise ConfigError(f"method '{name}': method.{key} was removed: "
                              f"{cls.removed_options[key]}")
        owners = [m for m, c in sorted(METHODS.items())
                  if key in {f.name for f in dataclasses.fields(c.Options)}]
        if key not in own and owners:
            raise ConfigError(f"method '{name}': method.{key} is an option of {', '.join(owners)}, "
                              f"not of {name}; drop it, or pick one of those methods")
    try:
        options = build_dataclass(cls.Options, values, where="method")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"method '{name}': {err}") from None
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
    """The documented defaults of a method's options (for config files and --help)."""
    return dataclasses.asdict(METHODS[name].Options())
