"""CLI start-up time of this checkout against another commit, measured side by side.

    python benchmarks/startup.py --before e447227 --runs 40

Each command runs ``--runs`` times, alternating between the two source trees (the other one
checked out in a temporary git worktree, run with the same interpreter through PYTHONPATH),
and the medians and their ratio are printed and written as JSON. Bytecode caching is on (a
first run per tree writes the .pyc files), as on a user's machine: with PYTHONDONTWRITEBYTECODE
every start would compile every module, which measures source size, not start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import write_result  # noqa: E402

COMMANDS = {
    "help": ["--help"],
    "config error": ["pretrain", "--set", "train.batchsize=8"],
}


def timed(src: Path, args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tribyol.cli", *args], env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/out/startup.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), args.before],
                       cwd=ROOT, check=True)
        try:
            results = {}
            for name, command in COMMANDS.items():
                timed(tree / "src", command), timed(ROOT / "src", command)  # write the .pyc files
                before, after = [], []
                for _ in range(args.runs):
                    before.append(timed(tree / "src", command))
                    after.append(timed(ROOT / "src", command))
                b, a = statistics.median(before), statistics.median(after)
                results[name] = {"before_ms": round(b * 1000, 1), "after_ms": round(a * 1000, 1),
                                 "ratio": round(a / b, 3)}
                print(f"tribyol {' '.join(command)}: {args.before} {b * 1000:.0f} ms, "
                      f"this checkout {a * 1000:.0f} ms (x{a / b:.2f}; medians of {args.runs})")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    write_result({"before": args.before, "runs": args.runs, **results}, args.out)


if __name__ == "__main__":
    main()
