"""The one route from a YAML file and overrides to a validated ``RunConfig``.

``tribyol.config`` defines the config and checks what needs no registry (before torch is
imported, so those errors come at once); this module, a layer above the registries, adds the
dataset's view preset, checks the dataset, backbone and method names, and resolves the method's
options, once, into its typed ``Options``: ``cfg.method`` of the ``RunConfig`` returned is that
instance (``cfg.method.name``, ``cfg.method.tau``), and everything downstream reads it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tribyol.config import (
    DataConfig,
    RunConfig,
    config_tree,
    parse_override,
    read_yaml_file,
    require,
    to_dict,
    upgrade_tree,
    validate_values,
)
from tribyol.config.fields import did_you_mean
from tribyol.config.structured import build_dataclass

log = logging.getLogger(__name__)

__all__ = ["apply_augment_preset", "check_names", "drop_other_methods_options", "load_config",
           "resolve_method", "saved_config"]


def load_config(
    path: str | Path | Mapping[str, Any] | RunConfig | None = None,
    overrides: typing.Iterable[str | tuple[str, Any]] | Mapping[str, Any] | str = (),
) -> RunConfig:
    """Defaults <- YAML file (or a config as a mapping) <- dotted overrides, then validated,
    with ``method`` resolved into the method's typed ``Options``.

    Keys, types and value ranges are checked before anything imports torch (fast errors); the
    names that need the registries (dataset, backbone, method and its options) after.
    """
    # One "key=value", or a {key: value} mapping, is taken as the list it stands for.
    if isinstance(overrides, str):
        overrides = [overrides]
    overrides = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    if isinstance(path, RunConfig):
        path = to_dict(path)
    base = path if isinstance(path, Mapping) or path is None else read_yaml_file(path)
    tree = config_tree(base, overrides)
    validate_values(build_dataclass(RunConfig, tree))
    apply_augment_preset(tree)
    if base is not None:
        drop_other_methods_options(tree, dict(base), overrides)
    cfg = build_dataclass(RunConfig, tree)  # again, now with the preset under the user's augment
    check_names(cfg)
    check_view_memory(cfg)
    return resolve_method(cfg)


def drop_other_methods_options(tree: dict[str, Any], file_tree: dict[str, Any],
                               overrides: list[str | tuple[str, Any]]) -> None:
    """A config file written for one method (a run's config.yaml holds all its options), used
    with another (``--method byol``): its options the new method lacks are dropped, not refused.
    Options given on the command line are kept, and refused if the method lacks them."""
    from tribyol.methods import METHODS

    file_method = file_tree.get("method")
    if file_method is None:
        return
    default = RunConfig().method["name"]
    file_name = file_method.get("name", default) if isinstance(file_method, dict) else file_method
    method = tree.get("method")
    if not isinstance(method, dict) or file_name == method.get("name", default):
        return
    cls = METHODS.get(method.get("name"))
    if cls is None:
        return  # an unknown method: resolve_method names it
    known = {f.name for f in dataclasses.fields(cls.Options)}
    given = set()
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        given |= {f"method.{k}" for k in value} if key == "method" and isinstance(value, dict) else {key}
    dropped = [k for k in method if k != "name" and k not in known and f"method.{k}" not in given]
    for key in dropped:
        del method[key]
    if dropped:
        log.info("%s: method.%s belong to %s, not %s; dropped", file_tree.get("name") or "config",
                 ", method.".join(dropped), file_name, method["name"])


def resolve_method(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its ``method`` mapping made the method's typed ``Options`` (defaults filled
    in, every option checked): the one place a method's options are resolved."""
    from tribyol.methods import resolve_options  # here: the torch-free checks come first

    if not dataclasses.is_dataclass(cfg.method):
        cfg.method = resolve_options(cfg.method)[1]
    return cfg


def saved_config(tree: Mapping[str, Any]) -> RunConfig:
    """A config a run saved (its config.yaml, a checkpoint's hyper-parameters), by this version
    or an older one (``upgrade_tree``), built and with its method resolved; without a new run's
    checks of the machine (memory) or the dataset's preset, which it already holds."""
    return resolve_method(build_dataclass(RunConfig, upgrade_tree(tree)))


def apply_augment_preset(tree: dict[str, Any]) -> None:
    """Put the dataset's augmentation preset, then the named ``augment.preset`` (the user's, or
    else the dataset's), under the user's own ``augment`` settings: theirs win, then the named
    preset's values, then the dataset's."""
    # here, not at the top: the torch-free checks come first
    from tribyol.data.registry import AUGMENT_PRESETS, DATASETS

    data = tree.get("data") or {}
    name = data.get("dataset", DataConfig.dataset) if isinstance(data, dict) else None
    augment = tree.get("augment", {})
    if not isinstance(augment, dict):
        return
    dataset = DATASETS[name].augment.as_dict() if name in DATASETS else {}
    named = AUGMENT_PRESETS.get(augment.get("preset", dataset.get("preset")))
    tree["augment"] = {**dataset, **(named.as_dict() if named else {}), **augment}


def check_names(cfg: RunConfig) -> None:
    """The dataset and the backbone must be registered (the method: ``resolve_method``)."""
    # Imported here: the registries import torch, and validate_values' errors come before it.
    from tribyol.data import DATASETS
    from tribyol.nets.backbones import BACKBONES, TIMM_PREFIX, norm_channels

    d, m = cfg.data, cfg.model
    require(
        d.dataset in DATASETS,
        f"unknown dataset '{d.dataset}'.{did_you_mean(d.dataset, DATASETS)} "
        f"Known: {', '.join(sorted(DATASETS))}",
    )
    timm = m.backbone.startswith(TIMM_PREFIX)
    if timm:
        check_timm_model(cfg)  # norm must stay bn there, so the groups check below passes
    require(timm or m.weights is None, f"model.weights is for timm backbones, not {m.backbone}; "
                                       "drop model.weights, or use --backbone timm:NAME")
    require(
        timm or m.backbone in BACKBONES,
        f"unknown backbone '{m.backbone}'.{did_you_mean(m.backbone, BACKBONES)} "
        f"Known: {', '.join(sorted(BACKBONES))}",
    )
    if m.norm != "bn":
        channels = norm_channels(m.backbone, m.width)
        bad = [c for c in channels if c % m.norm_groups]
        require(not bad, f"model.norm={m.norm}: model.norm_groups={m.norm_groups} does not divide "
                         f"the {bad[0] if bad else 0} channels of a {m.backbone} layer; choose "
                         f"model.norm_groups dividing {min(channels) if channels else 0} (e.g. "
                         f"{math.gcd(min(channels) if channels else 1, m.norm_groups)})")


def check_timm_model(cfg: RunConfig) -> None:
    """A ``timm:NAME`` backbone: a timm architecture (else the closest names), without the
    options timm models do not take, and its ``model.weights`` a file here."""
    from tribyol.nets.backbones import check_timm_name, timm_options_problem

    m = cfg.model
    check_timm_name(m.backbone)
    problem = timm_options_problem(m.norm, m.small_stem)
    require(problem is None, problem or "")
    if m.weights is not None and not Path(m.weights).expanduser().is_file():
        raise FileNotFoundError(f"model.weights {m.weights} is not a file; give the path of a "
                                ".safetensors or .pt file on this machine")


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_view_memory(cfg: RunConfig, memory: int | None = None) -> None:
    """One batch of one view (float32) must fit in this machine's memory: a typo such as
    ``data.image_size=100000`` would otherwise try to allocate terabytes mid-step."""
    from tribyol.data import DATASETS

    spec = DATASETS[cfg.data.dataset]
    size = cfg.data.image_size or spec.image_size
    channels = (cfg.data.channels or spec.channels) if cfg.data.dataset == "folder" else spec.channels
    if cfg.train.batch_size == "auto":
        return  # the batch finder measures what fits
    need = cfg.train.batch_size * channels * size * size * 4
    memory = physical_memory() if memory is None else memory
    require(memory is None or need <= memory,
            f"one batch of views takes {_bytes(need)} (train.batch_size {cfg.train.batch_size} "
            f"x {channels} channel(s) x {size} x {size} px x 4 bytes), more than this machine's "
            f"{_bytes(memory or 0)} of memory; lower data.image_size or train.batch_size")


def _bytes(n: float) -> str:
    return f"{n / 1e12:.1f} TB" if n >= 1e12 else f"{n / 1e9:.1f} GB"
