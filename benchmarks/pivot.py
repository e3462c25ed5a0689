"""Render a throughput JSON (benchmarks/throughput.py --out) as method x configuration tables.

    python benchmarks/pivot.py benchmarks/results/cpu_grid.json

Prints two Markdown tables: images/s (wall) and step cost relative to BYOL in the same group
(CPU time, paired), one column per (backbone, batch, precision).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def pivot(rows: list[dict], value: str, fmt: str) -> str:
    cols = sorted({(r["backbone"], r["batch"], r["precision"]) for r in rows},
                  key=lambda c: (c[0], c[2], c[1]))
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != "tribyol", m != "byol", m))
    cell = {(r["method"], r["backbone"], r["batch"], r["precision"]): r.get(value) for r in rows}
    head = "| method | " + " | ".join(f"{b} b{n} {p}" for b, n, p in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for m in methods:
        values = [cell.get((m, *c)) for c in cols]
        if all(v is None for v in values):
            continue
        lines.append(f"| {m} | " + " | ".join("-" if v is None else format(v, fmt) for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", type=Path)
    p.add_argument("--variant", default=None, help="only rows of this variant (default: all)")
    args = p.parse_args(argv)
    rows = [r for r in json.loads(args.json.read_text())["rows"]
            if r.get("images_per_s") and (args.variant is None or r["variant"] == args.variant)]
    print("images/s (wall):\n")
    print(pivot(rows, "images_per_s", ".1f"))
    print("\nstep cost / BYOL's (CPU time, same group):\n")
    print(pivot(rows, "cpu_cost_vs_byol", ".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
