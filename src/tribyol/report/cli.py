"""``tribyol report``: the results store -> Markdown + CSV tables and PNG plots."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tribyol.errors import ConfigError
from tribyol.report.names import row_name
from tribyol.report.records import filter_records, latest
from tribyol.store import DEFAULT_STORE, read_results

TSNE_POINTS = 2000  # t-SNE is O(n log n) but slow on 2 cores beyond a few thousand points

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("results") / "report"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def tsne_plots(records: list[dict[str, Any]], out_dir: Path, max_plots: int, points: int) -> list[Path]:
    """t-SNE of the cached test features of the latest linear/kNN record per (run, dataset),
    the legend naming classes as the features file records them."""
    from safetensors.torch import load_file

    from tribyol.eval.features import cached_class_names
    from tribyol.report.plots import plot_tsne

    chosen: dict[tuple, dict[str, Any]] = {}
    for r in latest(records):
        path = (r.get("params") or {}).get("features_file")
        if r.get("protocol") in ("linear", "knn") and path and Path(path).exists():
            chosen[(r.get("run_id"), r.get("dataset"))] = r
    written = []
    for (run_id, dataset), r in list(chosen.items())[-max_plots:] if max_plots > 0 else []:
        path = r["params"]["features_file"]
        data = load_file(path)
        title = f"{run_id} on {dataset} (test features, {r.get('method')})"
        out = out_dir / f"tsne_{_safe(run_id)}_{_safe(dataset)}.png"
        written.append(plot_tsne(data["features"], data["labels"], out, title, points,
                                 class_names=cached_class_names(path)))
    return written


def cmd_report(args: argparse.Namespace) -> int:
    # Imported when the command runs: `tribyol --help` imports this module, not the tables
    # (names and records are plain Python, imported above).
    from tribyol.report.plots import plot_batch_curves
    from tribyol.report.tables import build_tables, render_markdown, runs_table

    filters = dict(f.split("=", 1) for f in args.filter or [])
    records = filter_records(read_results(args.store), filters)
    out = Path(args.out)
    tables = build_tables(records, args.reference)
    if args.reference and not any(t.reference for t in tables):
        rows = sorted({row_name(m) for t in tables for m in t.ours})
        raise ConfigError(f"--reference {args.reference!r} is no row of the report; rows: "
                          f"{', '.join(rows) or 'none'}")
    runs_md, runs_csv = runs_table(records)
    markdown = render_markdown(tables, runs_md)
    plots = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown)
        names = ["linear", "finetune", "transfer", "knn"]
        for name, table in zip(names, tables, strict=False):
            (out / f"{name}.csv").write_text(table.csv())
        (out / "runs.csv").write_text(runs_csv)
        if not args.no_plots:
            path = plot_batch_curves(records, out / "linear_vs_batch.png")
            plots += [path] if path else []
            if args.tsne_plots > 0:
                plots += tsne_plots(records, out, args.tsne_plots, args.tsne_points)
    except OSError as err:  # read-only, no permission, a file in the way, a full disk
        raise PermissionError(
            f"cannot write the report to --out {out} ({err.strerror or err}); pick another "
            "folder with --out"
        ) from None
    print(markdown)
    print(f"wrote {out / 'report.md'}, CSV tables and {len(plots)} plot(s) to {out}/")
    for p in plots:
        print(f"  {p}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("report", help="results store -> Markdown/CSV tables and plots")
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"results file (default {DEFAULT_STORE})")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--filter", action="append", metavar="FIELD=VALUE",
                   help="keep only matching records, e.g. --filter backbone=convnet (repeatable)")
    p.add_argument("--reference", metavar="ROW",
                   help="the row paired differences are taken against, as printed, e.g. "
                        "'BYOL (2.0ep)' (default: the poster's first method present)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--tsne-plots", type=int, default=4,
                   help="t-SNE plots of cached test features, latest runs first (default 4; 0: none)")
    p.add_argument("--tsne-points", type=int, default=TSNE_POINTS,
                   help=f"points per t-SNE plot (default {TSNE_POINTS})")
    p.set_defaults(func=cmd_report)
