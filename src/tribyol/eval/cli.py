"""``tribyol eval linear|knn|finetune|transfer``: evaluate an encoder, append to the store."""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.config import ConfigError, did_you_mean
from tribyol.store import DEFAULT_STORE, append_result

log = logging.getLogger(__name__)

DEFAULT_SPLITS_DIR = Path("results") / "splits"


def numbers(text: str) -> list[float]:
    """``1e-4,1e-3`` -> [1e-4, 1e-3] (argparse type of ``--weight-decays``)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 1e-4,1e-3, got {text!r}") from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_dataset(name: str | None, option: str = "--dataset") -> None:
    """An unknown dataset name, with the closest known one (as ``pretrain`` does)."""
    from tribyol.data import DATASETS

    if name is not None and name not in DATASETS:
        raise ConfigError(f"{option}: unknown dataset '{name}'.{did_you_mean(name, DATASETS)} "
                          f"Known: {', '.join(sorted(DATASETS))}")


def check_device(device: str | None) -> None:
    """cpu, cuda, cuda:N or mps, and present on this machine."""
    import torch

    if device is None:
        return
    match = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", device)
    _check(match is not None and (match[2] is None or match[1] == "cuda"),
           f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
    kind, index = match[1], match[2]
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        _check(count > 0, f"--device {device}: CUDA is not available on this machine "
                          f"(torch {torch.__version__}); use --device cpu")
        _check(index is None or int(index) < count,
               f"--device {device}: this machine has {count} CUDA device(s), "
               f"cuda:0 to cuda:{count - 1}")
    if kind == "mps":
        _check(torch.backends.mps.is_available(),
               f"--device {device}: MPS is not available on this machine; use --device cpu")


def check_imagenet_options(args: argparse.Namespace) -> None:
    """``--weights`` / ``--image-size`` belong to ``imagenet:ARCH`` sources only."""
    from tribyol.eval.common import (
        IMAGENET_PREFIX,
        MIN_IMAGENET_IMAGE_SIZE,
        is_imagenet_source,
    )

    sources = getattr(args, "sources", None) or [getattr(args, "source", "")]
    imagenet = [s for s in sources if is_imagenet_source(s)]
    for option in ("weights", "image_size"):
        if getattr(args, option, None) is not None and not imagenet:
            raise ConfigError(
                f"--{option.replace('_', '-')} applies to {IMAGENET_PREFIX}ARCH sources only "
                "(e.g. imagenet:resnet50); a run or an exported encoder brings its own weights "
                "and image size")
    size = getattr(args, "image_size", None)
    _check(size is None or size >= MIN_IMAGENET_IMAGE_SIZE,
           f"--image-size must be >= {MIN_IMAGENET_IMAGE_SIZE} (the ImageNet ResNet divides its "
           f"input by 32; default 224, ImageNet's), got {size}")
    if imagenet and getattr(args, "source", None) is not None:
        _check(getattr(args, "dataset", None) is not None,
               f"SOURCE {args.source} was trained on ImageNet, which tribyol does not evaluate "
               "on; pass --dataset, e.g. --dataset cifar10")


def validate(args: argparse.Namespace) -> None:
    """Every option value of an eval command, checked before any encoder or data is loaded.

    A bad value raises ``ConfigError``: the CLI prints one line, ``error: ...``, and exits 2.
    """
    from tribyol.eval.options import KNN_K, KNN_TEMPERATURE, MAX_ITER, FinetuneOptions

    def given(name: str) -> Any:
        return getattr(args, name, None)

    check_dataset(given("dataset"))
    check_imagenet_options(args)
    for name in ("limit_train", "limit_test"):
        value = given(name)
        _check(value is None or value >= 1,
               f"--{name.replace('_', '-')} must be >= 1 (a number of images; leave it out to "
               f"use them all), got {value}")
    _check(args.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {args.eval_batch_size}")
    check_device(args.device)
    test_from_train = given("test_from_train")
    _check(test_from_train is None or 0 < test_from_train < 1,
           f"--test-from-train must be in (0, 1), the share of train held out as the test set, "
           f"e.g. 0.2; got {test_from_train}")
    if given("k") is not None:
        _check(args.k >= 1, f"--k must be >= 1 (the neighbours that vote; default {KNN_K}), "
                            f"got {args.k}")
        _check(args.temperature > 0 and math.isfinite(args.temperature),
               f"--temperature must be > 0 (votes weigh exp(similarity / T); default "
               f"{KNN_TEMPERATURE}), got {args.temperature}")
    if given("val_fraction") is not None:
        _check(0 <= args.val_fraction < 1,
               f"--val-fraction must be in [0, 1), the share of train held out to choose the L2 "
               f"penalty (0: no validation split; default 0.1), got {args.val_fraction}")
        _check(args.max_iter >= 1, f"--max-iter must be >= 1 (default {MAX_ITER}), got {args.max_iter}")
        decays = args.weight_decays
        _check(len(decays) > 0, "--weight-decays is empty; give comma-separated L2 penalties "
                                ">= 0, e.g. 1e-6,1e-4,1e-2")
        bad = [w for w in decays if not (w >= 0 and math.isfinite(w))]
        _check(not bad, f"--weight-decays must all be finite and >= 0, got "
                        f"{', '.join(f'{w:g}' for w in bad)}")
    if given("label_fraction") is not None:
        d = FinetuneOptions()
        _check(0 < args.label_fraction <= 1,
               f"--label-fraction must be in (0, 1], e.g. 0.01, 0.1 or 1.0; got {args.label_fraction}")
        _check(args.epochs >= 1, f"--epochs must be >= 1 (default {d.epochs}), got {args.epochs}")
        _check(args.batch_size >= 2, f"--batch-size must be >= 2 (BatchNorm cannot train on one "
                                     f"image; default {d.batch_size}), got {args.batch_size}")
        _check(args.lr > 0 and math.isfinite(args.lr), f"--lr must be > 0, got {args.lr}")
        _check(args.weight_decay >= 0 and math.isfinite(args.weight_decay),
               f"--weight-decay must be >= 0, got {args.weight_decay}")
        _check(0 < args.crop_min <= 1, f"--crop-min must be in (0, 1], got {args.crop_min}")
    if given("targets") is not None:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        _check(len(targets) > 0, "--targets is empty; give comma-separated datasets, e.g. "
                                 "mnist,cifar10")
        for target in targets:
            check_dataset(target, "--targets")


def _common(p: argparse.ArgumentParser, many_sources: bool = False) -> None:
    from tribyol.eval.options import MIN_TEST_IMAGES

    if many_sources:
        p.add_argument("sources", nargs="+", metavar="SOURCE",
                       help="run directories, .ckpt or exported .safetensors encoders, or "
                            "imagenet:resnet18 / imagenet:resnet50 (torchvision's ImageNet weights)")
    else:
        p.add_argument("source", metavar="SOURCE",
                       help="run directory, .ckpt or exported .safetensors encoder, or "
                            "imagenet:resnet18 / imagenet:resnet50 (torchvision's ImageNet weights)")
    p.add_argument("--weights", metavar="PATH",
                   help="imagenet:ARCH sources: torchvision's ImageNet weight file (default: the "
                        "torch hub cache, e.g. ~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth)")
    p.add_argument("--image-size", type=int,
                   help="imagenet:ARCH sources: the size images are resized to (default 224, "
                        "ImageNet's; smaller is faster and farther from how the weights were trained)")
    p.add_argument("--data-root", default="data", help="folder with the datasets (default: data)")
    p.add_argument("--download", action="store_true", help="fetch missing datasets (needs internet)")
    p.add_argument("--limit-train", type=int, help="seeded, stratified subset of N training images")
    p.add_argument("--limit-test", type=int, help="seeded, stratified subset of N test images")
    p.add_argument("--seed", type=int, default=0, help="splits, subsets and training (default 0)")
    p.add_argument("--eval-batch-size", type=int, default=256, help="feature extraction batch")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--cache-dir", help="feature cache (default: $TRIBYOL_CACHE_DIR or "
                                       "~/.cache/tribyol/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"results file (default {DEFAULT_STORE})")
    p.add_argument("--no-store", action="store_true", help="print only; append nothing")
    p.add_argument("--random-init", action="store_true",
                   help="baseline: the same architecture with random weights")
    p.add_argument("--force-small-test", action="store_true",
                   help=f"score a test set of fewer than {MIN_TEST_IMAGES} images anyway (refused "
                        "by default: one image would move top-1 by a point or more)")


def _test_from_train_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--test-from-train", type=float, metavar="FRACTION", help=help)


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset to evaluate on (default: the pre-training one)")
    p.add_argument("--dataset-label", help="name in the results store (default: the dataset "
                                           "name; folders: folder:<dirname>)")
    _test_from_train_arg(p, "no test split (e.g. a folder without test/): hold out this seeded, "
                            "stratified fraction of train as the test set, e.g. 0.2")


def _setup(args: argparse.Namespace, check: Any = None):
    """Options checked, the source loaded, ``check(src, dataset)`` run, then the data read."""
    from tribyol.eval.common import load_eval_data, load_source
    from tribyol.eval.features import FeatureCache
    from tribyol.eval.splits import check_test_size

    validate(args)
    src = load_source(args.source, args.random_init, args.seed, weights=args.weights,
                      image_size=args.image_size)
    name = args.dataset or src.meta.get("dataset")
    _check(name is not None, f"{args.source} does not say which dataset it was pre-trained on; "
                             "pass --dataset")
    check_dataset(name, f"{args.source} (pre-training dataset; pass --dataset to choose another)")
    if check is not None:
        check(src, name)
    data = load_eval_data(
        name, args.data_root, image_size=src.image_size, channels=src.in_channels,
        test_from_train=args.test_from_train, limit_train=args.limit_train,
        limit_test=args.limit_test, seed=args.seed, download=args.download,
        label=args.dataset_label,
    )
    check_test_size(len(data.test_indices), data.name, args.force_small_test)
    cache = FeatureCache(args.cache_dir, enabled=not args.no_cache)
    return src, data, cache


@dataclass
class Features:
    """Frozen features of the train pool and the test set (and the cached test file's path)."""

    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any
    test_file: str | None


def _features(args: argparse.Namespace, src: Any, data: Any, cache: Any) -> Features:
    from tribyol.eval.common import cache_name, channel_stats

    common = dict(name=cache_name(data, args.data_root), image_size=src.image_size,
                  mean=channel_stats(src.mean, src.in_channels),
                  std=channel_stats(src.std, src.in_channels), in_channels=src.in_channels,
                  batch_size=args.eval_batch_size, device=args.device)
    train_x, train_y, _ = cache.features(src.encoder, data.train, split="train",
                                         indices=data.train_indices, **common)
    test_split = "test" if data.test is not data.train else "train"
    test_x, test_y, test_file = cache.features(src.encoder, data.test, split=test_split,
                                               indices=data.test_indices, **common)
    return Features(train_x, train_y, test_x, test_y, test_file)


def _save(args: argparse.Namespace, record: dict[str, Any]) -> None:
    if not args.no_store:
        append_result(args.store, record)
        log.info("appended to %s", args.store)


def cmd_linear(args: argparse.Namespace) -> int:
    from tribyol.eval.common import base_record
    from tribyol.eval.linear import linear_probe

    src, data, cache = _setup(args)
    f = _features(args, src, data, cache)
    result = linear_probe(f.train_x, f.train_y, f.test_x, f.test_y, val_fraction=args.val_fraction,
                          seed=args.seed, weight_decays=args.weight_decays,
                          max_iter=args.max_iter, num_classes=data.num_classes)
    print(f"linear {src.run_id} on {data.name}: top-1 {result.top1:.2f}% "
          f"({result.val_text()}, wd {result.weight_decay:g}, "
          f"{result.num_train} train / {result.num_test} test, test split: {data.test_split})")
    record = base_record(src, data, "linear", args.seed)
    record.update(value=result.top1, params={**result.as_dict(), "features_file": f.test_file})
    _save(args, record)
    return 0


def cmd_knn(args: argparse.Namespace) -> int:
    from tribyol.eval.common import base_record
    from tribyol.eval.knn import knn_accuracy

    src, data, cache = _setup(args)
    f = _features(args, src, data, cache)
    top1 = knn_accuracy(f.train_x, f.train_y, f.test_x, f.test_y, args.k, args.temperature)
    print(f"knn {src.run_id} on {data.name}: top-1 {top1:.2f}% (k {args.k}, T {args.temperature:g}, "
          f"{len(f.train_y)} train / {len(f.test_y)} test, test split: {data.test_split})")
    record = base_record(src, data, "knn", args.seed)
    record.update(value=top1, params={"k": args.k, "temperature": args.temperature,
                                      "num_train": len(f.train_y), "num_test": len(f.test_y),
                                      "features_file": f.test_file})
    _save(args, record)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:

    from tribyol.data import get_spec
    from tribyol.eval.common import base_record, channel_stats, check_label_fraction
    from tribyol.eval.finetune import FinetuneOptions, finetune
    from tribyol.eval.splits import labelled_subset

    def labels_unseen(src: Any, name: str) -> None:
        check_label_fraction(src, args.label_fraction, (name, args.dataset_label))

    src, data, _ = _setup(args, labels_unseen)
    subset, path = labelled_subset(data, args.label_fraction, args.seed, args.splits_dir)
    options = FinetuneOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, augment=args.augment, crop_min=args.crop_min,
        seed=args.seed, eval_batch_size=args.eval_batch_size,
    )
    spec_name = args.dataset or src.meta.get("dataset")
    result = finetune(
        src.encoder, data.train, subset, data.test, data.test_indices,
        num_classes=data.num_classes, image_size=src.image_size,
        mean=channel_stats(src.mean, src.in_channels), std=channel_stats(src.std, src.in_channels),
        in_channels=src.in_channels, views_preset=get_spec(spec_name).views, options=options,
        device=args.device,
    )
    print(f"finetune {src.run_id} on {data.name} with {args.label_fraction:g} of the labels "
          f"({result.num_train} images): top-1 {result.top1:.2f}% after {result.steps} steps "
          f"({result.num_test} test images, test split: {data.test_split})")
    record = base_record(src, data, "finetune", args.seed)
    if args.random_init:
        record["method"] = "scratch"
    record.update(value=result.top1, label_fraction=args.label_fraction,
                  params={**vars(result), "subset_file": str(path) if path is not None else None})
    _save(args, record)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from tribyol.eval.common import base_record, load_source
    from tribyol.eval.features import FeatureCache, weights_hash
    from tribyol.eval.transfer import format_table, transfer

    validate(args)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    cache = FeatureCache(args.cache_dir, enabled=not args.no_cache)
    for source in args.sources:
        src = load_source(source, args.random_init, args.seed, weights=args.weights,
                          image_size=args.image_size)

        def save(row, src=src):
            if row.status == "ok":
                record = base_record(src, row.data, "transfer", args.seed)
                record.update(value=row.top1, params={**row.result.as_dict(), "norm": args.norm})
                _save(args, record)

        rows = transfer(
            src, targets, cache, root=args.data_root, norm=args.norm, seed=args.seed,
            limit_train=args.limit_train, limit_test=args.limit_test, download=args.download,
            on_result=save, batch_size=args.eval_batch_size, device=args.device,
            encoder_hash=weights_hash(src.encoder), val_fraction=args.val_fraction,
            max_iter=args.max_iter, weight_decays=args.weight_decays,
            test_from_train=args.test_from_train, force_small_test=args.force_small_test,
        )
        print(format_table(src, rows))
        print()
    return 0


def _probe_args(p: argparse.ArgumentParser) -> None:
    from tribyol.eval.options import MAX_ITER, WEIGHT_DECAY_GRID

    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="stratified validation split of train for choosing the penalty (0.1)")
    p.add_argument("--max-iter", type=int, default=MAX_ITER, help=f"L-BFGS iterations ({MAX_ITER})")
    p.add_argument("--weight-decays", type=numbers, default=list(WEIGHT_DECAY_GRID),
                   help="comma-separated L2 penalty grid (default "
                        f"{','.join(f'{w:g}' for w in WEIGHT_DECAY_GRID)})")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from tribyol.eval.options import (
        AUGMENTS,
        KNN_K,
        KNN_TEMPERATURE,
        NORMS,
        POSTER_TARGETS,
        FinetuneOptions,
    )

    evaluate = sub.add_parser("eval", help="evaluate an encoder (linear, knn, finetune, transfer)")
    protocols = evaluate.add_subparsers(dest="protocol", required=True)

    p = protocols.add_parser("linear", help="linear probe on frozen features")
    _common(p)
    _dataset_args(p)
    _probe_args(p)
    p.set_defaults(func=cmd_linear)

    p = protocols.add_parser("knn", help="weighted kNN (cosine) on frozen features")
    _common(p)
    _dataset_args(p)
    p.add_argument("--k", type=int, default=KNN_K, help=f"neighbours (default {KNN_K})")
    p.add_argument("--temperature", type=float, default=KNN_TEMPERATURE,
                   help=f"vote weight exp(sim/T) (default {KNN_TEMPERATURE})")
    p.set_defaults(func=cmd_knn)

    d = FinetuneOptions()
    p = protocols.add_parser("finetune", help="fine-tune the whole encoder + a linear head")
    _common(p)
    _dataset_args(p)
    p.add_argument("--label-fraction", type=float, required=True,
                   help="fraction of training labels: 0.01, 0.1 or 1.0")
    p.add_argument("--splits-dir", default=str(DEFAULT_SPLITS_DIR),
                   help=f"label-subset index files (default {DEFAULT_SPLITS_DIR})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"(default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"SGD, cosine decay (default {d.lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"(default {d.weight_decay})")
    p.add_argument("--augment", choices=AUGMENTS, default=d.augment, help=f"(default {d.augment})")
    p.add_argument("--crop-min", type=float, default=d.crop_min,
                   help=f"crop-flip: crop scale lower bound (default {d.crop_min})")
    p.set_defaults(func=cmd_finetune)

    p = protocols.add_parser("transfer", help="linear probe of one encoder on many targets")
    _common(p, many_sources=True)
    p.add_argument("--targets", default=",".join(POSTER_TARGETS),
                   help="comma-separated datasets (default: the poster's eight)")
    p.add_argument("--norm", choices=NORMS, default="encoder",
                   help="normalise targets with the encoder's statistics (default) or their own")
    _test_from_train_arg(p, "targets without a test split (e.g. a folder without test/): hold "
                            "out this seeded, stratified fraction of train as the test set, "
                            "e.g. 0.2; targets with a test split keep theirs")
    _probe_args(p)
    p.set_defaults(func=cmd_transfer)
