"""Tables shaped like the poster's three (linear by batch, fine-tuning by label fraction,
transfer by target), ours beside the poster's, as Markdown and CSV. What a cell, ``±``, ``†``
and ``‡`` mean and how rows are kept apart: docs/evaluation.md, "Tables"."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tribyol.config import upgrade_tree
from tribyol.report import paper
from tribyol.report.stats import Paired, paired_difference
from tribyol.store import saw_labels_of

CARVED = "†"
SAW_LABELS = "‡"
IMAGENET_LABELS = "imagenet labels"  # torchvision's ImageNet weights (eval SOURCE imagenet:ARCH)
IMAGENET_IMAGE_SIZE = 224


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    carved: bool = False
    sizes: set[tuple[Any, Any]] = field(default_factory=set)  # (num_train, num_test) per record
    labels: set[str] = field(default_factory=set)  # pretrain_labels per record ("?": unknown)
    saw_eval_labels: bool = False  # an encoder was pre-trained with this dataset's labels
    # (pre-training seed, test split, eval seed) -> values: what a paired comparison matches
    pairs: dict[tuple, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def text(self) -> str:
        if not self.values:
            return "–"
        out = f"{self.mean:.2f}"
        if len(self.values) > 1:
            out += f"±{statistics.stdev(self.values):.2f}"
        return out + (CARVED if self.carved else "") + (SAW_LABELS if self.saw_eval_labels else "")

    def sizes_text(self) -> str:
        """``1437 / 360``; several sizes (runs evaluated on other subsets) joined by ``, ``."""
        def count(v: Any) -> str:
            return "?" if v is None else str(v)

        ordered = sorted(self.sizes, key=lambda s: tuple(-1 if v is None else v for v in s))
        return ", ".join(f"{count(a)} / {count(b)}" for a, b in ordered)


@dataclass
class Table:
    title: str
    columns: list[tuple[str, Any]]  # (dataset, key)
    column_label: Callable[[str, Any], str]
    ours: dict[str, dict[tuple[str, Any], Cell]]
    poster: dict[str, dict[tuple[str, Any], float | None]]
    note: str = ""
    # method -> the keys its rows differ in, where several rows share the method's name
    separated_by: dict[str, list[str]] = field(default_factory=dict)
    reference: str | None = None  # the row paired differences are taken against

    def methods(self) -> list[str]:
        known = [m for m in paper.METHOD_NAMES if m in self.ours or m in self.poster]
        rank = {m: i for i, m in enumerate(paper.METHOD_NAMES)}
        extra = sorted(set(self.ours) - set(known), key=lambda k: (rank.get(base_method(k), 99), k))
        return known + extra

    def cells(self, method: str, col: tuple[str, Any]) -> tuple[Cell, float | None]:
        # a budget row (byol@3ep) shows the method's poster number; a transfer row
        # (tribyol|cifar10) none, since the poster does not name its source
        # a row naming a pre-training batch shows the poster's number only at the poster's own
        # (fine-tuning: b128); a b32 encoder beside the poster's b128 number would read as a match
        head, sep, source = method.partition("|")
        base, _, quals = head.partition("@")
        batches = [q.strip() for q in quals.split(",") if re.fullmatch(r"b\d+", q.strip())]
        poster = self.poster.get(base + sep + source, {}).get(col)
        if batches and batches != [f"b{paper.FINETUNE_BATCH}"]:
            poster = None
        return self.ours.get(method, {}).get(col, Cell()), poster

    def markdown(self) -> str:
        labels = [self.column_label(*c) for c in self.columns]
        lines = [f"### {self.title}", "",
                 "| Method | " + " | ".join(labels)
                 + " | Eval images (train / test) | Labels seen in pre-training |",
                 "|---" * (len(labels) + 3) + "|"]
        for method in self.methods():
            row = []
            for col in self.columns:
                ours, theirs = self.cells(method, col)
                row.append(f"{ours.text()} / {'–' if theirs is None else f'{theirs:.2f}'}")
            row += [self.sizes_text(method), self.labels_text(method)]
            lines.append(f"| {row_name(method)} | " + " | ".join(row) + " |")
        if self.note:
            lines += ["", self.note]
        if self.separation_text():
            lines += ["", self.separation_text()]
        paired = self.paired_markdown()
        if paired:
            lines += ["", paired]
        return "\n".join(lines)

    def separation_text(self) -> str:
        """Which keys keep apart the rows that share a method name (none: "")."""
        shown = {base_method(m) for m in self.ours}
        parts = [f"{paper.method_name(m)}: {', '.join(keys)}"
                 for m, keys in self.separated_by.items() if keys and m in shown]
        if not parts:
            return ""
        return ("Rows that share a method name differ in (each row is one configuration; seeds "
                "alone are averaged): " + "; ".join(parts) + ". " + SEPARATION_NOTE)

    def reference_row(self) -> str | None:
        """The row the others are compared with: ``reference``, else, of the rows with values,
        the first method in the poster's order, with the fewest qualifiers (its default)."""
        rows = [m for m in self.methods() if any(c.values for c in self.ours.get(m, {}).values())]
        if self.reference in rows:
            return self.reference
        rank = {m: i for i, m in enumerate(paper.METHOD_NAMES)}

        def order(row: str) -> tuple:
            quals = row.partition("|")[0].partition("@")[2]
            return (rank.get(base_method(row), len(rank)), len(quals.split(", ")) if quals else 0,
                    rows.index(row))

        return min(rows, key=order) if rows else None

    def paired(self, columns: list[tuple[str, Any]] | None = None) -> dict[str, dict[tuple, Paired]]:
        """``{row: {column: row - reference}}`` over the pairs (same pre-training seed, test
        split and eval seed) both rows have; rows or columns with no common pair are left out."""
        ref = self.reference_row()
        out: dict[str, dict[tuple, Paired]] = {}
        if ref is None:
            return out
        for method in self.methods():
            if method == ref or method not in self.ours:
                continue
            for col in columns or self.columns:
                mine, theirs = self.ours[method].get(col), self.ours[ref].get(col)
                if mine is None or theirs is None:
                    continue
                common = sorted(set(mine.pairs) & set(theirs.pairs), key=str)
                if common:
                    out.setdefault(method, {})[col] = paired_difference(
                        [statistics.fmean(mine.pairs[k]) for k in common],
                        [statistics.fmean(theirs.pairs[k]) for k in common])
        return out

    def paired_markdown(self, columns: list[tuple[str, Any]] | None = None) -> str:
        """The paired differences as a Markdown table ("" when no rows pair)."""
        columns = columns or self.columns
        diffs = self.paired(columns)
        ref = self.reference_row()
        cols = [c for c in columns if any(c in d for d in diffs.values())]
        if not diffs or ref is None or not cols:
            return ""
        name = row_name(ref)
        lines = [f"Paired differences, row − {name} (top-1 points): " + PAIRED_NOTE, "",
                 f"| Row − {name} | " + " | ".join(self.column_label(*c) for c in cols) + " |",
                 "|---" * (len(cols) + 1) + "|"]
        for method, by_col in diffs.items():
            cells = [by_col[c].text() if c in by_col else "–" for c in cols]
            lines.append(f"| {row_name(method)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def sizes_text(self, method: str) -> str:
        """A row's eval image counts: one entry if every column shares it, else per column."""
        cells = [(col, self.cells(method, col)[0]) for col in self.columns]
        cells = [(col, cell) for col, cell in cells if cell.values]
        if not cells:
            return "–"
        texts = {cell.sizes_text() for _, cell in cells}
        if len(texts) == 1:
            return texts.pop()
        return "; ".join(f"{self.column_label(*col)}: {cell.sizes_text()}" for col, cell in cells)

    def labels_text(self, method: str) -> str:
        """The labels that shaped a row's encoders (``none``, ``imagenet labels``, ...)."""
        seen = set().union(*(self.cells(method, col)[0].labels for col in self.columns))
        return "; ".join(sorted(seen)) if seen else "–"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        header = ["method", "pretrain labels"]
        for col in self.columns:
            label = self.column_label(*col)
            header += [f"{label} ours", f"{label} ours n", f"{label} poster",
                       f"{label} ours num_train", f"{label} ours num_test"]
        writer.writerow(header)
        for method in self.methods():
            row: list[Any] = [row_name(method), self.labels_text(method)]
            for col in self.columns:
                ours, theirs = self.cells(method, col)
                sizes = sorted(ours.sizes, key=lambda s: tuple(-1 if v is None else v for v in s))
                row += [f"{ours.mean:.4f}" if ours.values else "", len(ours.values),
                        "" if theirs is None else theirs,
                        ";".join("" if a is None else str(a) for a, _ in sizes),
                        ";".join("" if b is None else str(b) for _, b in sizes)]
            writer.writerow(row)
        return buf.getvalue()


def base_method(key: str) -> str:
    """The method of a row key: ``byol@3ep``, ``byol@b32, accum 4`` and ``byol|cifar10`` -> ``byol``."""
    return key.partition("|")[0].partition("@")[0]


def row_name(key: str) -> str:
    """``tribyol`` -> TriBYOL; ``tribyol|cifar10`` (transfer rows) -> TriBYOL (from C10);
    ``byol@3ep`` (a method pre-trained for several budgets) -> BYOL (3ep);
    ``tribyol@b32, accum 4`` -> TriBYOL (b32, accum 4)."""
    head, _, source = key.partition("|")
    method, _, budget = head.partition("@")
    name = paper.method_name(method) + (f" ({budget})" if budget else "")
    return f"{name} (from {paper.dataset_name(source)})" if source else name


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


def _count(value: Any) -> int:
    """Accumulation / world size of a record; missing (older records) counts as 1."""
    return 1 if value in (None, "") else int(value)


def _saw_labels(r: dict[str, Any]) -> str:
    labels = r.get("pretrain_labels")
    return "?" if labels in (None, "") else str(labels)


# ``reproduce`` names a cell's run ``<method>[-<variant>]_<dataset>_b<batch>_s<seed>``
# (reproduce._cell_id): for records older than ``pretrain_settings`` the variant and the seed
# are read back from that name.
GRID_RUN = re.compile(r"(?P<head>.+)_(?P<data>[^_]+)_b(?P<batch>\d+)_s(?P<seed>\d+)")
MAX_SETTINGS = 3  # setting differences a row label spells out; more: "+N more, cfg <hash>"
# The order in which differing settings are named (the rest after these, alphabetically).
SETTING_ORDER = ("method", "augment", "optim", "model", "norm", "train", "data", "weights")
SEPARATION_NOTE = (
    "`cell X`: a record from before settings were recorded, its configuration read from "
    "its run's name (a `tribyol reproduce` cell: `X` is the arm, none for the default arm); "
    "`in F`: such records of runs in different folders F (two grids' outputs, merged), kept "
    "apart since a run's name does not say its configuration (defaults change between "
    "commits); `settings unrecorded`: those beside records that name their settings.")
PAIRED_NOTE = (
    "the mean over the pre-training seeds both rows ran, each scored on the same test split "
    "with the same eval seed, [95 % Student-t interval, df = n − 1], two-sided p; n = pairs. "
    "An interval that includes 0 does not tell the two rows apart.")


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


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text.replace("|", "/").replace("@", "/")  # row keys split on these


def _setting_rank(key: str) -> tuple:
    head = key.split(".")[0]
    return (SETTING_ORDER.index(head) if head in SETTING_ORDER else len(SETTING_ORDER), key)


def _imagenet_weights(r: dict[str, Any]) -> bool:
    return r.get("pretrain_dataset") == "imagenet" and r.get("pretrain_labels") == IMAGENET_LABELS


def _stem(r: dict[str, Any]) -> str | None:
    stem = r.get("pretrain_stem")
    if stem is None:
        stem = ((r.get("pretrain_settings") or {}).get("model") or {}).get("stem")
    return stem


def _run_folder(r: dict[str, Any]) -> str:
    """The folder an old record's run lies in (a grid's output, an experiment's runs/): runs
    of one name in two such folders are two runs, their configurations unknown."""
    source = Path(str(r.get("source") or ""))
    if source.suffix == ".ckpt" and source.parent.name == "checkpoints":
        source = source.parent.parent
    folder = source.parent
    return str(folder.parent if folder.name == "runs" else folder)


def _setting_quals(group: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Per record of one method, the qualifiers that tell its configuration from the others'
    (settings that differ; for records without settings, the grid arm and commit); and the
    names of the keys that differ."""
    recorded = [r for r in group if isinstance(r.get("pretrain_settings"), dict)]
    legacy = [r for r in group if not isinstance(r.get("pretrain_settings"), dict)]
    flats = {id(r): {k: v for k, v in _flat(upgrade_tree(r["pretrain_settings"])).items()
                    if k != "model.stem"}
             for r in recorded}
    all_keys = {k for f in flats.values() for k in f}
    differ = sorted((k for k in all_keys if len({_text(f.get(k)) for f in flats.values()}) > 1),
                    key=_setting_rank)
    leaves = [k.rsplit(".", 1)[-1] for k in differ]
    names = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(differ, leaves, strict=True)}
    variants = {id(r): grid_run(r)[0] for r in legacy}
    arms = len({variants[id(r)] for r in legacy}) > 1
    folders = {id(r): _run_folder(r) for r in legacy if not _imagenet_weights(r)}
    shown = {f: Path(f).name or f for f in folders.values()}
    if len(set(shown.values())) < len(shown):  # two folders of one name: their whole paths
        shown = {f: f for f in shown}
    keys = [names[k] for k in differ]
    keys += ["cell"] if arms else []
    keys += ["run folder"] if len(shown) > 1 else []
    keys += ["settings recorded or not"] if recorded and legacy else []
    out = []
    for r in group:
        quals: list[str] = []
        if id(r) in flats:
            f = flats[id(r)]
            quals = [f"{names[k]}={_text(f.get(k))}" for k in differ]
            if len(quals) > MAX_SETTINGS:
                digest = hashlib.sha256(json.dumps([_text(f.get(k)) for k in differ]).encode())
                quals = quals[:MAX_SETTINGS] + [
                    f"+{len(differ) - MAX_SETTINGS} more, cfg {digest.hexdigest()[:6]}"]
        else:
            if recorded:
                quals.append("settings unrecorded")
            if arms and variants[id(r)]:
                quals.append(f"cell {_text(variants[id(r)])}")
            elif arms and variants[id(r)] is None:
                quals.append("cell ?")
            if len(shown) > 1 and id(r) in folders:
                quals.append(f"in {_text(shown[folders[id(r)]])}")
        out.append(quals)
    return out, keys


def method_rows(records: list[dict[str, Any]], with_batch: bool = False) -> list[str]:
    """Each record's row (``row_keys``)."""
    return row_keys(records, with_batch)[0]


def scored_on(record: dict[str, Any]) -> str:
    """``validation`` for a record scored on a validation carve (``select_on: validation``
    grids), else ``test``: a validation score and a test score are never one mean."""
    return "validation" if str(record.get("test_split") or "").startswith("validation") else "test"


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
    budgets: dict[str, set] = {}
    labels: dict[str, set] = {}
    scored: dict[str, set] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        scored.setdefault(r.get("method") or "?", set()).add(scored_on(r))
        budgets.setdefault(r.get("method") or "?", set()).add(r.get("pretrain_epochs"))
        labels.setdefault(r.get("method") or "?", set()).add(r.get("pretrain_labels"))
        groups.setdefault(r.get("method") or "?", []).append(r)
    settings: dict[int, list[str]] = {}
    separated: dict[str, list[str]] = {}
    for method, group in groups.items():
        quals_of, keys = _setting_quals(group)
        settings.update({id(r): q for r, q in zip(group, quals_of, strict=True)})
        keys = (["pretrain epochs"] if len(budgets[method]) > 1 else []) + keys
        if len(labels[method] - {None, "none"}) > 1:
            keys.append("labels seen")
        if len(scored[method]) > 1:
            keys.append("scored on")
        if keys:
            mine = separated.setdefault(base_method(method), [])
            mine += [k for k in keys if k not in mine]
    rows = []
    for r in records:
        method = r.get("method") or "?"
        quals = []
        batch = r.get("pretrain_batch_size")
        if with_batch and batch is not None and method not in ("scratch", "random-init"):
            quals.append(f"b{batch}")
        if len(budgets[method]) > 1:
            quals.append(f"{r.get('pretrain_epochs')}ep")
        if _count(r.get("pretrain_accumulate")) != 1:
            quals.append(f"accum {_count(r.get('pretrain_accumulate'))}")
        if _count(r.get("pretrain_world_size")) != 1:
            quals.append(f"{_count(r.get('pretrain_world_size'))} devices")
        seen = r.get("pretrain_labels")
        if len(labels[method] - {None, "none"}) > 1 and seen not in (None, "none", IMAGENET_LABELS):
            quals.append("saw " + str(seen).replace(", ", " + "))
        size = (r.get("params") or {}).get("encoder_image_size")
        if r.get("pretrain_dataset") == "imagenet" and size not in (None, IMAGENET_IMAGE_SIZE):
            quals.append(f"{size}px")
        if _stem(r):
            quals.append(f"stem: {_text(_stem(r))}")
        if len(scored[method]) > 1 and scored_on(r) == "validation":
            quals.append("on validation")
        quals += settings[id(r)]
        head, _, given = method.partition("@")  # a grid's row (byol@equal compute) keeps its own
        quals = ([given] if given else []) + quals
        rows.append(f"{head}@{', '.join(quals)}" if quals else head)
    return rows, separated


def _collect(
    records: list[dict[str, Any]], protocol: str, key: Callable[[dict], Any],
    by_source: bool = False, with_batch: bool = False,
):
    """``{row: {(dataset, key): Cell}}``; rows are ``method_rows``, or row|pre-training dataset
    (but ImageNet's own weights, the poster's one named source, file under its plain row)."""
    ours: dict[str, dict[tuple[str, Any], Cell]] = {}
    records = [r for r in records
               if r.get("protocol") == protocol and r.get("metric") == "top1" and r.get("value") is not None]
    rows, separated = row_keys(records, with_batch)
    for r, row in zip(records, rows, strict=True):
        if by_source and not (r.get("pretrain_dataset") == "imagenet"
                              and r.get("pretrain_labels") == IMAGENET_LABELS):
            row = f"{row}|{r.get('pretrain_dataset')}"
        cell = ours.setdefault(row, {}).setdefault((r["dataset"], key(r)), Cell())
        cell.values.append(float(r["value"]))
        cell.carved |= (r.get("test_split") or "test") != "test"
        params = r.get("params") or {}
        cell.sizes.add((params.get("num_train"), params.get("num_test")))
        cell.labels.add(_saw_labels(r))
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
