"""Seeded, stratified train/test splits of an image folder that keep duplicate images together.

    python -m tribyol.data split SRC DEST [--test-fraction 0.2] [--seed 0]

How the split is drawn, and why it is stable: docs/data.md, "Splitting a folder"."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tribyol.data.sampling import stratified_group_split
from tribyol.data.scan import scan_classes

MANIFEST_NAME = "split.json"


def content_groups(paths: Sequence[str | Path]) -> list[list[int]]:
    """Indices of files with identical bytes (groups of two or more), in order."""
    by_hash: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        by_hash.setdefault(digest, []).append(i)
    return [idx for idx in by_hash.values() if len(idx) > 1]


def manifest(
    names: Sequence[str], train: Sequence[int], test: Sequence[int], seed: int,
    test_fraction: float, **extra: Any,
) -> dict[str, Any]:
    """``{"seed", "test_fraction", "train": [names], "test": [names], "sha256", ...}``.

    ``sha256`` hashes the two sorted name lists: one short identity of the split.
    """
    tr, te = sorted(names[i] for i in train), sorted(names[i] for i in test)
    digest = hashlib.sha256(json.dumps({"train": tr, "test": te}).encode()).hexdigest()
    return {**extra, "seed": seed, "test_fraction": test_fraction, "num_train": len(tr),
            "num_test": len(te), "sha256": digest, "train": tr, "test": te}


def split_folder(src: str | Path, dest: str | Path, test_fraction: float = 0.2,
                 seed: int = 0) -> dict[str, Any]:
    """Link ``src/<class>/*`` into ``dest/{train,test}/<class>/``; returns the manifest
    (also written to ``dest/split.json``). Identical files stay on one side."""
    src, dest = Path(src).resolve(), Path(dest)
    taken = [dest / name for name in ("train", "test", MANIFEST_NAME) if (dest / name).exists()]
    if taken:  # never write over (or unlink) what is there: it may be the user's
        raise FileExistsError(f"{', '.join(map(str, taken))} already exist(s); pick a new DEST")
    classes, samples = scan_classes(src)
    names = [p.relative_to(src).as_posix() for p, _ in samples]
    labels = [label for _, label in samples]
    groups = content_groups([p for p, _ in samples])
    train, test = stratified_group_split(names, labels, test_fraction, seed, groups, classes)
    for side, idx in (("train", train), ("test", test)):
        for i in idx:
            link = dest / side / names[i]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(samples[i][0])
    result = manifest(names, train, test, seed, test_fraction, source=str(src),
                      duplicates=[[names[i] for i in g] for g in groups])
    (dest / MANIFEST_NAME).write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tribyol.data split",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="SRC/<class>/<images>")
    parser.add_argument("dest", type=Path, help="gets train/<class>/, test/<class>/, split.json")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # Checked before any file is read or hashed.
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if not args.src.is_dir():
        parser.error(f"SRC {args.src} is not a folder of class folders")
    if args.dest.exists() and not args.dest.is_dir():
        parser.error(f"DEST {args.dest} is a file; pick a new folder")
    try:
        m = split_folder(args.src, args.dest, args.test_fraction, args.seed)
    except (FileExistsError, FileNotFoundError, NotADirectoryError) as err:
        parser.error(str(err))
    print(f"{m['num_train']} train / {m['num_test']} test images (seed {m['seed']}, "
          f"{len(m['duplicates'])} groups of identical files kept together) -> {args.dest}; "
          f"manifest {args.dest / MANIFEST_NAME} (sha256 {m['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
