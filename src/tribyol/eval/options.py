"""Evaluation options: one dataclass per group of ``tribyol eval`` flags, importable without torch.

Each field holds its default once, and its meaning and check in the field's metadata (see
``option``): ``add_flags`` turns the fields into the CLI's flags (help text and default shown
included) before anything heavy is imported, and ``__post_init__`` checks every value, so a bad
one is refused the same way from the command line and from Python: a ``ConfigError`` naming the
flag, the rule, the default and the value given.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields
from typing import Any, Self

from tribyol.config.fields import (
    Rule,
    at_least,
    check_fields,
    non_negative,
    option,
    positive,
    within,
)
from tribyol.store import DEFAULT_STORE

POSTER_TARGETS = ("mnist", "fashionmnist", "kmnist", "usps", "svhn", "cifar10", "cifar100", "stl10")
NORMS = ("encoder", "target")
MIN_TEST_IMAGES = 100  # smaller test sets are refused unless --force-small-test (splits.py says why)
AUGMENTS = ("crop-flip", "byol", "none")


SEED = within(0, 2**32, "[)", "in [0, 2**32)")  # NumPy's and so torch's seed range
DEVICE_PATTERN = r"(cpu|mps|cuda)(?::(\d+))?"  # kind, index; an index for cuda only
DEVICE = Rule(lambda v: (m := re.fullmatch(DEVICE_PATTERN, v)) is not None
              and (m[2] is None or m[1] == "cuda"), "cpu, cuda, cuda:N or mps")


class Options:
    """Base of the option dataclasses: values are checked on construction."""

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        """The options the parsed flags give (checked)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


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
    seed: int = option(0, "the evaluation seed: seeds the probe's validation split, "
                          "--limit-train, label subsets and training", rule=SEED)
    # Apart from --seed, so repeating an evaluation over seeds never moves its test images
    # (a pre-training subset drawn outside one carve would see another's test images).
    split_seed: int = option(0, "seeds the test set: the --test-from-train carve and "
                                "--limit-test", rule=SEED)
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
    # Choosing a setting on the test carve biases the figure the tables then report.
    validation_from_train: float | None = option(
        None, "with --test-from-train: score on a validation carve instead, this seeded, "
              "stratified fraction of train drawn outside the test carve (same --split-seed), "
              "e.g. 0.1; for choosing settings without looking at a test image",
        rule=within(0, 1, "()"), metavar="FRACTION")


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
    finetune_seed: int | None = option(None, "seeds the head, the batch order and the "
                                             "augmentation", rule=SEED, metavar="SEED",
                                       default_text="--seed")
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
