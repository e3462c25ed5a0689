"""Paired differences for a store whose records predate ``pretrain_seed``: the seed is read from
the run id (``<name>_s<k>``; no suffix is seed 0), and method A is paired with B per seed.

    python experiments/paired_by_run_seed.py results/small_batch_fmnist/results.jsonl \
        tribyol_b32 byol_b32 byol-3ep_b32
prints, per protocol, A minus each B: mean [95 % t-interval] p (n).
"""

from __future__ import annotations

import re
import sys

from tribyol.report.stats import paired_difference
from tribyol.store import read_results


def by_seed(records: list[dict], run: str, protocol: str) -> dict[int, float]:
    out = {}
    for r in records:
        m = re.fullmatch(re.escape(run) + r"(?:_s(\d+))?", str(r.get("run_id")))
        if m and r.get("protocol") == protocol:
            out[int(m.group(1) or 0)] = float(r["value"])  # the latest record of a seed wins
    return out


def main(store: str, a: str, *others: str) -> int:
    records = read_results(store)
    for protocol in ("linear", "knn"):
        first = by_seed(records, a, protocol)
        for b in others:
            second = by_seed(records, b, protocol)
            seeds = sorted(first.keys() & second.keys())
            d = paired_difference([first[s] for s in seeds], [second[s] for s in seeds])
            interval = f"[{d.low:+.2f}, {d.high:+.2f}] p {d.p:.2f}" if d.low is not None else "(one pair)"
            print(f"{protocol}: {a} - {b} = {d.mean:+.2f} {interval} (n {d.n}, seeds {seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
