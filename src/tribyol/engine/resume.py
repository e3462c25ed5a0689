"""Resuming a run: which checkpoint to resume from, whether it fits the network this config
builds, and which config changes a resume may make."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tribyol.checkpoints import CHECKPOINT_NAME, PREVIOUS_NAME, read_checkpoint
from tribyol.config import RunConfig, dotted_items, read_yaml_file, to_dict, upgrade_tree
from tribyol.config.fields import option_name, option_value
from tribyol.config.structured import build_dataclass
from tribyol.data.pretrain import DataInfo
from tribyol.engine.rundir import CONFIG_NAME, is_secondary_rank
from tribyol.errors import CheckpointError, ConfigError
from tribyol.resolve import resolve_method

if TYPE_CHECKING:
    from tribyol.engine.module import PretrainModule

log = logging.getLogger(__name__)


# Config keys whose change makes a checkpoint unusable: they decide the networks' shapes.
BREAKING_KEYS = (
    "method.name", "method.num_views", "method.target_policy", "method.pred_hidden_dim",
    "model.backbone", "model.width", "model.hidden_dim", "model.proj_dim",
    "model.small_stem", "model.norm", "model.norm_groups", "data.dataset",
)  # data.channels / image_size: legacy configs hold unresolved values; the shape check covers them


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
        saved_tree = upgrade_tree(read_yaml_file(saved_path))
        saved_cfg = build_dataclass(RunConfig, saved_tree)
        resolve_method(saved_cfg)  # an older run's defaults filled in
        saved = to_dict(saved_cfg)
    except ConfigError as err:
        raise ConfigError(
            f"{saved_path} cannot be read back ({err}); restore it from config.attempt*.yaml"
        ) from None
    changes = config_changes(saved, to_dict(cfg))
    # Older runs saved data.channels / image_size unresolved (the default 3, null); what the
    # data decided is no change by the user, and a real one fails the weight-shape check.
    for key in ("data.channels", "data.image_size", "data.mean", "data.std"):
        if key in changes and (key == "data.channels" or changes[key][0] is None):
            del changes[key]
    breaking = [k for k in changes if k in BREAKING_KEYS]
    if breaking:
        listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in breaking)
        raise ConfigError(
            f"cannot resume {run_dir} with a different network: {listed}. Its checkpoint holds "
            f"the old one; drop {option_name('--resume')} (with {option_name('--name')} for a "
            f"new run), or resume with the saved config: {option_value('--config', str(saved_path))} "
            f"{option_name('--resume')}"
        )
    return changes


def select_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest readable checkpoint of a run: ``last.ckpt``, else ``previous.ckpt``.

    Each candidate is fully read with ``torch.load(weights_only=True)`` (so a pickle carrying
    code is refused, not run) and its tensor checksum verified. A broken ``last.ckpt`` is moved
    aside to ``last.ckpt.corrupt``, so that the next save does not rotate it over the readable
    ``previous.ckpt``. Raises ``CheckpointError`` when checkpoints exist but none can be read;
    ``None`` when there are none.
    """
    folder = run_dir / "checkpoints"
    last, previous = folder / CHECKPOINT_NAME, folder / PREVIOUS_NAME
    errors = []
    for path in (last, previous):
        if not path.exists():
            continue
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as err:
            errors.append(str(err))
            log.error("%s", err)
            continue
        if "loops" not in ckpt or "optimizer_states" not in ckpt:
            errors.append(f"{path} holds weights only (no loop/optimizer state); cannot resume")
            log.error("%s", errors[-1])
            continue
        if path == previous and last.exists():
            if not is_secondary_rank():
                os.replace(last, folder / f"{CHECKPOINT_NAME}.corrupt")
            log.warning("last.ckpt is unreadable (kept as %s.corrupt); resuming from %s",
                        CHECKPOINT_NAME, path)
        log.info("resuming from %s (step %s)", path, ckpt.get("global_step"))
        return path
    if errors:
        raise CheckpointError(
            f"no readable checkpoint to resume from in {folder}: " + " ".join(errors)
            + f" Start again with {option_name('--overwrite')}, or restore a checkpoint from a "
            "backup."
        )
    return None


def map_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint read a moment ago and verified (``select_resume_checkpoint``), mapped
    (``mmap``): its hyper-parameters and tensor shapes without reading the data a second time."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def check_checkpoint_fits(path: Path, mapped: dict[str, Any], module_state: dict[str, Any],
                          method: type | None = None) -> None:
    """The module about to resume has the same weights (names and shapes) as the checkpoint
    (``mapped``, from ``map_checkpoint(path)``). A state dict that ``method`` cannot load (e.g.
    Cross's names before issue 12) is refused first, saying why."""
    saved = mapped["state_dict"]
    if method is not None:
        method.check_state_keys(saved, prefix="method.")
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
            f"Resume with the run's own config.yaml, or start a new run without "
            f"{option_name('--resume')}."
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


def check_resume(run_dir: Path, cfg: RunConfig, ckpt: Path | None, mapped: dict[str, Any] | None,
                 module: PretrainModule) -> dict[str, tuple[Any, Any]]:
    """What a resume checks once the networks are built: that its config changes nothing that
    breaks the checkpoint, and that the checkpoint, if any, fits the module. Returns the
    allowed changes."""
    changes = check_resume_config(run_dir, cfg)
    if ckpt is None:
        log.warning("%s has no checkpoint yet; starting from step 0", run_dir)
    else:
        check_checkpoint_fits(ckpt, mapped, module.state_dict(), type(module.method))
    return changes
