"""The results store: one JSON object per line, appended by every evaluation.

Appending a line is the only write, so concurrent evaluations never lose each other's results
(each line is written with one ``write`` call on a file opened in append mode). Lines that do
not parse (a killed writer) are skipped with a warning rather than failing the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("results") / "results.jsonl"

# The fields every record has; anything else goes under "params".
FIELDS = (
    "run_id",  # run directory or export name
    "method",  # pre-training method (tribyol, byol, ...; "random-init" / "scratch" baselines)
    "backbone",
    "dataset",  # the dataset evaluated on
    "pretrain_dataset",
    "pretrain_batch_size",  # per device: the batch BatchNorm and the loss saw
    "pretrain_accumulate",  # micro-batches per optimizer step
    "pretrain_world_size",  # processes (devices x nodes)
    "pretrain_steps",  # optimizer steps actually run
    "pretrain_epochs",  # epochs actually run (steps / steps per epoch)
    "pretrain_labels",  # which labels shaped the encoder: "none" for self-supervised runs
    "protocol",  # linear | knn | finetune | transfer
    "label_fraction",  # fine-tuning only, else null
    "metric",  # top1
    "value",
    "seed",
    "git_commit",
    "test_split",  # "test", or how the test images were carved from train
    "time",  # UTC, ISO 8601
    "source",
    # Records before these lack them (tribyol.report.records and .settings recover what they can):
    "pretrain_seed",  # train.seed of the run (paired comparisons match seeds)
    "pretrain_stem",  # "random 3x3": supervised-imagenet whose ImageNet stem was not loaded
    "config_id",  # config_id(pretrain_settings, pretrain_seed): unique per configuration
    "pretrain_settings",  # checkpoints.run_settings: what tells configurations apart
)


def config_id(settings: dict[str, Any] | None, seed: int | None) -> str | None:
    """A short hash of a run's settings and seed: records of one configuration share it, and
    two runs of the same name from different configurations (grids, stores) never do."""
    if settings is None:
        return None
    text = json.dumps({"settings": settings, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def labelled_datasets(labels_seen: str | None) -> set[str]:
    """The datasets whose labels shaped an encoder, from ``labels_seen`` (export metadata) /
    ``pretrain_labels`` (records): ``"imagenet labels, cifar10 train labels"`` -> {imagenet,
    cifar10}; ``"none"`` or None (unknown) -> {}."""
    names = set()
    for entry in (labels_seen or "").split(","):
        words = entry.split()
        if words and words[0] != "none":
            names.add(words[0].lower())
    return names


def saw_labels_of(labels_seen: str | None, dataset: str | None) -> bool:
    """Whether an encoder that saw ``labels_seen`` was trained with the labels of ``dataset``
    (a dataset name or a store label: ``folder:<dir>`` counts as ``folder``)."""
    if not dataset:
        return False
    seen = labelled_datasets(labels_seen)
    return dataset.lower() in seen or dataset.partition(":")[0].lower() in seen


@cache
def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` if modified), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def make_record(**values: Any) -> dict[str, Any]:
    """A record with every field in ``FIELDS`` (missing ones null); extras go to ``params``."""
    params = dict(values.pop("params", {}) or {})
    record: dict[str, Any] = {name: values.pop(name, None) for name in FIELDS}
    params.update(values)
    record["git_commit"] = record["git_commit"] or git_commit()
    record["time"] = record["time"] or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["params"] = params
    return record


def append_result(store: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append ``record`` (completed by ``make_record``) as one line of ``store``."""
    record = make_record(**record)
    path = Path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
    return record


def read_results(store: str | Path) -> list[dict[str, Any]]:
    """All records of ``store`` in file order; unreadable lines are skipped with a warning."""
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(
            f"results store {path} does not exist; run `tribyol eval ...` first or pass --store"
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s line %d is not valid JSON; skipped", path, number)
    return records
