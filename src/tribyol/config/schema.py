"""Typed run configuration: the sections' dataclasses and the checks of their values.

Every number the poster leaves open is an option field here (or in a method's ``Options``) with
its default, meaning and check. ``tribyol.config.structured`` builds these dataclasses from a tree;
reading YAML and overrides is ``tribyol.config.load``'s; checking names against the dataset,
backbone and method registries (and typing the method's options) is ``tribyol.resolve``'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tribyol.config.augment import (  # noqa: F401 (the augment section, re-exported)
    DEFAULT_EXTRA_VIEWS,
    EXTRA_VIEWS,
    PROBABILITY,
    AugmentConfig,
    check_augment,
)
from tribyol.config.fields import (
    Rule,
    at_least,
    check_fields,
    non_negative,
    option,
    option_name,
    positive,
    within,
)
from tribyol.errors import ConfigError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# 64-true: fp64 throughout, slow; for numerical checks (tests/engine/test_compile.py).
PRECISIONS = ("auto", "bf16-mixed", "16-mixed", "32", "32-true", "bf16-true", "64-true")
# The encoder's normalisation: BatchNorm, or the batch-free GroupNorm (+ weight-standardised
# convolutions); the heads follow it (docs/methods.md).
NORMS = ("bn", "gn", "gn-ws")
SEED_LIMIT = 2**32  # NumPy's seeds, and so Lightning's, must be in [0, 2**32)
# Views past 8192 px are a typo, not a tile: one float32 batch of 32 RGB views of 8192 px
# already takes 26 GB (100000 px: 3.8 TB).
MAX_IMAGE_SIZE = 8192
IMAGE_SIZE = within(8, MAX_IMAGE_SIZE, "[]")


def _value_range_ok(value: Any) -> bool:
    pairs = list(value or ())
    return (len(pairs) >= 2 and len(pairs) % 2 == 0
            and all(lo < hi for lo, hi in zip(pairs[::2], pairs[1::2], strict=True)))


VALUE_RANGE = Rule(_value_range_ok, "[low, high] (or pairs, one per band, flat) with low < high")


def _batch_ok(value: Any) -> bool:
    return value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value >= 2


def _devices_ok(value: Any) -> bool:
    if isinstance(value, str) and "," in value:  # "0,1": ids, as Lightning reads them
        value = [int(v) if v.strip().isdigit() else v for v in value.split(",")]
    if isinstance(value, (list, tuple)):  # device ids, each once, e.g. [0, 1]
        ids = [i for i in value if isinstance(i, int) and not isinstance(i, bool) and i >= 0]
        return bool(value) and len(ids) == len(value) == len(set(ids))
    text = str(value)
    return text == "auto" or text.lstrip("-").isdigit() and (int(text) >= 1 or int(text) == -1)


@dataclass
class DataConfig:
    # The registry's names, written out: the registry imports torch (a test keeps them in step).
    dataset: str = option("fashionmnist", "mnist, fashionmnist, kmnist, usps, svhn, cifar10, "
                          "cifar100, stl10, digits, ucmerced, or folder (your ImageFolder)")
    root: str = option("data", "folder with the dataset's files (or where they go, with download)")
    download: bool = option(False, "fetch the dataset (needs internet); nothing is fetched unless asked")
    image_size: int | None = option(None, "the views' size", rule=IMAGE_SIZE,
                                    default_text="the preset's; folders: their images' own (median, <= 224)")
    # Folder images are decoded to resize x resize centre crops (shorter side scaled first),
    # and views crop from those.
    resize: int | None = option(None, "folders: the decoded size views are cropped from",
                                rule=IMAGE_SIZE, default_text="image_size * 8/7, ImageNet's 256 for 224")
    channels: int | None = option(
        None, "folders: the band count, 1 to 64 (1 or 3 for JPEG/8-bit PNG: grayscale or RGB); "
        "config.yaml records the loaded value", rule=within(1, 64, "[]"),
        default_text="the files' own (TIFF, DICOM, .npy, 16-bit PNG); 3 for JPEG/8-bit PNG")
    layout: str = option("auto", ".npy files: axis order [C, H, W] or [H, W, C]",
                         choices=("auto", "CHW", "HWC"))
    scale: float | None = option(None, "pixels are divided by this (e.g. 10000 for Sentinel-2)",
                                 rule=positive(), default_text="255 for uint8, 1 otherwise")
    value_range: list[float] | None = option(
        None, "clip to [low, high] after scaling (e.g. a CT window [-1000, 400]), or one pair per "
        "band, flat: [low1, high1, low2, high2, ...]", rule=VALUE_RANGE, each=False,
        default_text="no clipping")
    stats: str = option("auto", "normalisation mean/std: the preset's, or per band from a seeded "
                        "sample of the training images (data)", choices=("auto", "preset", "data"),
                        default_text="auto: data for TIFF/DICOM/.npy/16-bit folders, else the preset's")
    stats_sample: int = option(512, "training images read for data statistics", rule=at_least(1))
    # Written by the run (config.yaml records the statistics it normalised with); given, they win.
    mean: list[float] | None = option(None, "per-band normalisation mean, in scaled units",
                                      default_text="from data.stats")
    std: list[float] | None = option(None, "per-band normalisation std, in scaled units",
                                     rule=positive(), default_text="from data.stats")
    limit: int | None = option(None, "a seeded, stratified subset of N training images",
                               rule=at_least(1), default_text="all")
    on_device: bool = option(True, "hold in-memory datasets as one uint8 tensor on the device")
    monitor_fraction: float = option(0.0, "labelled train fraction held out for the online kNN monitor",
                                     rule=within(0, 1, "[)"))
    bad_images: str = option("skip", "folders: skip corrupt files (logged) or stop with an error",
                             choices=("skip", "error"))
    num_workers: int = option(0, "loader workers for folder datasets (in-memory ones need none)",
                              rule=at_least(0))


@dataclass
class ModelConfig:
    backbone: str = option("convnet", "the encoder: convnet, resnet18, resnet50, or timm:NAME "
                                      "(any timm architecture, e.g. timm:convnext_tiny)")
    weights: str | None = option(None, "timm backbones: a local weights file (.safetensors or "
                                       "a torch state dict) to start from, its first conv "
                                       "adapted to the data's bands; nothing is downloaded",
                                 default_text="random initialisation")
    small_stem: bool | None = option(None, "ResNets: a 3x3 stem without max-pool",
                                     default_text="on for views of <= 64 px")
    width: int = option(32, "the ConvNet's base width", rule=at_least(1))
    hidden_dim: int = option(512, "MLP hidden size (the poster: 512)", rule=at_least(1))
    proj_dim: int = option(128, "projection size (the poster: 128)", rule=at_least(1))
    norm: str = option("bn", "the encoder's and heads' normalisation: bn (BatchNorm), gn "
                             "(GroupNorm; LayerNorm in the heads) or gn-ws (GroupNorm with "
                             "weight-standardised convolutions): gn/gn-ws do not use the batch",
                       choices=NORMS)
    norm_groups: int = option(32, "GroupNorm's group count (gn, gn-ws); must divide every "
                                  "normalised layer's channels", rule=at_least(1))
    sync_bn: bool = option(False, "BatchNorm over the global batch under DDP (any device)")
    channels_last: bool = option(True, "NHWC weights and views: faster convs on CPU and GPU "
                                       "(BENCHMARKS.md)")
    activation_checkpointing: bool = option(
        False, "recompute the encoder's stages in the backward pass instead of keeping their "
               "activations: less memory, about one more encoder forward of time; the same "
               "loss, gradients and BatchNorm statistics")


@dataclass
class OptimConfig:
    """Not on the poster. Default: SGD lr 0.03, momentum 0.9, wd 4e-4 (public re-implementations)."""

    name: str = option("sgd", "the optimizer", choices=("sgd", "adamw", "lars"))
    lr: float = option(0.03, "learning rate (at batch 256 when scale_lr is on)", rule=positive())
    scale_lr: bool = option(False, "linear scaling rule: lr * batch / 256")
    momentum: float = option(0.9, "SGD / LARS momentum", rule=within(0, 1, "[)"))
    weight_decay: float = option(4e-4, "weight decay", rule=non_negative())
    schedule: str = option("cosine", "learning-rate schedule", choices=("cosine", "constant"))
    warmup_epochs: float = option(0.0, "linear warm-up", rule=non_negative())


@dataclass
class TrainConfig:
    epochs: int = option(80, "passes over the data (the poster: 80)", rule=at_least(1))
    # Two images at least: BatchNorm (model.norm=bn) cannot normalise one, and the collapse
    # monitor's per-dimension std and the contrastive losses need two under GroupNorm too.
    batch_size: Any = option(32, "images per device per step, or auto (the largest that fits "
                                 "train.memory_gib, measured by the batch finder)", each=False,
                             rule=Rule(_batch_ok, "auto or a whole number >= 2 (two images per "
                                       "device: the per-dimension std, the contrastive losses and "
                                       "BatchNorm need them)"))
    memory_gib: float | None = option(None, "train.batch_size=auto: the memory budget in GiB",
                                      rule=positive(),
                                      default_text="0.9 of what the device has free")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1: off); names the run sN",
                            rule=Rule(lambda v: v == -1 or v >= 1, "-1 (off) or >= 1"))
    accumulate: int = option(1, "gradient accumulation (not the same as a larger batch: "
                                "BatchNorm still sees batch_size)", rule=at_least(1))
    precision: str = option("auto", "auto (bf16 where native), bf16-mixed, 16-mixed, 32, or "
                                    "64-true (fp64, for numerical checks)", choices=PRECISIONS)
    # auto is off on CPUs: there a compiled BYOL ConvNet b32 step took 80 s to compile and ran
    # no faster than eager (74.7 vs 72.0 ms a step). Any: YAML reads a bare on/off as true/false.
    compile: Any = option("auto", "torch.compile the step (forward, loss, backward, EMA; fused "
                          "optimizer): on, off, or auto: on with CUDA, off on CPUs and under DDP",
                          rule=Rule(lambda v: str(v).lower() in ("off", "on", "auto", "true", "false"),
                                    "off, on or auto", choices=("off", "on", "auto")))
    accelerator: str = option("auto", "auto, cpu or gpu", choices=ACCELERATORS)
    devices: Any = option("auto", "device count, list of ids, or auto", each=False,
                          rule=Rule(_devices_ok, "auto, a count >= 1, -1 (all) or a list of ids"))
    num_nodes: int = option(1, "machines", rule=at_least(1))
    strategy: str = option("auto", "auto, ddp, ...")
    seed: int = option(0, "the run's seed", rule=within(0, SEED_LIMIT, "[)", "in [0, 2**32)"))
    deterministic: bool = option(False, "deterministic kernels (slower)")
    ckpt_every_steps: int = option(0, "a checkpoint every N optimizer steps (0: every epoch and "
                                      "at the end only)", rule=at_least(0))
    log_every_steps: int = option(10, "log (and check for NaN) every N steps", rule=at_least(1))
    progress_bar: bool = option(True, "a progress bar on a terminal")
    knn_every_epochs: int = option(0, "online kNN monitor every N epochs (needs "
                                      "data.monitor_fraction > 0)", rule=at_least(0))
    knn_k: int = option(20, "the online kNN monitor's neighbours", rule=at_least(1))
    online_probe: bool = option(True, "a linear probe on detached features (labelled data only)")
    # Healthy L2-normalised d-dim projections have a per-dim std near 1/sqrt(d); collapse: ~0.
    collapse_threshold: float = option(0.1, "warn (and note collapse_warning in run.json) when "
                                            "train/z_std falls below this fraction of 1/sqrt(d), "
                                            "d the projection size (0: off)",
                                       rule=within(0, 1, "[]"))


DEFAULT_METHOD = "tribyol"


@dataclass
class RunConfig:
    """A whole pre-training run. ``method`` holds ``name`` plus that method's options: a
    mapping as read, the method's typed ``Options`` (with its ``name``) once
    ``tribyol.resolve`` has resolved it."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_METHOD})
    runs_root: str = option("runs", "parent folder of run directories")
    name: str | None = option(None, "run directory name, one plain folder name",
                              default_text="method_backbone_batch_budget_dataset")


def config_default(key: str) -> Any:
    """The default of a dotted key, e.g. ``train.batch_size`` -> 32 (``--help`` shows it)."""
    node: Any = RunConfig()
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def config_option(key: str) -> tuple[dataclasses.Field, Any] | None:
    """The option field of a dotted key (``train.batch_size``) and its type; None for a
    method's option (``tribyol.methods`` holds those)."""
    cls: Any = RunConfig
    *sections, last = key.split(".")
    for section in sections:
        cls = type_hints(cls).get(section)
        if not dataclasses.is_dataclass(cls):
            return None
    found = {f.name: f for f in dataclasses.fields(cls)}.get(last)
    return None if found is None else (found, type_hints(cls)[last])


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, once per class: the CLI asks for each flag's."""
    return typing.get_type_hints(cls)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict (tuples become lists); a resolved method is written as
    ``{"name": ..., every option}``."""

    def plain(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    tree = plain(dataclasses.asdict(cfg))
    method = getattr(cfg, "method", None)
    if dataclasses.is_dataclass(method):  # typed Options: the name first, as config.yaml has it
        tree["method"] = {"name": method.name, **tree["method"]}
    return tree


def check_run_name(name: str | None) -> None:
    """``name`` must be one plain path component: it names a folder that may be replaced."""
    if name is None:
        return
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
           or "\0" in name or Path(name).is_absolute())
    if bad:
        raise ConfigError(
            f"name {name!r} must be one plain folder name (no '/', not '.' or '..'); "
            f"use {option_name('--runs-root')} for the parent folder"
        )
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > 255:  # the longest folder name a filesystem takes
        raise ConfigError(f"name is {size} bytes long; a folder name can be at most 255, so "
                          f"choose a shorter {option_name('--name')}")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_compile(t: TrainConfig) -> None:
    """train.compile=on with more than one process, as far as the config says (devices=auto
    on a multi-GPU machine is caught when the run starts)."""
    devices = t.devices
    count = (len(devices) if isinstance(devices, (list, tuple))
             else len(str(devices).split(",")) if "," in str(devices)
             else int(devices) if str(devices).isdigit() else 1)
    many = count > 1 or t.num_nodes > 1 or "ddp" in str(t.strategy).lower()
    require(not (str(t.compile).lower() in ("on", "true") and many),
            f"train.compile=on is not supported with DDP (train.devices={devices}, num_nodes="
            f"{t.num_nodes}, strategy={t.strategy}): the compiled step is tested on one device; "
            "set train.compile=off, or auto (which compiles single-process runs only)")


def validate_values(cfg: RunConfig) -> None:
    """The checks that need no registry (and so no torch): every option's own rule, then the
    ones that relate two values."""
    check_run_name(cfg.name)
    check_fields(cfg, lambda name: name)
    for section in ("data", "augment", "model", "optim", "train"):
        check_fields(getattr(cfg, section), lambda name, section=section: f"{section}.{name}")
    check_augment(cfg.augment)
    monitor, every = cfg.data.monitor_fraction, cfg.train.knn_every_epochs
    require((monitor > 0) == (every > 0),
            f"the online kNN monitor needs both data.monitor_fraction > 0 (the labelled images "
            f"it holds out) and train.knn_every_epochs > 0 (got {monitor} and {every}); set both, "
            "or neither")
    check_compile(cfg.train)
    m = cfg.model
    require(not (m.sync_bn and m.norm != "bn"),
            f"model.sync_bn=true synchronises BatchNorm, but model.norm={m.norm} has none; set "
            "model.sync_bn=false (GroupNorm needs no synchronising) or model.norm=bn")
