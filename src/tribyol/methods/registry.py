"""Name -> method class. Adding a method: write its file, decorate the class with ``@register``
and import the module in ``tribyol/methods/__init__.py``."""

from __future__ import annotations

import dataclasses
from typing import Any

from tribyol.config import ConfigError, build_dataclass, did_you_mean

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def resolve_options(method: dict[str, Any]) -> tuple[type, Any]:
    """``{"name": "tribyol", "tau": 0.99}`` -> (class, validated Options)."""
    values = dict(method)
    name = values.pop("name", None)
    if name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}'.{did_you_mean(str(name), METHODS)} "
            f"Known: {', '.join(sorted(METHODS))}"
        )
    cls = METHODS[name]
    try:
        options = build_dataclass(cls.Options, values, where="method")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"method '{name}': {err}") from None
    return cls, options


def default_options(name: str) -> dict[str, Any]:
    """The documented defaults of a method's options (for config files and --help)."""
    return dataclasses.asdict(METHODS[name].Options())
