"""Run directories: the marker that makes them ours, safe replacement, and config changes on resume.

tribyol deletes a folder only when it carries the run marker (``run.json``) or, for runs made
before the marker existed, when it holds nothing but the files a run writes. A replaced run is
first renamed aside and deleted only once the new run has started, so a failed start restores it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from tribyol.config import RunConfig, dotted_items, read_yaml_file, to_dict
from tribyol.data.pretrain import DataInfo
from tribyol.errors import CheckpointError, ConfigError, RunDirExistsError
from tribyol.methods import upgrade_state_keys
from tribyol.resolve import full_method
from tribyol.structured import build_dataclass

log = logging.getLogger(__name__)

RUN_MARKER = "run.json"
RUN_FORMAT = "tribyol-run-v1"
CONFIG_NAME = "config.yaml"
# Everything a run writes into its directory (config.attempt<N>.yaml besides).
RUN_ENTRIES = frozenset({RUN_MARKER, CONFIG_NAME, "checkpoints", "logs", "tb", "throughput.json"})
# Config keys whose change makes a checkpoint unusable: they decide the networks' shapes.
BREAKING_KEYS = (
    "method.name", "method.num_views", "method.target_policy", "method.pred_hidden_dim",
    "model.backbone", "model.width", "model.hidden_dim", "model.proj_dim",
    "model.small_stem", "data.dataset",
)  # data.channels / image_size: legacy configs hold unresolved values; the shape check covers them


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((run_dir / RUN_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == RUN_FORMAT else None


def write_marker(run_dir: Path, **fields: Any) -> None:
    """Create or update ``run.json`` (the fields given replace the stored ones)."""
    marker = read_marker(run_dir) or {"format": RUN_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    marker.update(fields)
    write_atomic(run_dir / RUN_MARKER, json.dumps(marker, indent=2) + "\n")


def foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that no run writes."""
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name not in RUN_ENTRIES and not (p.name.startswith("config.attempt")
                                                        and p.name.endswith(".yaml")))


def check_is_run(run_dir: Path, action: str) -> None:
    """Refuse to ``action`` a folder that is not a tribyol run, naming what makes it foreign."""
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise RunDirExistsError(
            f"{run_dir} is not a run directory (not a plain folder); will not {action} it"
        )
    foreign = foreign_entries(run_dir)
    legacy = (run_dir / CONFIG_NAME).is_file() and (run_dir / "checkpoints").is_dir()
    if foreign or (read_marker(run_dir) is None and not legacy):
        what = f"it holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, " if foreign else ""
        raise RunDirExistsError(
            f"{run_dir} is not a tribyol run directory ({what}no {RUN_MARKER} marker); "
            f"will not {action} it. Pick another --name or --run-dir, or move the folder away."
        )


class Replacement:
    """``--overwrite``: the old run moves aside, and is deleted once the new run has started."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.aside = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
        os.replace(run_dir, self.aside)
        log.info("moved the old run %s aside to %s until the new one starts", run_dir, self.aside)

    def commit(self) -> None:
        """The new run started: delete the old one (checked to be a run before it moved)."""
        if self.aside.exists():
            shutil.rmtree(self.aside)

    def restore(self) -> None:
        """The new run failed to start: drop what it wrote and put the old run back."""
        if not self.aside.exists():
            return
        ours = self.run_dir.exists() and read_marker(self.run_dir) is not None
        if ours and not foreign_entries(self.run_dir):
            shutil.rmtree(self.run_dir)
        if not self.run_dir.exists():
            os.replace(self.aside, self.run_dir)
            log.info("the new run did not start; the old run is back in %s", self.run_dir)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every key whose value differs."""
    a, b = dotted_items(old), dotted_items(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resume_config(run_dir: Path, cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Compare the resolved config with the run's saved one; refuse changes that break the checkpoint.

    Returns the allowed changes (empty when the configs agree).
    """
    saved_path = run_dir / CONFIG_NAME
    if not saved_path.exists():
        return {}
    try:
        saved_tree = read_yaml_file(saved_path)
        views = saved_tree.get("views")
        if isinstance(views, dict) and "third_view" not in views:
            # Written before views.third_view existed: such a run augmented its views past
            # BYOL's pair the "cycle" way, so a resume that changes it says so.
            saved_tree["views"] = {**views, "third_view": "cycle"}
        saved_cfg = build_dataclass(RunConfig, saved_tree)
        saved_cfg.method = full_method(saved_cfg.method)  # an older run's defaults and names
        saved = to_dict(saved_cfg)
    except ConfigError as err:
        raise ConfigError(
            f"{saved_path} cannot be read back ({err}); restore it from config.attempt*.yaml"
        ) from None
    changes = config_changes(saved, to_dict(cfg))
    # Older runs saved data.channels / image_size unresolved (the default 3, null); what the
    # data decided is no change by the user, and a real one fails the weight-shape check.
    for key in ("data.channels", "data.image_size"):
        if key in changes and (key == "data.channels" or changes[key][0] is None):
            del changes[key]
    breaking = [k for k in changes if k in BREAKING_KEYS]
    if breaking:
        listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in breaking)
        raise ConfigError(
            f"cannot resume {run_dir} with a different network: {listed}. Its checkpoint holds "
            "the old one; drop --resume (with --name for a new run), or resume with the saved "
            f"config: --config {saved_path} --resume"
        )
    return changes


def map_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint read a moment ago and verified (``select_resume_checkpoint``), mapped
    (``mmap``): its hyper-parameters and tensor shapes without reading the data a second time."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def check_checkpoint_fits(path: Path, mapped: dict[str, Any], module_state: dict[str, Any],
                          method: type | None = None) -> None:
    """The module about to resume has the same weights (names and shapes) as the checkpoint
    (``mapped``, from ``map_checkpoint(path)``). Weights that ``method`` has renamed since are
    compared under their new names (they load so)."""
    saved = mapped["state_dict"]
    if method is not None:
        saved = upgrade_state_keys(method, saved, prefix="method.")
    missing = sorted(k for k in module_state if k not in saved)
    extra = sorted(k for k in saved if k not in module_state)
    shapes = sorted(k for k in module_state.keys() & saved.keys()
                    if tuple(module_state[k].shape) != tuple(saved[k].shape))
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra), ("other shape", shapes))
                 if keys]
        raise CheckpointError(
            f"{path} does not fit the network this config builds ({'; '.join(parts)}). "
            "Resume with the run's own config.yaml, or start a new run without --resume."
        )


def keep_checkpoint_statistics(mapped: dict[str, Any], info: DataInfo) -> DataInfo:
    """``info`` with the normalisation the run started with, read from its checkpoint
    (``mapped``): a resumed run keeps normalising as it began, even where this version would
    compute other statistics (e.g. a grayscale folder before they were luma-weighted)."""
    hp = mapped.get("hyper_parameters")
    saved = (hp or {}).get("data_info") or {}
    mean, std = tuple(saved.get("mean") or ()), tuple(saved.get("std") or ())
    if len(mean) != info.channels or len(std) != info.channels or (mean, std) == (info.mean, info.std):
        return info
    log.warning("resuming with the run's own normalisation, mean %s std %s (a new run would use "
                "mean %s std %s)", mean, std, info.mean, info.std)
    return dataclasses.replace(info, mean=mean, std=std)


def record_config(run_dir: Path, cfg: RunConfig, changes: dict[str, tuple[Any, Any]]) -> None:
    """Write the resolved config; on a resume with changes, keep the previous one beside it."""
    path = run_dir / CONFIG_NAME
    if changes and path.exists():
        numbers = [p.stem.removeprefix("config.attempt") for p in run_dir.glob("config.attempt*.yaml")]
        attempt = 1 + max((int(n) for n in numbers if n.isdigit()), default=-1)
        kept = run_dir / f"config.attempt{attempt}.yaml"
        os.replace(path, kept)
        for key, (old, new) in changes.items():
            log.warning("resuming with %s changed: %r -> %r", key, old, new)
        log.warning("the previous config is kept as %s", kept)
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
