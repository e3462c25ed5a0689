"""The one route from a YAML file and overrides to a validated ``RunConfig``.

``tribyol.config`` defines the config and checks what needs no registry (before torch is
imported, so those errors come at once); this module, a layer above the registries, adds the
dataset's view preset and checks the dataset, backbone and method names and the method's
options.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.config import (
    DataConfig,
    RunConfig,
    build_dataclass,
    config_tree,
    did_you_mean,
    require,
    to_dict,
    validate_values,
)

__all__ = ["ResolvedRun", "apply_view_preset", "full_method", "load_config", "resolve_run", "validate"]


def load_config(
    path: str | Path | None = None, overrides: typing.Iterable[str | tuple[str, Any]] = ()
) -> RunConfig:
    """Defaults <- YAML file <- dotted overrides, then validated (including method options).

    Keys, types and value ranges are checked before anything imports torch (fast errors); the
    names that need the registries (dataset, backbone, method and its options) after.
    """
    tree = config_tree(path, overrides)
    validate_values(build_dataclass(RunConfig, tree))
    apply_view_preset(tree)
    cfg = build_dataclass(RunConfig, tree)
    cfg.method = full_method(cfg.method)  # config.yaml records every option, by its current name
    validate(cfg)
    return cfg


def full_method(method: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., some options}`` -> the name and every option (defaults filled in, a
    deprecated option name replaced by its current one), validated."""
    from tribyol.methods import resolve_options  # here: the torch-free checks come first

    cls, options = resolve_options(method)
    return {"name": cls.name, **to_dict(options)}


def apply_view_preset(tree: dict[str, Any]) -> None:
    """Put the dataset's view preset under the user's own ``views`` settings (theirs win)."""
    from tribyol.data import DATASETS  # here, not at the top: the torch-free checks come first

    data = tree.get("data") or {}
    name = data.get("dataset", DataConfig.dataset) if isinstance(data, dict) else None
    views = tree.get("views", {})
    if name in DATASETS and isinstance(views, dict):
        tree["views"] = {**DATASETS[name].views, **views}


def validate(cfg: RunConfig) -> None:
    """Reject impossible values before any data is read or any step is taken."""
    # Imported here: the registries import torch, and validate_values' errors come before it.
    from tribyol.data import DATASETS
    from tribyol.methods import resolve_options
    from tribyol.nets import BACKBONES

    validate_values(cfg)
    d, m = cfg.data, cfg.model
    require(
        d.dataset in DATASETS,
        f"unknown dataset '{d.dataset}'.{did_you_mean(d.dataset, DATASETS)} "
        f"Known: {', '.join(sorted(DATASETS))}",
    )
    require(
        m.backbone in BACKBONES,
        f"unknown backbone '{m.backbone}'.{did_you_mean(m.backbone, BACKBONES)} "
        f"Known: {', '.join(sorted(BACKBONES))}",
    )
    resolve_options(cfg.method)  # unknown method / option / bad value -> ConfigError


@dataclass(frozen=True)
class ResolvedRun:
    """A validated config with its method resolved once; the engine is given this."""

    config: RunConfig
    method_class: type
    method_options: Any


def resolve_run(config: RunConfig | Mapping[str, Any]) -> ResolvedRun:
    """``config`` (a ``RunConfig``, or the plain dict a checkpoint or config.yaml holds) with
    its method class and typed options."""
    from tribyol.methods import resolve_options

    cfg = config if isinstance(config, RunConfig) else build_dataclass(RunConfig, dict(config))
    cls, options = resolve_options(cfg.method)
    return ResolvedRun(cfg, cls, options)
