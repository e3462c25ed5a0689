"""Dataclasses from (nested) mappings, built by OmegaConf's structured configs.

OmegaConf checks and coerces the types and refuses unknown keys; this module reads a few values
as tribyol always has (``3.0`` is a whole number, ``2`` is no switch, ``${...}`` is text it
refuses) and turns OmegaConf's errors into one ``ConfigError`` naming the dotted key, what it
expects and the closest valid key. Importable without torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from tribyol.config.fields import did_you_mean
from tribyol.errors import ConfigError

T = TypeVar("T")


def build_dataclass(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """The dataclass ``cls`` from a (nested) mapping, built by OmegaConf's structured configs.

    OmegaConf checks and coerces the types ("0.1" -> 0.1, "true" -> True) and refuses unknown
    keys; a failure becomes one ``ConfigError`` naming the dotted key, what it expects and the
    closest valid key. A dataclass's own ``__post_init__`` checks raise as they are.
    """
    # Imported here: `tribyol --help` needs no config built, and OmegaConf adds ~40 ms to it.
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {values!r}")
    values = _as_written(cls, values, where)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
    except (OmegaConfBaseException, TypeError, ValueError):  # some refusals are plain TypeErrors
        raise _explain(cls, values, where) from None
    try:
        built = OmegaConf.to_object(merged)
    except OmegaConfBaseException:
        raise _explain(cls, values, where) from None
    _require_finite(built, where)
    return built  # type: ignore[return-value]


def _as_written(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """What OmegaConf would read otherwise, or not at all: its ``${...}`` / ``???`` syntax is
    refused (a path holding ``${HOME}`` is text to us), numpy scalars are plain numbers, ``3.0``
    or ``1e4`` for a whole number is that number, only true/false (or yes/no, on/off as text) is
    a switch, a switch is no text, and a list field takes a list of plain values."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where or 'the config'}: {key!r} is not a key; keys are names, "
                              "e.g. batch_size")
        path, hint = f"{where}.{key}" if where else key, _unwrap_optional(hints.get(key))
        value = _plain(value, path)
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = _as_written(hint, value, path)
        elif origin in (list, tuple) and value is not None:
            if not isinstance(value, (list, tuple)) or any(
                    isinstance(v, (list, tuple, Mapping)) for v in value):
                raise ConfigError(f"{path}: expected {_expected(hint, value)}, got {value!r}")
        elif hint is int and isinstance(value, (float, str)) and not isinstance(value, bool):
            value = _whole(value)
        elif hint is bool and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        elif hint is str and isinstance(value, bool):
            raise ConfigError(f"{path}: expected text, got {value!r}")
        out[key] = value
    return out


INT64 = 2**63


def _plain(value: Any, path: str) -> Any:
    """``value`` with numpy scalars as Python ones, checked for interpolation syntax and for
    integers past int64, everywhere inside lists and mappings too."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str) and ("${" in value or value.strip() == "???"):
        raise ConfigError(f"{path}: {value!r} is OmegaConf interpolation syntax, which tribyol "
                          "does not expand; write the value itself")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        raise ConfigError(f"{path}: {value} is too large a number")
    if isinstance(value, (list, tuple)):
        return [_plain(v, path) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{path}.{k}") for k, v in value.items()}
    return value


def _unwrap_optional(hint: Any) -> Any:
    """``int | None`` -> ``int``; other hints as they are."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _whole(value: float | str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value  # OmegaConf refuses it, and _explain says why
    return int(number) if math.isfinite(number) and number.is_integer() else value


def _explain(cls: type, values: Mapping[str, Any], where: str) -> ConfigError:
    """Find the key OmegaConf refused (its own message names neither the value nor a fix)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            hint = did_you_mean(key, fields) or f" Known: {', '.join(sorted(fields))}"
            return ConfigError(f"unknown config key '{path}'.{hint}")
        try:
            OmegaConf.merge(OmegaConf.structured(cls), {key: value})
        except (OmegaConfBaseException, TypeError, ValueError):
            hint = hints[key]
            if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
                return _explain(hint, value, path)
            return ConfigError(f"{path}: expected {_expected(hint, value)}, got {value!r}")
    return ConfigError(f"{where or cls.__name__}: invalid values {dict(values)!r}")


def _expected(hint: Any, value: Any) -> str:
    """``int`` -> "a number" (or "a whole number" for 1.5), ``tuple[float, float]`` -> ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [_expected(arg, value) for arg in args if arg is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} numbers, e.g. [0.1, 1.0]"
    if origin in (list, tuple):
        return "a list of numbers, e.g. [0.1, 0.2]"
    if dataclasses.is_dataclass(hint) or origin is dict:
        return "a mapping"
    if hint is bool:
        return "true or false"
    if hint is int and isinstance(value, (float, str)):
        try:
            float(value)
            return "a whole number"
        except ValueError:
            return "a number"
    if hint in (int, float):
        return "a number"
    return "text" if hint is str else getattr(hint, "__name__", str(hint))


def _require_finite(built: Any, where: str) -> None:
    """OmegaConf takes inf and nan as floats; no option of ours means either."""
    for f in dataclasses.fields(built):
        value, path = getattr(built, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            _require_finite(value, path)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{path}: expected a finite number, got {value!r}")
