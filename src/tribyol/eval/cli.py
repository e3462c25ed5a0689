"""``tribyol eval linear|knn|finetune|transfer``: evaluate an encoder, append to the store."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.config.fields import add_flags, did_you_mean, option_value
from tribyol.errors import ConfigError
from tribyol.eval.options import (
    DEVICE_PATTERN,
    DatasetOptions,
    EvalOptions,
    FinetuneOptions,
    KnnOptions,
    LabelOptions,
    LinearOptions,
    TransferOptions,
)
from tribyol.store import append_result, make_record

log = logging.getLogger(__name__)


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
    """A device that ``EvalOptions`` accepted (cpu, cuda, cuda:N or mps) is on this machine."""
    import torch

    match = re.fullmatch(DEVICE_PATTERN, device or "")
    if match is None:
        return
    kind, index = match[1], match[2]
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        _check(count > 0, f"{option_value('--device', device)}: CUDA is not available on this "
                          f"machine (torch {torch.__version__}); use {option_value('--device', 'cpu')}")
        _check(index is None or int(index) < count,
               f"{option_value('--device', device)}: this machine has {count} CUDA device(s), "
               f"cuda:0 to cuda:{count - 1}")
    if kind == "mps":
        _check(torch.backends.mps.is_available(),
               f"{option_value('--device', device)}: MPS is not available on this machine; use "
               f"{option_value('--device', 'cpu')}")


def check_imagenet_options(args: argparse.Namespace) -> None:
    """``--weights`` / ``--image-size`` belong to ``imagenet:ARCH`` sources only."""
    from tribyol.eval.imagenet import (
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
    """Every option value of an eval command, checked before any encoder or data is loaded:
    each value by its option group's dataclass (``args.groups``), then what needs the dataset
    registry or torch.

    A bad value raises ``ConfigError``: the CLI prints one line, ``error: ...``, and exits 2.
    """
    check_dataset(getattr(args, "dataset", None))
    check_imagenet_options(args)
    for group in args.groups:
        group.from_args(args)
    check_device(args.device)
    for target in getattr(args, "targets", None) or ():
        check_dataset(target, "--targets")
    check_paths(args)


def check_paths(args: argparse.Namespace) -> None:
    """Where results and features go must be writable, before an evaluation spends its time."""
    label = getattr(args, "dataset_label", None)
    _check(label is None or bool(label.strip()), "--dataset-label is empty; give a name, or drop "
           "the flag to use the dataset's")
    if not args.no_store:
        store = Path(args.store)
        _check(bool(args.store.strip()) and not store.is_dir(),
               f"--store {args.store!r} must be a file (JSON lines), not a folder or empty")
        _check(_creatable(store.parent), f"--store {args.store}: its folder {store.parent} cannot "
               "be made (a file is in the way?); pick another path")
        _check(_writable(store), f"--store {args.store} cannot be written (read-only, or no "
               "permission); pick another path, or pass --no-store")
    if not args.no_cache and args.cache_dir is not None:
        folder = Path(args.cache_dir)
        _check(bool(args.cache_dir.strip()) and not folder.is_file() and _creatable(folder),
               f"--cache-dir {args.cache_dir!r} must be a folder (made if missing); pick another")
        # the default folder (under ~) is not checked: one that cannot be written is skipped
        _check(_writable(folder), f"--cache-dir {args.cache_dir} cannot be written (read-only, "
               "or no permission); pick another folder, or pass --no-cache")


def _writable(path: Path) -> bool:
    """``path`` can be written, or made in the nearest folder that exists on its way."""
    for part in [path, *path.parents]:
        if part.exists():
            return os.access(part, os.W_OK | (os.X_OK if part.is_dir() else 0))
    return True


def _creatable(folder: Path) -> bool:
    """``folder`` exists as a folder, or could be made: no file on the way to it."""
    for part in [folder, *folder.parents]:
        if part.exists():
            return part.is_dir()
    return True


def _sources_arg(p: argparse.ArgumentParser, many: bool) -> None:
    what = ("run directories, .ckpt or exported .safetensors encoders" if many else
            "run directory, .ckpt or exported .safetensors encoder")
    p.add_argument("sources" if many else "source", nargs="+" if many else None, metavar="SOURCE",
                   help=f"{what}, or imagenet:resnet18 / imagenet:resnet50 (torchvision's "
                        "ImageNet weights)")


@dataclass
class Loaded:
    """What an eval command on one dataset works on: the encoder, the data, the feature cache."""

    src: Any
    data: Any
    cache: Any


def _setup(args: argparse.Namespace, check: Callable[[Any, str], None] | None = None) -> Loaded:
    """Options checked, the source loaded, ``check(src, dataset)`` run, then the data read."""
    from tribyol.eval.carve_overlap import check_carve_unseen
    from tribyol.eval.data import check_test_size, load_eval_data
    from tribyol.eval.features import FeatureCache
    from tribyol.eval.sources import load_source

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
        limit_test=args.limit_test, seed=args.seed, split_seed=args.split_seed,
        download=args.download, label=args.dataset_label,
        validation_from_train=args.validation_from_train,
    )
    check_carve_unseen(src, data, name)
    check_test_size(len(data.test_indices), data.name, args.force_small_test)
    return Loaded(src, data, FeatureCache(args.cache_dir, enabled=not args.no_cache))


@dataclass
class Features:
    """Frozen features of the train pool and the test set (and the cached test file's path)."""

    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any
    test_file: str | None


def _features(args: argparse.Namespace, loaded: Loaded) -> Features:
    from tribyol.eval.data import cache_name

    src, data, cache = loaded.src, loaded.data, loaded.cache
    common = dict(name=cache_name(data, args.data_root), image_size=src.image_size,
                  mean=src.mean, **src.pixels,
                  std=src.std, in_channels=src.in_channels,
                  batch_size=args.eval_batch_size, device=args.device)
    train_x, train_y, _ = cache.features(src.encoder, data.train, split="train",
                                         indices=data.train_indices, **common)
    test_split = "test" if data.test is not data.train else "train"
    test_x, test_y, test_file = cache.features(src.encoder, data.test, split=test_split,
                                               indices=data.test_indices, **common)
    _check_scored(args, data, len(test_y))
    return Features(train_x, train_y, test_x, test_y, test_file)


def _check_scored(args: argparse.Namespace, data: Any, scored: int) -> None:
    """The test-size rule on the images scored: corrupt files are only found when decoded."""
    from tribyol.eval.data import check_test_size

    check_test_size(scored, data.name, args.force_small_test,
                    left_out=len(data.test_indices) - scored)


def _save(args: argparse.Namespace, record: dict[str, Any]) -> None:
    if args.no_store:
        return
    record = make_record(**record)
    try:
        append_result(args.store, record)
    except OSError as err:
        # The score is computed: printed, the record outlives a store that cannot be written.
        print(json.dumps(record, default=str), flush=True)
        raise PermissionError(
            f"cannot append to --store {args.store} ({err.strerror or err}); the record is the "
            "JSON line printed above: append it to a results store by hand, or rerun with "
            "another --store"
        ) from None
    log.info("appended to %s", args.store)


def cmd_linear(args: argparse.Namespace) -> int:
    from tribyol.eval.linear import linear_probe
    from tribyol.eval.records import base_record

    loaded = _setup(args)
    src, data = loaded.src, loaded.data
    f = _features(args, loaded)
    opt = LinearOptions.from_args(args)
    result = linear_probe(f.train_x, f.train_y, f.test_x, f.test_y, val_fraction=opt.val_fraction,
                          seed=args.seed, weight_decays=opt.weight_decays,
                          max_iter=opt.max_iter, num_classes=data.num_classes)
    print(f"linear {src.run_id} on {data.name}: top-1 {result.top1:.2f}% "
          f"({result.val_text()}, wd {result.weight_decay:g}, "
          f"{result.num_train} train / {result.num_test} test, test split: {data.test_split})")
    record = base_record(src, data, "linear", args.seed, args.split_seed)
    record.update(value=result.top1, params={**result.as_dict(), "features_file": f.test_file})
    _save(args, record)
    return 0


def cmd_knn(args: argparse.Namespace) -> int:
    from tribyol.eval.knn import knn_accuracy
    from tribyol.eval.records import base_record

    loaded = _setup(args)
    src, data = loaded.src, loaded.data
    f = _features(args, loaded)
    opt = KnnOptions.from_args(args)
    top1 = knn_accuracy(f.train_x, f.train_y, f.test_x, f.test_y, opt.k, opt.temperature)
    print(f"knn {src.run_id} on {data.name}: top-1 {top1:.2f}% (k {opt.k}, T {opt.temperature:g}, "
          f"{len(f.train_y)} train / {len(f.test_y)} test, test split: {data.test_split})")
    record = base_record(src, data, "knn", args.seed, args.split_seed)
    record.update(value=top1, params={"k": opt.k, "temperature": opt.temperature,
                                      "num_train": len(f.train_y), "num_test": len(f.test_y),
                                      "features_file": f.test_file})
    _save(args, record)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from tribyol.data import get_spec
    from tribyol.eval.data import labelled_subset
    from tribyol.eval.finetune import finetune
    from tribyol.eval.records import base_record
    from tribyol.eval.sources import check_label_fraction

    labels = LabelOptions.from_args(args)

    def labels_unseen(src: Any, name: str) -> None:
        check_label_fraction(src, labels.label_fraction, (name, args.dataset_label))

    loaded = _setup(args, labels_unseen)
    src, data = loaded.src, loaded.data
    subset, path = labelled_subset(data, labels.label_fraction, args.seed, labels.splits_dir)
    spec_name = args.dataset or src.meta.get("dataset")
    options = FinetuneOptions.from_args(args)
    if options.finetune_seed is None:  # the evaluation's seed, unless given its own
        options = dataclasses.replace(options, finetune_seed=args.seed)
    result = finetune(
        src.encoder, data.train, subset, data.test, data.test_indices,
        num_classes=data.num_classes, image_size=src.image_size,
        mean=src.mean, std=src.std, pixels=src.pixels,
        in_channels=src.in_channels, augment_preset=get_spec(spec_name).augment.as_dict(),
        options=options, device=args.device,
    )
    _check_scored(args, data, result.num_test)
    print(f"finetune {src.run_id} on {data.name} with {labels.label_fraction:g} of the labels "
          f"({result.num_train} images): top-1 {result.top1:.2f}% after {result.steps} steps "
          f"({result.num_test} test images, test split: {data.test_split})")
    record = base_record(src, data, "finetune", args.seed, args.split_seed)
    if args.random_init:
        record["method"] = "scratch"
    record.update(value=result.top1, label_fraction=labels.label_fraction,
                  params={**vars(result), "subset_file": str(path) if path is not None else None,
                          "finetune_seed": options.finetune_seed})
    _save(args, record)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from tribyol.eval.features import FeatureCache, weights_hash
    from tribyol.eval.records import base_record
    from tribyol.eval.sources import load_source
    from tribyol.eval.transfer import format_table, transfer

    validate(args)
    opt, probe = TransferOptions.from_args(args), LinearOptions.from_args(args)
    cache = FeatureCache(args.cache_dir, enabled=not args.no_cache)
    for source in args.sources:
        src = load_source(source, args.random_init, args.seed, weights=args.weights,
                          image_size=args.image_size)

        def save(row: Any, src: Any = src) -> None:
            if row.status == "ok":
                record = base_record(src, row.data, "transfer", args.seed, args.split_seed)
                record.update(value=row.top1, params={**row.result.as_dict(), "norm": opt.norm})
                _save(args, record)

        rows = transfer(
            src, opt.targets, cache, root=args.data_root, norm=opt.norm, seed=args.seed,
            split_seed=args.split_seed,
            limit_train=args.limit_train, limit_test=args.limit_test, download=args.download,
            on_result=save, batch_size=args.eval_batch_size, device=args.device,
            encoder_hash=weights_hash(src.encoder), val_fraction=probe.val_fraction,
            max_iter=probe.max_iter, weight_decays=probe.weight_decays,
            test_from_train=opt.test_from_train, force_small_test=args.force_small_test,
        )
        print(format_table(src, rows))
        print()
    return 0


# Each protocol: its help line, what it runs, and its option groups (one flag per field).
PROTOCOLS = {
    "linear": ("linear probe on frozen features", cmd_linear,
               (EvalOptions, DatasetOptions, LinearOptions)),
    "knn": ("weighted kNN (cosine) on frozen features", cmd_knn,
            (EvalOptions, DatasetOptions, KnnOptions)),
    "finetune": ("fine-tune the whole encoder + a linear head", cmd_finetune,
                 (EvalOptions, DatasetOptions, LabelOptions, FinetuneOptions)),
    "transfer": ("linear probe of one encoder on many targets", cmd_transfer,
                 (EvalOptions, TransferOptions, LinearOptions)),
}


def add_commands(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="evaluate an encoder (linear, knn, finetune, transfer)")
    protocols = evaluate.add_subparsers(dest="protocol", required=True)
    for name, (help, func, groups) in PROTOCOLS.items():
        p = protocols.add_parser(name, help=help)
        _sources_arg(p, many=name == "transfer")
        add_flags(p, groups)
        p.set_defaults(func=func, groups=groups)
