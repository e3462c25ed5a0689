"""Evaluation options: one dataclass per group of ``tribyol eval`` flags, importable without torch.

Each field holds its default once, and its meaning and check in the field's metadata (see
``option``): ``add_flags`` turns the fields into the CLI's flags (help text and default shown
included) before anything heavy is imported, and ``__post_init__`` checks every value, so a bad
one is refused the same way from the command line and from Python: a ``ConfigError`` naming the
flag, the rule, the default and the value given.
"""

from __future__ import annotations

import argparse
import math
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Self

from tribyol.errors import ConfigError
from tribyol.store import DEFAULT_STORE

POSTER_TARGETS = ("mnist", "fashionmnist", "kmnist", "usps", "svhn", "cifar10", "cifar100", "stl10")
NORMS = ("encoder", "target")
MIN_TEST_IMAGES = 100  # smaller test sets are refused unless --force-small-test (splits.py says why)
AUGMENTS = ("crop-flip", "byol", "none")


@dataclass(frozen=True)
class Rule:
    """A check on one value: ``ok(value)``, and what it requires, e.g. ``>= 1``."""

    ok: Callable[[Any], bool]
    text: str


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f">= {low}")


def positive() -> Rule:
    return Rule(lambda v: v > 0 and math.isfinite(v), "> 0 and finite")


def non_negative() -> Rule:
    return Rule(lambda v: v >= 0 and math.isfinite(v), "finite and >= 0")


def within(low: float, high: float, brackets: str) -> Rule:
    """``brackets`` "[)", "(]", "()" or "[]": which ends are allowed."""
    lo_ok = (lambda v: v >= low) if brackets[0] == "[" else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if brackets[1] == "]" else (lambda v: v < high)
    return Rule(lambda v: lo_ok(v) and hi_ok(v), f"in {brackets[0]}{low}, {high}{brackets[1]}")


def one_of(choices: Sequence[str]) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}")


DEVICE_PATTERN = r"(cpu|mps|cuda)(?::(\d+))?"  # kind, index; an index for cuda only
DEVICE = Rule(lambda v: (m := re.fullmatch(DEVICE_PATTERN, v)) is not None
              and (m[2] is None or m[1] == "cuda"), "cpu, cuda, cuda:N or mps")


def option(default: Any = MISSING, help: str = "", *, rule: Rule | None = None,
           choices: Sequence[str] | None = None, metavar: str | None = None,
           default_text: str | None = None, example: str | None = None) -> Any:
    """A dataclass field that is also a flag: ``--name-with-dashes``.

    ``help`` says what the value means (it is the flag's help and part of the error for a bad
    value); the default is appended to it, or ``default_text`` where the default is ``None`` or
    needs words. ``rule`` (or ``choices``) is checked on every value but ``None``; a tuple field
    is a comma-separated flag whose items are each checked (``example`` shows a valid list).
    No ``default``: the flag is required.
    """
    if choices is not None and rule is None:
        rule = one_of(choices)
    meta = {"help": help, "rule": rule, "choices": choices, "metavar": metavar,
            "default_text": default_text, "example": example}
    return field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _default_text(f: Field) -> str | None:
    """``default 0.1``, ``default: all`` (words), or None (a switch, or no default)."""
    default = f.default
    if f.metadata["default_text"] is not None:
        return f"default: {f.metadata['default_text']}"
    if default is MISSING or default is None or isinstance(default, bool):
        return None
    if isinstance(default, tuple):
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    return f"default {default}"


def flag_help(f: Field) -> str:
    """The field's meaning and its default, as ``--help`` shows them."""
    default = _default_text(f)
    return f.metadata["help"] + (f" ({default})" if default else "")


def _about(f: Field) -> str:
    """``(meaning; default ...)``, for the error on a bad value."""
    default = _default_text(f)
    return f"({f.metadata['help']}" + (f"; {default})" if default else ")")


def check_fields(options: Any) -> None:
    """Every field's rule on its value; a bad one raises ``ConfigError`` naming the flag."""
    for f in fields(options):
        value, rule = getattr(options, f.name), f.metadata.get("rule")
        flag = flag_name(f.name)
        if isinstance(value, tuple):
            if not value:
                raise ConfigError(f"{flag} is empty; give {f.metadata['help']}, e.g. "
                                  f"{f.metadata['example']}")
            bad = [v for v in value if rule is not None and not rule.ok(v)]
            if bad:
                raise ConfigError(f"{flag} must all be {rule.text}, got {', '.join(map(_show, bad))}")
        elif value is not None and rule is not None and not rule.ok(value):
            raise ConfigError(f"{flag} must be {rule.text} {_about(f)}, got {_show(value)}")


class Options:
    """Base of the option dataclasses: values are checked on construction."""

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        """The options the parsed flags give (checked)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def comma_list(kind: type) -> Callable[[str], tuple]:
    """argparse type of a tuple field: ``1e-4,1e-3`` -> (1e-4, 1e-3)."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, e.g. 1e-4,1e-3, got {text!r}") from None

    return parse


def _argparse_type(hint: Any) -> Any:
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
            meta = f.metadata
            kwargs: dict[str, Any] = {"help": flag_help(f).replace("%", "%%")}
            if hints[f.name] is bool:
                if f.default is not False:
                    raise TypeError(f"{cls.__name__}.{f.name}: a switch must default to False")
                parser.add_argument(flag_name(f.name), action="store_true", **kwargs)
                continue
            if f.default is MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = f.default
            for key in ("choices", "metavar"):
                if meta[key] is not None:
                    kwargs[key] = meta[key]
            parser.add_argument(flag_name(f.name), type=_argparse_type(hints[f.name]), **kwargs)


def _test_from_train(help: str) -> Any:
    return option(None, help, rule=within(0, 1, "()"), metavar="FRACTION")


@dataclass
class EvalOptions(Options):
    """Flags every ``tribyol eval`` command takes."""

    weights: str | None = option(
        None, "imagenet:ARCH sources: torchvision's ImageNet weight file", metavar="PATH",
        default_text="the torch hub cache, e.g. ~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth")
    image_size: int | None = option(
        None, "imagenet:ARCH sources: the size images are resized to; smaller is faster and "
              "farther from how the weights were trained", metavar="SIZE",
        default_text="224, ImageNet's")
    data_root: str = option("data", "folder with the datasets", metavar="DIR")
    download: bool = option(False, "fetch missing datasets (needs internet)")
    limit_train: int | None = option(None, "a seeded, stratified subset of N training images",
                                     rule=at_least(1), metavar="N", default_text="all")
    limit_test: int | None = option(None, "a seeded, stratified subset of N test images",
                                    rule=at_least(1), metavar="N", default_text="all")
    seed: int = option(0, "seeds splits, subsets and training")
    eval_batch_size: int = option(256, "images per feature-extraction batch", rule=at_least(1),
                                  metavar="N")
    device: str | None = option(None, "the device to run on", rule=DEVICE, metavar="DEVICE",
                                default_text="cuda if available, else cpu")
    cache_dir: str | None = option(None, "feature cache folder", metavar="DIR",
                                   default_text="$TRIBYOL_CACHE_DIR or ~/.cache/tribyol/features")
    no_cache: bool = option(False, "do not read or write cached features")
    store: str = option(str(DEFAULT_STORE), "results file records are appended to",
                        metavar="PATH")
    no_store: bool = option(False, "print only; append nothing")
    random_init: bool = option(False, "baseline: the same architecture with random weights")
    force_small_test: bool = option(
        False, f"score a test set of fewer than {MIN_TEST_IMAGES} images anyway (refused by "
               "default: one image would move top-1 by a point or more)")


@dataclass
class DatasetOptions(Options):
    """The dataset one encoder is evaluated on (linear, knn, finetune)."""

    dataset: str | None = option(None, "dataset to evaluate on", metavar="NAME",
                                 default_text="the pre-training one")
    dataset_label: str | None = option(None, "name in the results store", metavar="NAME",
                                       default_text="the dataset name; folders: folder:<dirname>")
    test_from_train: float | None = _test_from_train(
        "for a dataset without a test split, e.g. a folder without test/: hold out this "
        "seeded, stratified fraction of train as the test set, e.g. 0.2")


@dataclass
class LinearOptions(Options):
    """The linear probe: multinomial logistic regression, L-BFGS, L2 penalty chosen on val."""

    val_fraction: float = option(
        0.1, "the share of train held out, stratified, to choose the L2 penalty; 0: no "
             "validation split", rule=within(0, 1, "[)"), metavar="FRACTION")
    # L-BFGS converges well before 200 iterations on CPU-scale feature sets
    max_iter: int = option(200, "L-BFGS iterations", rule=at_least(1), metavar="N")
    # 1e-6 is near unregularised, 1e-2 strong for standardised features of a few hundred dims
    weight_decays: tuple[float, ...] = option(
        (1e-6, 1e-5, 1e-4, 1e-3, 1e-2), "a comma-separated grid of L2 penalties", rule=non_negative(),
        metavar="LIST", example="1e-6,1e-4,1e-2")


@dataclass
class KnnOptions(Options):
    """Weighted kNN on cosine similarity; defaults from Wu et al. 2018."""

    k: int = option(200, "the neighbours that vote", rule=at_least(1))
    temperature: float = option(0.07, "votes weigh exp(similarity / T)", rule=positive(),
                                metavar="T")


@dataclass
class LabelOptions(Options):
    """Which labelled images fine-tuning sees."""

    label_fraction: float = option(help="fraction of training labels, e.g. 0.01, 0.1 or 1.0",
                                   rule=within(0, 1, "(]"), metavar="FRACTION")
    splits_dir: str = option("results/splits", "folder of the label-subset index files",
                             metavar="DIR")


@dataclass
class FinetuneOptions(Options):
    """Fine-tuning the whole encoder plus a linear head (the schedule is ours: CPU-scale; the
    poster does not state its fine-tuning schedule)."""

    epochs: int = option(20, "passes over the labelled images", rule=at_least(1), metavar="N")
    batch_size: int = option(64, "images per step; BatchNorm cannot train on one image",
                             rule=at_least(2), metavar="N")
    lr: float = option(0.05, "SGD learning rate, cosine decay to 0", rule=positive())
    momentum: float = option(0.9, "SGD Nesterov momentum", rule=within(0, 1, "[)"))
    weight_decay: float = option(5e-4, "SGD weight decay, not on BatchNorm weights or biases",
                                 rule=non_negative(), metavar="WD")
    augment: str = option("crop-flip", "crop-flip, byol (the pre-training preset) or none",
                          choices=AUGMENTS)
    crop_min: float = option(0.5, "crop-flip: lower bound of the random resized crop's area scale",
                             rule=within(0, 1, "(]"), metavar="FRACTION")
    seed: int = option(0, "seeds the head, the batch order and the augmentation")
    eval_batch_size: int = option(256, "images per test batch", rule=at_least(1), metavar="N")


@dataclass
class TransferOptions(Options):
    """One encoder's linear probe on many targets."""

    targets: tuple[str, ...] = option(POSTER_TARGETS, "comma-separated target datasets",
                                      metavar="LIST", example="mnist,cifar10",
                                      default_text="the poster's eight, " + ",".join(POSTER_TARGETS))
    norm: str = option("encoder", "normalise targets with the encoder's statistics or their own",
                       choices=NORMS)
    test_from_train: float | None = _test_from_train(
        "for targets without a test split, e.g. a folder without test/: hold out this seeded, "
        "stratified fraction of train as the test set, e.g. 0.2; targets with one keep theirs")
