"""A pre-training subset of an image folder that leaves out the test split eval will carve.

    python experiments/pretrain_subset.py ROOT SUB --per-class 1000 [--test-fraction 0.2 --seed 0]

`tribyol eval ... --test-from-train F --seed S` holds out a seeded, stratified fraction F of
ROOT/train as its test set. This writes SUB/train/<class>/ with symlinks to up to N images per
class taken only from the other images, so pre-training on SUB never sees a test image, even
unlabelled (``tribyol.data.carves.pretrain_subset``, which `tribyol reproduce` uses too).
tests/test_experiments.py checks the two sets are disjoint, and that the scripts
carve with the same fraction and seed they evaluate with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tribyol.data.carves import pretrain_subset  # the one implementation; also reproduce's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("sub", type=Path)
    parser.add_argument("--per-class", type=int, required=True)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    written = pretrain_subset(args.root, args.sub, args.per_class, args.test_fraction, args.seed)
    print(f"pre-training subset: {len(written)} images outside the carved test split -> {args.sub}")


if __name__ == "__main__":
    main()
