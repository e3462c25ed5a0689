"""Option fields: a dataclass field that holds its default, its meaning and its check once.

``RunConfig``'s sections (pretrain) and the eval option groups are made of them: the CLI's flags
and their help come from the fields, and ``check_fields`` refuses a bad value with one
``ConfigError`` that names the option, the rule, the value, the meaning and the default.
Importable without torch, like everything the CLI needs before a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any

from tribyol.errors import ConfigError


def did_you_mean(key: str, options: Iterable[str], cutoff: float = 0.5) -> str:
    """`` Did you mean 'x'?`` for the closest of ``options`` (none below ``cutoff``), or ""."""
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=cutoff)
    return f" Did you mean '{match[0]}'?" if match else ""


class Rule:
    """A check on one value: ``ok(value)``, and what it requires, e.g. ``>= 1``; ``choices``
    where the rule is a list of names (a wrong one gets the closest as a hint). A plain class:
    a dataclass costs a millisecond of every CLI start."""

    __slots__ = ("choices", "ok", "text")

    def __init__(self, ok: Callable[[Any], bool], text: str,
                 choices: tuple[str, ...] | None = None) -> None:
        self.ok, self.text, self.choices = ok, text, choices


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f">= {low}")


def positive() -> Rule:
    return Rule(lambda v: v > 0 and math.isfinite(v), "> 0 and finite")


def non_negative() -> Rule:
    return Rule(lambda v: v >= 0 and math.isfinite(v), "finite and >= 0")


def within(low: float, high: float, brackets: str, text: str | None = None) -> Rule:
    """``brackets`` "[)", "(]", "()" or "[]": which ends are allowed."""
    lo_ok = (lambda v: v >= low) if brackets[0] == "[" else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if brackets[1] == "]" else (lambda v: v < high)
    return Rule(lambda v: lo_ok(v) and hi_ok(v),
                text or f"in {brackets[0]}{low}, {high}{brackets[1]}")


def one_of(choices: Sequence[Any]) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(map(str, choices))}",
                tuple(str(c) for c in choices))


def option(default: Any = MISSING, help: str = "", *, rule: Rule | None = None,
           choices: Sequence[str] | None = None, metavar: str | None = None,
           default_text: str | None = None, example: str | None = None,
           default_factory: Any = MISSING, each: bool = True) -> Any:
    """A dataclass field that is also an option (and, where a CLI lists it, a flag).

    ``help`` says what the value means (the flag's help, and part of the error for a bad
    value); the default is appended to it, or ``default_text`` where the default is ``None`` or
    needs words. ``rule`` (or ``choices``) is checked on the value; ``None`` passes only where
    it is the default. With ``each`` a list or tuple has each item checked (``example`` shows a
    valid list); ``each=False`` judges the value whole (e.g. devices: ``auto``, 2 or ``[0, 1]``).
    No default: required.
    """
    if choices is not None and rule is None:
        rule = one_of(choices)
    meta = {"help": help, "rule": rule, "choices": choices, "metavar": metavar,
            "default_text": default_text, "example": example, "each": each}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    """The flag of option ``name`` (``limit_train`` -> ``--limit-train``)."""
    return "--" + name.replace("_", "-")


# How errors name the user's options: the CLI's flags (None), or, inside ``api_wording``, the
# Python API's arguments and config keys. A context variable: per thread, set only inside.
_API_NAMES: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "tribyol_api_names", default=None)


@contextlib.contextmanager
def api_wording(names: Mapping[str, str] | None = None) -> Iterator[None]:
    """Errors raised inside name options as ``tribyol.api`` spells them: ``names`` maps a flag
    to the API's name (``{"--data-root": "data.root"}``); another ``--limit-train`` becomes
    ``limit_train``, the argument of the same name."""
    token = _API_NAMES.set(dict(names or {}))
    try:
        yield
    finally:
        _API_NAMES.reset(token)


def option_name(flag: str) -> str:
    """``flag`` as the user spelled the option: the flag itself on the command line, the
    API's argument or config key inside ``api_wording``."""
    names = _API_NAMES.get()
    if names is None:
        return flag
    return names.get(flag, flag.lstrip("-").replace("-", "_"))


def option_value(flag: str, value: Any) -> str:
    """An option set to ``value`` as the user would write it: ``--device cpu`` on the command
    line, ``device='cpu'`` inside ``api_wording``."""
    if _API_NAMES.get() is None:
        return f"{flag} {value}"
    return f"{option_name(flag)}={value!r}"


def error_name(name: str) -> str:
    """Option ``name`` in an error: ``--limit-train`` (CLI) or ``limit_train`` (the API)."""
    return option_name(flag_name(name))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _default_of(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def default_text(f: Field) -> str | None:
    """``default 0.1``, ``default: all`` (words), or None (a switch, or no default)."""
    if f.metadata.get("default_text") is not None:
        return f"default: {f.metadata['default_text']}"
    default = _default_of(f)
    if default is MISSING or default is None or isinstance(default, bool):
        return None
    if isinstance(default, (tuple, list)):
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    return f"default {default}"


def flag_help(f: Field) -> str:
    """The field's meaning and its default, as ``--help`` shows them."""
    default = default_text(f) or ("default: off" if _default_of(f) is False else None)
    return f.metadata["help"] + (f" ({default})" if default else "")


def _about(f: Field) -> str:
    """`` (meaning; default ...)`` after an error, or "" for a field without a meaning."""
    parts = [p for p in (f.metadata.get("help"), default_text(f)) if p]
    return f" ({'; '.join(parts)})" if parts else ""


def check_fields(options: Any, name: Callable[[str], str] = error_name) -> None:
    """Every option field's rule on its value; a bad one raises ``ConfigError`` naming it as
    ``name(field)`` (a flag, ``--k``, or through the API ``k``; or a dotted key,
    ``train.batch_size``)."""
    hints = typing.get_type_hints(type(options))
    for f in fields(options):
        rule = f.metadata.get("rule")
        value = getattr(options, f.name)
        if "help" not in f.metadata:
            continue  # not an option field (e.g. a nested section)
        if value is None and _default_of(f) is None:
            continue  # None is this option's own default: "off", "all", "the preset's"
        kind = _kind(hints.get(f.name))
        if kind is not None and not _is(value, kind):
            raise ConfigError(f"{name(f.name)} must be {_KIND_TEXT[kind]}, got {_show(value)}"
                              f"{_about(f)}")
        if isinstance(value, (tuple, list)) and f.metadata.get("each", True):
            if not value and f.metadata.get("example"):
                raise ConfigError(f"{name(f.name)} is empty; give {f.metadata['help']}, e.g. "
                                  f"{f.metadata['example']}")
            bad = [v for v in value if rule is not None and not _ok(rule, v)]
            if bad:
                raise ConfigError(f"{name(f.name)} must all be {rule.text}, got "
                                  f"{', '.join(map(_show, bad))}{_about(f)}")
        elif rule is not None and not _ok(rule, value):
            message = f"{name(f.name)} must be {rule.text}, got {_show(value)}{_about(f)}"
            hint = did_you_mean(value, rule.choices, 0.6) if rule.choices and isinstance(value, str) else ""
            message += f".{hint}" if hint else ""
            raise ConfigError(message)


_KIND_TEXT = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def _kind(hint: Any) -> type | None:
    """The scalar type a field holds (``int | None`` -> int), or None for anything else."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if hint in _KIND_TEXT else None


def _is(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def _ok(rule: Rule, value: Any) -> bool:
    try:
        return bool(rule.ok(value))
    except TypeError:  # e.g. None against ">= 1"
        return False


def comma_list(kind: type) -> Callable[[str], tuple]:
    """argparse type of a tuple field: ``1e-4,1e-3`` -> (1e-4, 1e-3)."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, e.g. 1e-4,1e-3, got {text!r}") from None

    return parse


def _whole_or_text(text: str) -> int | str:
    """A flag of several kinds (``--batch-size 32`` or ``auto``): digits are a number."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _argparse_type(hint: Any) -> Any:
    if hint is Any:  # e.g. train.devices: auto, 2 or 0,1; train.batch_size: 32 or auto
        return _whole_or_text
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return comma_list(args[0])
    return args[0] if args else hint  # X | None -> X


def add_flags(parser: argparse.ArgumentParser, classes: Iterable[type]) -> None:
    """One flag per field of ``classes``, in order; a field name already seen (e.g. ``seed``,
    in two groups) must have the same default and gets no second flag.
    """
    seen: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name in seen:
                if seen[f.name] != f.default:
                    raise TypeError(f"{cls.__name__}.{f.name}: default {f.default!r}, but an "
                                    f"earlier group's flag has {seen[f.name]!r}")
                continue
            seen[f.name] = f.default
            add_flag(parser, f, hints[f.name], where=cls.__name__)


def add_flag(parser: argparse.ArgumentParser, f: Field, hint: Any, *, flag: str | None = None,
             dest: str | None = None, unset: bool = False, where: str = "") -> None:
    """The flag of option field ``f`` (of type ``hint``; ``flag_name(f.name)`` unless ``flag``),
    its help the field's meaning and default: the one flag builder, for pretrain and eval alike.

    ``unset``: a flag not given is ``None`` (a switch ``False``), so the config's value stands,
    and its value is checked by the config (its rule's error, with a hint), not by argparse.
    """
    kwargs: dict[str, Any] = {"help": flag_help(f).replace("%", "%%")}
    if dest is not None:
        kwargs["dest"] = dest
    name = flag or flag_name(f.name)
    if hint is bool:
        if f.default is not False and not unset:
            raise TypeError(f"{where}.{f.name}: a switch must default to False")
        parser.add_argument(name, action="store_true", **kwargs)
        return
    if unset:
        kwargs["default"] = None
    elif f.default is MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = f.default
    for key in ("metavar",) if unset else ("choices", "metavar"):
        if f.metadata.get(key) is not None:
            kwargs[key] = f.metadata[key]
    parser.add_argument(name, type=_argparse_type(hint), **kwargs)
