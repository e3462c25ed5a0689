"""What a results record says about its run: the latest records, the pre-training seed, the
grid arm an older record's run name gives, the folder its run lies in, what it was scored on."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tribyol.report.names import base_method

IMAGENET_LABELS = "imagenet labels"  # torchvision's ImageNet weights (eval SOURCE imagenet:ARCH)
IMAGENET_IMAGE_SIZE = 224

# ``reproduce`` names a cell's run ``<method>[-<variant>]_<dataset>_b<batch>_s<seed>``
# (reproduce._cell_id): for records older than ``pretrain_settings`` the variant and the seed
# are read back from that name.
GRID_RUN = re.compile(r"(?P<head>.+)_(?P<data>[^_]+)_b(?P<batch>\d+)_s(?P<seed>\d+)")


def latest(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each (run, protocol, dataset, fraction, seed, metric): re-runs replace.
    A run is its name and its configuration (``config_id``; records without one: their source
    path), so runs of one name from two grids or stores, merged, are both kept."""
    keep: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = (r.get("run_id"), r.get("config_id") or ("source", r.get("source")), r.get("protocol"),
               r.get("dataset"), r.get("label_fraction"), r.get("seed"), r.get("metric"))
        keep.pop(key, None)  # re-insert so the order stays "last written"
        keep[key] = r
    return list(keep.values())


def filter_records(records: Iterable[dict[str, Any]], filters: dict[str, str]) -> list[dict[str, Any]]:
    """Keep records whose fields equal every ``filters`` value (compared as text)."""
    return [r for r in records if all(str(r.get(k)) == v for k, v in filters.items())]


def count(value: Any) -> int:
    """Accumulation / world size of a record; missing (older records) counts as 1."""
    return 1 if value in (None, "") else int(value)


def saw_labels(r: dict[str, Any]) -> str:
    """The labels that shaped the record's encoder (``?``: not recorded)."""
    labels = r.get("pretrain_labels")
    return "?" if labels in (None, "") else str(labels)


def _slug(text: str) -> str:
    """``reproduce.slug`` (a layer above this one): how a cell id spells its method."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def grid_run(record: dict[str, Any]) -> tuple[str | None, int | None]:
    """(variant, seed) a ``reproduce`` cell's run name gives a record: ``""`` for the default
    arm, None where the run name is no cell name of the record's method."""
    run = str(record.get("run_id") or "").partition("#")[0]
    if run.endswith("+random-init"):
        return None, None
    match = GRID_RUN.fullmatch(run)
    if not match:
        return None, None
    head, method = match["head"], _slug(base_method(str(record.get("method") or "")))
    seed = int(match["seed"])
    if head == method:
        return "", seed
    return (head[len(method) + 1:], seed) if head.startswith(method + "-") else (None, seed)


def pretrain_seed(record: dict[str, Any]) -> int | None:
    """The record's pre-training seed: recorded, else read from a grid run's name."""
    seed = record.get("pretrain_seed")
    if seed is not None:
        return int(seed)
    if record.get("pretrain_settings") is not None:
        return None  # a new record without a seed: a random-init or ImageNet encoder
    return grid_run(record)[1]


def scored_on(record: dict[str, Any]) -> str:
    """``validation`` for a record scored on a validation carve (``select_on: validation``
    grids), else ``test``: a validation score and a test score are never one mean."""
    return "validation" if str(record.get("test_split") or "").startswith("validation") else "test"


def imagenet_weights(r: dict[str, Any]) -> bool:
    """The record's encoder is torchvision's supervised ImageNet weights."""
    return r.get("pretrain_dataset") == "imagenet" and r.get("pretrain_labels") == IMAGENET_LABELS


def stem(r: dict[str, Any]) -> str | None:
    """The record's encoder stem where one was set (recorded, or in its settings)."""
    value = r.get("pretrain_stem")
    if value is None:
        value = ((r.get("pretrain_settings") or {}).get("model") or {}).get("stem")
    return value


def run_folder(r: dict[str, Any]) -> str:
    """The folder an old record's run lies in (a grid's output, an experiment's runs/): runs
    of one name in two such folders are two runs, their configurations unknown."""
    source = Path(str(r.get("source") or ""))
    if source.suffix == ".ckpt" and source.parent.name == "checkpoints":
        source = source.parent.parent
    folder = source.parent
    return str(folder.parent if folder.name == "runs" else folder)
