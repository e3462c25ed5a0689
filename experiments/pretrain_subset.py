"""A pre-training subset of an image folder that leaves out the test split eval will carve.

    python experiments/pretrain_subset.py ROOT SUB --per-class 1000 [--test-fraction 0.2 --seed 0]

`tribyol eval ... --test-from-train F --seed S` holds out a seeded, stratified fraction F of
ROOT/train as its test set. This writes SUB/train/<class>/ with symlinks to up to N images per
class taken only from the other images, so pre-training on SUB never sees a test image, even
unlabelled. tests/test_experiments.py checks the two sets are disjoint, and that the scripts
carve with the same fraction and seed they evaluate with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tribyol.data import load_split
from tribyol.eval.splits import stratified_split


def pretrain_subset(root: Path, sub: Path, per_class: int, test_fraction: float = 0.2,
                    seed: int = 0) -> list[Path]:
    """Link up to ``per_class`` images per class of ``root`` outside the carved test split."""
    train = load_split("folder", root, "train", image_size=32, channels=3)
    rest, _held = stratified_split(train.labels, test_fraction, seed)  # eval's carve
    taken: dict[int, int] = {}
    written = []
    for i in rest.tolist():
        path, label = train.samples[i]
        if taken.get(label, 0) >= per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        dest = sub / "train" / train.classes[label] / Path(path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(Path(path).resolve())
        written.append(dest)
    return written


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
