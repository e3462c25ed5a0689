"""Typed run configuration: dataclasses, YAML files and dotted overrides, validated up front.

Every number the poster leaves open is a field here (or in a method's ``Options``) with its
default documented beside it. Method-specific options live on the method class so that adding a
method never touches this file. This module imports no other part of tribyol but its errors:
checking names against the dataset, backbone and method registries is ``tribyol.resolve``'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tribyol.errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    dataset: str = "fashionmnist"  # a name in tribyol.data registry, or "folder"
    root: str = "data"  # where the dataset's files are (or go, with download)
    download: bool = False  # opt-in: nothing is fetched unless asked
    image_size: int | None = None  # None: the preset size; folders: their images' own (median, <= 224)
    # Folder datasets are decoded to resize x resize centre crops (shorter side scaled first);
    # views then crop from those. None: image_size * 8/7 (ImageNet's 256 for 224).
    resize: int | None = None
    channels: int = 3  # folders: 3 (RGB) or 1 (grayscale); config.yaml records the resolved value
    limit: int | None = None  # a seeded, stratified subset of N training images (quick runs, tests)
    on_device: bool = True  # hold in-memory datasets as one uint8 tensor on the device
    monitor_fraction: float = 0.0  # labelled train fraction held out for the online kNN monitor
    bad_images: str = "skip"  # folder datasets: "skip" corrupt files (logged) or "error"
    num_workers: int = 0  # loader workers for folder datasets (in-memory ones need none)


# How a method with three or more views sets the blur / solarize probabilities of the views past
# BYOL's pair (docs/methods.md, "The third view"): "cycle" (the per-view lists cycled, so v''
# copies v), "byol-pairs" (every view past v drawn like v', so each pair with the anchor v is
# BYOL's asymmetric pair), "uniform" (every view from one distribution, the mean of BYOL's pair).
# Two-view methods always get BYOL's pair. The default is this one constant: byol-pairs led the
# CPU ablation (RESULTS.md, "Ablation"; docs/methods.md says why).
THIRD_VIEWS = ("cycle", "byol-pairs", "uniform")
DEFAULT_THIRD_VIEW = "byol-pairs"


@dataclass
class ViewsConfig:
    """Batched augmentation; defaults follow BYOL's recipe (Grill et al. 2020, table 6)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    # Per-view probabilities, cycled over views (BYOL's asymmetric pair). ``None`` for blur
    # means: BYOL's [1.0, 0.1] above ``blur_min_size`` px, none at or below it.
    blur_p: list[float] | None = None
    blur_min_size: int = 32
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: list[float] = field(default_factory=lambda: [0.0, 0.2])
    third_view: str = DEFAULT_THIRD_VIEW  # one of THIRD_VIEWS: the views past the pair (>= 3 views)


@dataclass
class ModelConfig:
    backbone: str = "convnet"  # convnet | resnet18 | resnet50
    small_stem: bool | None = None  # None: 3x3 stem without max-pool at <= 64 px
    width: int = 32  # convnet base width
    hidden_dim: int = 512  # poster: MLP hidden size 512
    proj_dim: int = 128  # poster: projection size 128
    sync_bn: bool = False  # BatchNorm over the global batch under DDP (any device)
    channels_last: bool = True  # NHWC weights and views: faster convs on CPU and GPU (BENCHMARKS.md)


@dataclass
class OptimConfig:
    """Not on the poster. Default: SGD lr 0.03, momentum 0.9, wd 4e-4 (public re-implementations)."""

    name: str = "sgd"  # sgd | adamw | lars
    lr: float = 0.03  # at batch 256 when scale_lr is on, else as is
    scale_lr: bool = False  # linear scaling rule lr * batch / 256
    momentum: float = 0.9
    weight_decay: float = 4e-4
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 80  # poster: 80 epochs
    batch_size: int = 32
    max_steps: int = -1  # > 0 stops early (tests, benchmarks)
    accumulate: int = 1  # gradient accumulation; not the same as a larger batch
    precision: str = "auto"  # auto (bf16 where supported) | bf16-mixed | 32
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    seed: int = 0
    deterministic: bool = False
    ckpt_every_steps: int = 0  # 0: a checkpoint every epoch and at the end only
    log_every_steps: int = 10
    progress_bar: bool = True
    knn_every_epochs: int = 0  # online kNN monitor (needs data.monitor_fraction > 0)
    knn_k: int = 20
    online_probe: bool = True  # linear probe on detached features (labelled data only)


@dataclass
class RunConfig:
    """A whole pre-training run. ``method`` holds ``name`` plus that method's options."""

    data: DataConfig = field(default_factory=DataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "tribyol"})
    run_dir: str = "runs"  # parent folder of run directories
    name: str | None = None  # run directory name; None: derived from method/backbone/batch


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def did_you_mean(key: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return f" Did you mean '{match[0]}'?" if match else ""


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
    if cls is RunConfig and "method" in values:
        values = {**values, "method": _method_mapping(values["method"])}
    try:
        built = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException:
        raise _explain(cls, values, where) from None
    _require_finite(built, where)
    return built  # type: ignore[return-value]


def _method_mapping(value: Any) -> dict[str, Any]:
    # `--method byol` gives a name; `--set method.tau=0.99` alone keeps the default method's
    # name, because OmegaConf merges the mapping into the default {"name": ...}.
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"method: expected a name or a mapping, got {value!r}")
    return dict(value)


def _explain(cls: type, values: Mapping[str, Any], where: str) -> ConfigError:
    """Find the key OmegaConf refused (its own message names neither the value nor a fix)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            return ConfigError(f"unknown config key '{path}'.{did_you_mean(key, fields)}")
        try:
            OmegaConf.merge(OmegaConf.structured(cls), {key: value})
        except OmegaConfBaseException:
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
        return "a list, e.g. [0.1, 0.2]"
    if dataclasses.is_dataclass(hint) or origin is dict:
        return "a mapping"
    if hint is bool:
        return "true or false"
    if hint is int and isinstance(value, (float, str)):
        try:
            float(value)
            return "a whole number, written without a decimal point"
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


def config_default(key: str) -> Any:
    """The default of a dotted key, e.g. ``train.batch_size`` -> 32 (``--help`` shows it)."""
    node: Any = RunConfig()
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict (tuples become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 0.1)`` sets ``d["optim"]["lr"]``, creating sections."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{dotted}': '{key}' is a value, not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)`` with the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. optim.lr=0.1")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"override '{text}': the value is not valid YAML ({problem}); quote it, "
            "or write a list as [1, 2]"
        ) from None


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file or a syntax error is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}; fix that line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def config_tree(
    path: str | Path | None = None, overrides: typing.Iterable[str | tuple[str, Any]] = ()
) -> dict[str, Any]:
    """The raw config: the YAML file (if any) with the dotted overrides applied."""
    tree: dict[str, Any] = read_yaml_file(path) if path is not None else {}
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_dotted(tree, key, value)
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
            "use --run-dir for the parent folder"
        )


SEED_LIMIT = 2**32  # NumPy's seeds, and so Lightning's, must be in [0, 2**32)


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_values(cfg: RunConfig) -> None:
    """The checks that need no registry (and so no torch): ranges, choices, names."""
    check = require
    t, d, o, m, v = cfg.train, cfg.data, cfg.optim, cfg.model, cfg.views
    check_run_name(cfg.name)
    check(0 <= t.seed < SEED_LIMIT, f"train.seed must be in [0, 2**32), got {t.seed}")
    check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    check(t.accumulate >= 1, f"train.accumulate must be >= 1, got {t.accumulate}")
    check(
        t.precision in ("auto", "bf16-mixed", "16-mixed", "32", "32-true", "bf16-true"),
        f"train.precision '{t.precision}' is not one of auto, bf16-mixed, 16-mixed, 32",
    )
    check(t.max_steps == -1 or t.max_steps >= 1,
          f"train.max_steps must be -1 (off) or >= 1, got {t.max_steps}")
    check(t.ckpt_every_steps >= 0,
          f"train.ckpt_every_steps must be >= 0 (0: per epoch), got {t.ckpt_every_steps}")
    check(t.log_every_steps >= 1, f"train.log_every_steps must be >= 1, got {t.log_every_steps}")
    check(t.num_nodes >= 1, f"train.num_nodes must be >= 1, got {t.num_nodes}")
    check(t.knn_every_epochs >= 0 and t.knn_k >= 1, "train.knn_every_epochs must be >= 0, train.knn_k >= 1")
    check(
        t.accelerator in ACCELERATORS,
        f"train.accelerator '{t.accelerator}' is not one of {', '.join(ACCELERATORS)}",
    )
    devices = str(t.devices).strip()
    check(
        devices == "auto" or devices.lstrip("-").isdigit() and (int(devices) >= 1 or int(devices) == -1)
        or isinstance(t.devices, (list, tuple)) or "," in devices,
        f"train.devices must be auto, a count >= 1, -1 (all) or a list of ids, got {t.devices!r}",
    )
    check(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    check(0.0 <= o.momentum < 1.0, f"optim.momentum must be in [0, 1), got {o.momentum}")
    check(o.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {o.warmup_epochs}")
    check(o.name in ("sgd", "adamw", "lars"), f"optim.name '{o.name}' is not sgd, adamw or lars")
    check(o.schedule in ("cosine", "constant"), f"optim.schedule '{o.schedule}' unknown")
    check(d.image_size is None or d.image_size >= 8, "data.image_size must be >= 8")
    check(0.0 <= d.monitor_fraction < 1.0, "data.monitor_fraction must be in [0, 1)")
    check(d.bad_images in ("skip", "error"),
          f"data.bad_images must be 'skip' or 'error', got {d.bad_images!r}")
    check(d.limit is None or d.limit >= 1, f"data.limit must be >= 1 (or null: all), got {d.limit}")
    check(d.channels in (1, 3), f"data.channels must be 1 or 3, got {d.channels}")
    check(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")
    check(d.resize is None or d.resize >= 8, f"data.resize must be >= 8 (or null), got {d.resize}")
    check(m.hidden_dim >= 1 and m.proj_dim >= 1, "model.hidden_dim and proj_dim must be >= 1")
    check(m.width >= 1, f"model.width must be >= 1, got {m.width}")
    for name in ("crop_scale", "crop_ratio", "blur_sigma"):
        check(len(getattr(v, name)) == 2, f"views.{name} must be two numbers [low, high]")
    check(0 < v.crop_scale[0] <= v.crop_scale[1] <= 1, "views.crop_scale must be 0 < a <= b <= 1")
    check(0 < v.crop_ratio[0] <= v.crop_ratio[1], "views.crop_ratio must be 0 < a <= b")
    for name in ("flip_p", "jitter_p", "grayscale_p"):
        p = getattr(v, name)
        check(0.0 <= p <= 1.0, f"views.{name} must be in [0, 1], got {p}")
    for p in [*(v.blur_p or []), *v.solarize_p]:
        check(0.0 <= p <= 1.0, f"views probabilities must be in [0, 1], got {p}")
    check(v.third_view in THIRD_VIEWS,
          f"views.third_view '{v.third_view}' is not one of {', '.join(THIRD_VIEWS)}."
          f"{did_you_mean(v.third_view, THIRD_VIEWS)}")
    for name in ("blur_p", "solarize_p"):
        check(v.third_view == "cycle" or len(getattr(v, name) or []) <= 2,
              f"views.{name} with more than two entries sets each view itself, which needs "
              f"views.third_view=cycle (got {v.third_view}); or give BYOL's pair [p_v, p_v']")
