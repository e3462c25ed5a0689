"""A grid's ``data`` section: the dataset folder, its archive, the pre-training subset drawn
outside the carves, and a validation grid's ``validation.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tribyol.errors import ConfigError
from tribyol.reproduce.scoring import (
    SPLIT_SEED,
    SUBSET_SEED,
    SUBSET_TEST_FRACTION,
    VALIDATION_MANIFEST,
    select_on,
)


def data_paths(spec: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """(eval root, pre-training root) of the grid's ``data`` section (None: not given)."""
    data = spec.get("data") or {}
    if not data.get("root"):
        return None, None
    root = Path(data["root"]).expanduser().resolve()
    subset = data.get("pretrain_subset")
    if subset:
        # outside a validation carve too: other images, so another folder
        val = (f"-val{float(subset['validation_fraction']):g}"
               if subset.get("validation_fraction") else "")
        return root, root.with_name(f"{root.name}-pretrain{int(subset['per_class'])}{val}")
    return root, root


def prepare_data(spec: dict[str, Any], log: Callable[[str], None] = print,
                 out: Path | None = None) -> None:
    """Extract the archive and build the pre-training subset, each only when missing; for a
    ``select_on: validation`` grid, write ``out/validation.json``: the validation carve its
    cells are scored on (``data.carves.validation_manifest``)."""
    data = spec.get("data") or {}
    root, pre = data_paths(spec)
    if root is None:
        return
    archive = data.get("archive")
    if archive and not (root / "train").is_dir():
        _extract(str(archive), root, log)
    subset = data.get("pretrain_subset")
    if not subset or pre is None:
        return
    from tribyol.data.carves import SUBSET_MANIFEST, pretrain_subset, validation_manifest

    wanted = _subset_wanted(subset)
    if (pre / "train").is_dir():
        _check_made_for(pre, pre / SUBSET_MANIFEST, wanted)
    else:
        written = pretrain_subset(root, pre, **wanted)
        log(f"pre-training subset: {len(written)} images outside the carved test split -> {pre}")
    # select_on: validation needs a pre-training subset (checked by select_on)
    if out is not None and select_on(spec) == "validation":
        ev = spec.get("eval") or {}
        made = {"select_on": "validation", "pretrain_root": str(pre), **validation_manifest(
            root, float(ev["test_from_train"]), float(ev["validation_from_train"]),
            int(ev.get("split_seed", SPLIT_SEED)))}
        path = out / VALIDATION_MANIFEST
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(made, indent=2) + "\n")
        os.replace(tmp, path)
        log(f"validation carve: {made['images']} images (sha256 {made['sha256'][:12]}) -> {path}")


def _extract(archive: str, root: Path, log: Callable[[str], None]) -> None:
    import tarfile

    log(f"extracting {archive} -> {root}")
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(Path(archive).expanduser()) as tar:
        tar.extractall(root, filter="data")


def _subset_wanted(subset: dict[str, Any]) -> dict[str, Any]:
    """``data.pretrain_subset`` as ``data.carves.pretrain_subset``'s arguments."""
    wanted = {"per_class": int(subset["per_class"]),
              "test_fraction": float(subset.get("test_fraction", SUBSET_TEST_FRACTION)),
              "seed": int(subset.get("seed", SUBSET_SEED))}
    if subset.get("validation_fraction"):
        wanted["validation_fraction"] = float(subset["validation_fraction"])
    return wanted


def _check_made_for(pre: Path, manifest: Path, wanted: dict[str, Any]) -> None:
    """A subset folder made for another subset is refused: it may hold this grid's test images."""
    made = json.loads(manifest.read_text()) if manifest.is_file() else None
    if made != wanted:
        raise ConfigError(
            f"{pre} was made for another pre-training subset ({made or 'unrecorded'}, "
            f"not {wanted}), so it may hold test images of this grid's carve; move it "
            "away (it holds only links) and run again")
