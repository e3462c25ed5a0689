"""One poster-shaped table: its cells (ours beside the poster's), the order of its rows, the
paired differences against its reference row, as Markdown and CSV. What a cell, ``±``, ``†``
and ``‡`` mean and how rows are kept apart: docs/evaluation.md, "Tables"."""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tribyol.report import paper
from tribyol.report.names import base_method, row_name
from tribyol.report.stats import Paired, paired_difference

CARVED = "†"
SAW_LABELS = "‡"
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
