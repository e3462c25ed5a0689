"""Which row of a table each record files under: its method, qualified by whatever
pre-training setting its runs differ in (row keys: ``method@q1, q2``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tribyol.report.names import base_method
from tribyol.report.records import IMAGENET_IMAGE_SIZE, IMAGENET_LABELS, count, scored_on, stem
from tribyol.report.settings import setting_quals, text


@dataclass
class _Method:
    """One method's records, and what they differ in."""

    records: list[dict[str, Any]] = field(default_factory=list)
    budgets: set = field(default_factory=set)
    labels: set = field(default_factory=set)
    scored: set = field(default_factory=set)

    def add(self, r: dict[str, Any]) -> None:
        self.scored.add(scored_on(r))
        self.budgets.add(r.get("pretrain_epochs"))
        self.labels.add(r.get("pretrain_labels"))
        self.records.append(r)

    @property
    def by_budget(self) -> bool:
        return len(self.budgets) > 1

    @property
    def by_labels(self) -> bool:
        return len(self.labels - {None, "none"}) > 1

    @property
    def by_scoring(self) -> bool:
        return len(self.scored) > 1

    def keys(self, setting_keys: list[str]) -> list[str]:
        """The keys this method's rows differ in (``setting_keys``: its settings')."""
        keys = (["pretrain epochs"] if self.by_budget else []) + setting_keys
        keys += ["labels seen"] if self.by_labels else []
        return keys + (["scored on"] if self.by_scoring else [])


def _run_quals(r: dict[str, Any], method: _Method, with_batch: bool) -> list[str]:
    """Qualifiers of how the record's encoder was pre-trained: batch, epochs, accumulation,
    devices, labels seen."""
    quals = []
    batch = r.get("pretrain_batch_size")
    if with_batch and batch is not None and r.get("method") not in ("scratch", "random-init"):
        quals.append(f"b{batch}")
    if method.by_budget:
        quals.append(f"{r.get('pretrain_epochs')}ep")
    if count(r.get("pretrain_accumulate")) != 1:
        quals.append(f"accum {count(r.get('pretrain_accumulate'))}")
    if count(r.get("pretrain_world_size")) != 1:
        quals.append(f"{count(r.get('pretrain_world_size'))} devices")
    seen = r.get("pretrain_labels")
    if method.by_labels and seen not in (None, "none", IMAGENET_LABELS):
        quals.append("saw " + str(seen).replace(", ", " + "))
    return quals


def _eval_quals(r: dict[str, Any], method: _Method) -> list[str]:
    """Qualifiers of the encoder's form and how it was scored: image size, stem, validation."""
    quals = []
    size = (r.get("params") or {}).get("encoder_image_size")
    if r.get("pretrain_dataset") == "imagenet" and size not in (None, IMAGENET_IMAGE_SIZE):
        quals.append(f"{size}px")
    if stem(r):
        quals.append(f"stem: {text(stem(r))}")
    if method.by_scoring and scored_on(r) == "validation":
        quals.append("on validation")
    return quals


def row_keys(records: list[dict[str, Any]],
             with_batch: bool = False) -> tuple[list[str], dict[str, list[str]]]:
    """Each record's row, and per method the keys its rows differ in. A row is the record's
    method, qualified (``method@q1, q2``) by whatever pre-training setting its runs differ in,
    so that no cell averages them (a mean over settings would look like seed noise):

    - ``b<batch>`` (``with_batch``: tables whose columns are not the batch) for pre-trained
      encoders, not for ``scratch`` / ``random-init``;
    - ``<epochs>ep`` when the records hold runs of the method with different epochs;
    - ``accum <n>`` / ``<n> devices`` for gradient accumulation / several processes, always;
    - ``saw <labels>`` when runs of the method saw different labels (ImageNet's alone excepted);
    - ``<size>px`` for ImageNet weights evaluated at another size than ImageNet's 224;
    - ``stem: random 3x3`` for ``supervised-imagenet`` without ImageNet's stem, always;
    - ``on validation`` when the method's records were scored on a validation carve and a test
      split both;
    - ``<setting>=<value>`` for each recorded setting (``pretrain_settings``: method options,
      views, lr, backbone, norm, data, ...) the method's records differ in; records from before
      settings were recorded: ``cell <arm>`` read from a grid run's name, ``in <folder>``.
    """
    methods: dict[str, _Method] = {}
    for r in records:
        methods.setdefault(r.get("method") or "?", _Method()).add(r)
    settings: dict[int, list[str]] = {}
    separated: dict[str, list[str]] = {}
    for name, method in methods.items():
        quals_of, setting_keys = setting_quals(method.records)
        settings.update({id(r): q for r, q in zip(method.records, quals_of, strict=True)})
        keys = method.keys(setting_keys)
        if keys:
            mine = separated.setdefault(base_method(name), [])
            mine += [k for k in keys if k not in mine]
    rows = []
    for r in records:
        name = r.get("method") or "?"
        quals = _run_quals(r, methods[name], with_batch) + _eval_quals(r, methods[name])
        quals += settings[id(r)]
        head, _, given = name.partition("@")  # a grid's row (byol@equal compute) keeps its own
        quals = ([given] if given else []) + quals
        rows.append(f"{head}@{', '.join(quals)}" if quals else head)
    return rows, separated


def method_rows(records: list[dict[str, Any]], with_batch: bool = False) -> list[str]:
    """Each record's row (``row_keys``)."""
    return row_keys(records, with_batch)[0]
