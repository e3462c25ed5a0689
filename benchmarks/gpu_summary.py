"""benchmarks/gpu.sh's last step: ``OUT/summary.md``, the tables of BENCHMARKS.md and RESULTS.md
("not yet run on a GPU") filled from the call's files: its steps (exit code, seconds, cap),
throughput with compile off and on, packing, and the claim's accuracies.

    python benchmarks/gpu_summary.py --out OUT [--claim DIR]   (DIR: the claim's grid folder)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(value: Any, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def steps_table(out: Path) -> list[str]:
    lines = ["## Steps", "", "| step | exit | seconds | cap s |", "|---|---|---|---|"]
    path = out / "steps.tsv"
    for row in (path.read_text().splitlines() if path.exists() else []):
        name, code, seconds, cap = (row.split("\t") + ["", "", ""])[:4]
        status = {"0": "0", "124": "124 (time cap)", "130": "130 (stopped at the cap)"}.get(code, code)
        lines.append(f"| {name} | {status} | {seconds} | {cap} |")
    return lines


def throughput_table(out: Path) -> list[str]:
    lines = ["## Throughput, compile off and on (`benchmarks/throughput.py`, separate passes)", "",
             "| method | backbone | batch | compile | images/s | ms/step | kernel ms/step | "
             "launches/step | GPU busy | first steps s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("throughput_eager.json", "throughput_compiled.json"):
        data = read_json(out / name) or {}
        for r in data.get("rows") or []:
            if "images_per_s" not in r:
                lines.append(f"| {r['method']} | {r['backbone']} | {r['batch']} | "
                             f"{r.get('compile')} | error: {str(r.get('error', ''))[:60]} |"
                             + " |" * 6)
                continue
            busy = r.get("gpu_busy")
            warm = r.get("warmup_step_times_s") or []
            lines.append(
                f"| {r['method']} | {r['backbone']} | {r['batch']} | {r.get('compile')} | "
                f"{r['images_per_s']:.0f} | {r['ms_per_step']:.1f} | "
                f"{fmt(r.get('gpu_kernel_ms_per_step'), '.1f')} | "
                f"{fmt(r.get('gpu_launches_per_step'))} | "
                f"{fmt(None if busy is None else 100 * busy, '.0f', ' %')} | "
                f"{fmt(sum(warm[:3]) if warm else None, '.1f')} | {fmt(r.get('peak_mem_mb'))} |")
        if data and not data.get("complete"):
            lines.append(f"| ({name}: stopped before its last group) |" + " |" * 10)
    return lines


def packing_table(out: Path) -> list[str]:
    data = read_json(out / "packing.json")
    lines = ["## Packing (`benchmarks/packing.py`)", "",
             "| runs | method | backbone | batch | packed img/s (combined) | one after another img/s "
             "| speed-up | per packed run img/s (median) | env per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    if not data:
        return lines + ["| (not measured) |" + " |" * 8]
    s, packed = data["settings"], data["packed"]
    per_run = packed.get("per_run_images_per_s") or []
    env = data["slots"][0] if data.get("slots") else {}
    lines.append(f"| {s['jobs']} | {s['method']} | {s['backbone']} | {s['batch']} | "
                 f"{fmt(packed.get('images_per_s'))} | {fmt(data['sequential'].get('images_per_s'))} | "
                 f"{fmt(data.get('speedup'), '.2f', 'x')} | "
                 f"{fmt(statistics.median(per_run) if per_run else None)} | "
                 f"{' '.join(f'{k}={v}' for k, v in env.items())} |")
    return lines


def claim_table(claim: Path | None) -> list[str]:
    lines = ["## The claim (`configs/grids/gpu_claim.yaml` via `benchmarks/claim_plan.py`)", ""]
    made = read_json(claim.parent / "claim_plan.json") if claim else None
    if made:
        lines.append(f"Plan: {made['images']} pre-training images, {made['epochs']} epoch(s) "
                     f"({made['tribyol_steps']} TriBYOL steps), {made['jobs']} cells packed; speed "
                     f"from {made['source']}.")
        lines.append("")
    lines += ["| row | linear top-1 % (per seed) | linear mean | kNN top-1 % (per seed) | kNN mean |",
              "|---|---|---|---|---|"]
    store = claim / "results.jsonl" if claim else None
    if not store or not store.exists():
        return lines + ["| (no results) | | | | |"]
    by: dict[str, dict[str, dict[int, float]]] = {}
    cells = {}
    for path in (claim / "cells").glob("*.json"):
        state = read_json(path) or {}
        cells[Path(state.get("run", "")).name] = (state.get("label", "?"), int(state.get("seed", 0)))
    for line in store.read_text().splitlines():
        rec = json.loads(line)  # its "seed" is the evaluation's; the cell's is the pre-training's
        label, seed = cells.get(Path(rec.get("source", "")).name, (rec.get("method", "?"), -1))
        by.setdefault(label, {}).setdefault(rec["protocol"], {})[seed] = float(rec["value"])
    for label, protocols in sorted(by.items()):
        cols = []
        for protocol in ("linear", "knn"):
            values = protocols.get(protocol, {})
            cols.append(" / ".join(f"{values[s]:.1f}" for s in sorted(values)) or "-")
            cols.append(fmt(statistics.mean(values.values()) if values else None, ".1f"))
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the call's output folder")
    p.add_argument("--claim", help="the claim's grid output folder")
    p.add_argument("--title", default="benchmarks/gpu.sh")
    args = p.parse_args(argv)
    out = Path(args.out)
    claim = Path(args.claim) if args.claim else None
    text = [f"# {args.title}", ""]
    for part in (steps_table(out), throughput_table(out), packing_table(out), claim_table(claim)):
        text += part + [""]
    (out / "summary.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
