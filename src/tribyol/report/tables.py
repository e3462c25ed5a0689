"""The report's tables, shaped like the poster's three (linear by batch, fine-tuning by label
fraction, transfer by target) plus kNN, built from the store's latest records, and the report
as one Markdown document with every run's line."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from typing import Any

from tribyol.report import paper
from tribyol.report.names import row_name
from tribyol.report.records import imagenet_weights, latest, pretrain_seed, saw_labels
from tribyol.report.rows import row_keys
from tribyol.report.table import CARVED, SAW_LABELS, Cell, Table
from tribyol.store import saw_labels_of


def _collect(
    records: list[dict[str, Any]], protocol: str, key: Callable[[dict], Any],
    by_source: bool = False, with_batch: bool = False,
):
    """``{row: {(dataset, key): Cell}}``; rows are ``row_keys``, or row|pre-training dataset
    (but ImageNet's own weights, the poster's one named source, file under its plain row)."""
    ours: dict[str, dict[tuple[str, Any], Cell]] = {}
    records = [r for r in records
               if r.get("protocol") == protocol and r.get("metric") == "top1" and r.get("value") is not None]
    rows, separated = row_keys(records, with_batch)
    for r, row in zip(records, rows, strict=True):
        if by_source and not imagenet_weights(r):
            row = f"{row}|{r.get('pretrain_dataset')}"
        cell = ours.setdefault(row, {}).setdefault((r["dataset"], key(r)), Cell())
        cell.values.append(float(r["value"]))
        cell.carved |= (r.get("test_split") or "test") != "test"
        params = r.get("params") or {}
        cell.sizes.add((params.get("num_train"), params.get("num_test")))
        cell.labels.add(saw_labels(r))
        cell.saw_eval_labels |= saw_labels_of(r.get("pretrain_labels"), r.get("dataset"))
        seed = pretrain_seed(r)
        if seed is not None:
            pair = (seed, r.get("test_split") or "test", r.get("seed"))
            cell.pairs.setdefault(pair, []).append(float(r["value"]))
    return ours, separated


def _columns(poster: dict, ours: dict, first: Iterable[str]) -> list[tuple[str, Any]]:
    cols = {c for table in (poster, ours) for row in table.values() for c in row}
    order = {d: i for i, d in enumerate(first)}

    def sort_key(c: tuple[str, Any]) -> tuple:
        return (order.get(c[0], len(order)), c[0], -1 if c[1] is None else float(c[1]))

    return sorted(cols, key=sort_key)


def _fraction(value: Any) -> str:
    return f"{100 * float(value):g}%"


def _batch(value: Any) -> str:
    """Column label of a pre-training batch; ``b?`` where the record has none (ImageNet weights)."""
    return f"b{value}" if value is not None else "b?"


def build_tables(records: list[dict[str, Any]], reference: str | None = None) -> list[Table]:
    """The poster's three tables (+ kNN, ours only), from the store's latest records; paired
    differences are taken against ``reference`` (a row key or its printed name) where a
    table has that row."""
    tables = _build_tables(latest(records))
    for table in tables:
        table.reference = next((m for m in table.ours if reference in (m, row_name(m))), None)
    return tables


def _build_tables(records: list[dict[str, Any]]) -> list[Table]:
    batch = lambda r: r.get("pretrain_batch_size")  # noqa: E731
    tables = []
    ours, separated = _collect(records, "linear", batch)
    tables.append(Table(
        "Linear evaluation by pre-training batch size (top-1 %, ours / poster)",
        _columns(paper.LINEAR, ours, ("cifar10", "cifar100", "stl10")),
        lambda d, b: f"{paper.dataset_name(d)} {_batch(b)}", ours, paper.LINEAR,
        note="Columns: the batch per device, the one BatchNorm and the loss saw; rows tagged "
             "`accum N` / `N devices` averaged gradients over more of them per step.",
        separated_by=separated,
    ))
    ours, separated = _collect(records, "finetune", lambda r: r.get("label_fraction"), with_batch=True)
    tables.append(Table(
        "Fine-tuning by label fraction (top-1 %, ours / poster)",
        _columns(paper.FINETUNE, ours, ("cifar10", "cifar100", "stl10")),
        lambda d, f: f"{paper.dataset_name(d)} {_fraction(f)}", ours, paper.FINETUNE,
        note=f"The poster fine-tunes encoders pre-trained at batch {paper.FINETUNE_BATCH}; each of "
             "our rows names its pre-training batch (`b32`), and rows of different batches are "
             f"never averaged; the poster's numbers stand beside b{paper.FINETUNE_BATCH} rows "
             "only. `ImageNet (supervised)` without a batch is torchvision's ImageNet "
             "weights (`eval finetune imagenet:ARCH`).",
        separated_by=separated,
    ))
    # Transfer rows keep sources apart: one encoder per pre-training dataset, never averaged.
    ours, separated = _collect(records, "transfer", lambda r: None, by_source=True, with_batch=True)
    poster_transfer = {m: {(t, None): v for t, v in row.items()} for m, row in paper.TRANSFER.items()}
    tables.append(Table(
        "Transfer (linear) by target (top-1 %, ours / poster)",
        _columns(poster_transfer, ours, paper.TRANSFER_TARGETS),
        lambda d, _: paper.dataset_name(d), ours, poster_transfer,
        note="Our rows name the pre-training dataset and batch of their encoder; "
             "`ImageNet (supervised)` is torchvision's ImageNet weights (`imagenet:ARCH`).",
        separated_by=separated,
    ))
    ours, separated = _collect(records, "knn", batch)
    if ours:
        tables.append(Table(
            "kNN (cosine, weighted) by pre-training batch size (top-1 %, ours only)",
            _columns({}, ours, ()), lambda d, b: f"{paper.dataset_name(d)} {_batch(b)}", ours, {},
            separated_by=separated,
        ))
    return tables


RUN_FIELDS = ("run_id", "method", "backbone", "pretrain_dataset", "pretrain_batch_size",
              "pretrain_accumulate", "pretrain_world_size", "pretrain_epochs", "pretrain_labels",
              "pretrain_seed", "pretrain_stem", "protocol", "dataset", "label_fraction", "value",
              "seed", "test_split", "num_train", "num_test", "git_commit", "config_id")
PARAM_FIELDS = ("num_train", "num_test")  # read from a record's params


def runs_table(records: list[dict[str, Any]]) -> tuple[str, str]:
    """Every latest record, one line each: (Markdown, CSV)."""
    rows = latest(records)
    lines = ["### All results (latest per run, protocol, dataset, fraction, seed)", "",
             "| " + " | ".join(RUN_FIELDS) + " |", "|---" * len(RUN_FIELDS) + "|"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(RUN_FIELDS)
    for r in rows:
        params = r.get("params") or {}
        values = [params.get(f) if f in PARAM_FIELDS else r.get(f) for f in RUN_FIELDS]
        writer.writerow(["" if v is None else v for v in values])
        text = [f"{v:.2f}" if isinstance(v, float) and f == "value" else ("–" if v is None else str(v))
                for f, v in zip(RUN_FIELDS, values, strict=True)]
        lines.append("| " + " | ".join(t.replace("|", "/") for t in text) + " |")
    return "\n".join(lines), buf.getvalue()


def render_markdown(tables: list[Table], runs_md: str) -> str:
    parts = ["# tribyol results", "",
             f"Cells read `ours / poster`; `–` = no result. {CARVED} = test set carved out of train "
             "(seeded, stratified), not the official test split. "
             f"{SAW_LABELS} = the encoder was pre-trained with this dataset's labels (not a "
             "self-supervised result). The last two columns give the images our numbers were "
             "evaluated on (train / test; fine-tuning: the labelled subset) and the labels that "
             "shaped the row's encoders in pre-training (`none`: self-supervised); `?` = not "
             "recorded.", ""]
    for t in tables:
        parts += [t.markdown(), ""]
    parts.append(runs_md)
    return "\n".join(parts) + "\n"
