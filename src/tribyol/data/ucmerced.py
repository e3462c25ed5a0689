"""UC Merced Land Use: 2,100 aerial RGB tiles (21 classes x 100) as a preset with a fixed,
seeded, class-stratified 80/20 split that keeps duplicate images on one side (docs/data.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from tribyol.data.folder_split import content_groups, manifest
from tribyol.data.images import TensorImages, decode_all
from tribyol.data.sampling import stratified_group_split
from tribyol.data.scan import scan_classes
from tribyol.errors import DatasetNotFoundError

log = logging.getLogger(__name__)

FOLDER = "uc_merced"
CLASSES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
    "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
    "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
    "sparseresidential", "storagetanks", "tenniscourt",
)
MEAN = (0.4842, 0.4900, 0.4505)  # ../shared/data/README.md, measured on the JPEGs in [0, 1]
STD = (0.2178, 0.2017, 0.1966)
LOAD_SIZE = 256  # tiles are decoded to 256x256; views crop from them
VIEW_SIZE = 224
SPLIT_SEED = 0
TEST_FRACTION = 0.2
# Pixel-identical in the source (the TIFFs differ only in metadata); kept together even if a
# copy of the data re-encodes them so that their bytes differ.
KNOWN_DUPLICATES = (("airplane/airplane01", "airplane/airplane02"),)


def find_root(root: str | Path) -> Path:
    """``root`` itself when it holds the class folders, else ``root/uc_merced``."""
    root = Path(root)
    if (root / FOLDER).is_dir() and not (root / CLASSES[0]).is_dir():
        return root / FOLDER
    if root.is_dir() and any((root / c).is_dir() for c in CLASSES):
        return root
    raise DatasetNotFoundError(
        f"ucmerced not found: {root} holds neither the class folders ({CLASSES[0]}/, "
        f"{CLASSES[1]}/, ...) nor {FOLDER}/. Unpack the archive (tar -xzf uc_merced.tar.gz -C "
        f"DIR) and pass --data-root DIR or DIR/{FOLDER}."
    )


def scan(root: str | Path) -> tuple[Path, list[str], list[Path], list[int]]:
    """``(folder, names "class/file", paths, labels)`` of the tiles, classes in CLASSES order."""
    folder = find_root(root)
    try:
        classes, samples = scan_classes(folder)
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"ucmerced: {err}") from None
    if tuple(classes) != CLASSES:
        missing = sorted(set(CLASSES) - set(classes))
        extra = sorted(set(classes) - set(CLASSES))
        raise DatasetNotFoundError(
            f"ucmerced: {folder} does not hold the 21 UC Merced classes (missing: "
            f"{', '.join(missing) or 'none'}; not UC Merced: {', '.join(extra) or 'none'}). "
            "For another image collection use --dataset folder."
        )
    names = [p.relative_to(folder).as_posix() for p, _ in samples]
    return folder, names, [p for p, _ in samples], [label for _, label in samples]


def split_indices(names: list[str], paths: list[Path], labels: list[int],
                  seed: int = SPLIT_SEED) -> tuple[list[int], list[int], list[list[int]]]:
    """``(train, test, groups kept together)``: the preset's split of the scanned tiles."""
    stems = {name.rsplit(".", 1)[0]: i for i, name in enumerate(names)}
    groups = content_groups(paths)
    groups += [[stems[s] for s in pair if s in stems] for pair in KNOWN_DUPLICATES]
    train, test = stratified_group_split(names, labels, TEST_FRACTION, seed, groups, CLASSES)
    return train, test, groups


def split_manifest(root: str | Path, seed: int = SPLIT_SEED) -> dict[str, Any]:
    """``{"dataset", "root", "seed", "test_fraction", "sha256", "train": [...], "test": [...]}``
    with the ``class/file`` names of each side."""
    folder, names, paths, labels = scan(root)
    train, test, groups = split_indices(names, paths, labels, seed)
    dups = sorted({tuple(names[i] for i in sorted(set(g))) for g in groups if len(set(g)) > 1})
    return manifest(names, train, test, seed, TEST_FRACTION, dataset="ucmerced",
                    root=str(folder), kept_together=[list(d) for d in dups])


def read_ucmerced(root: str | Path, split: str, download: bool = False,
                  resize: int | None = None, decoder: str = "torchvision", **_: Any) -> TensorImages:
    """The ``train`` (80 %) or ``test`` (20 %) side as 256x256 uint8 tiles in memory."""
    if download:
        raise DatasetNotFoundError(
            "ucmerced cannot be downloaded by tribyol; unpack uc_merced.tar.gz and pass "
            "--data-root to it"
        )
    side = split.split("+")[0]
    if side not in ("train", "test"):
        raise ValueError(f"ucmerced has the splits train and test, not '{split}'")
    folder, names, paths, labels = scan(root)
    train, test, groups = split_indices(names, paths, labels)
    chosen = train if side == "train" else test
    size = resize or LOAD_SIZE
    images = decode_all([paths[i] for i in chosen], size, decoder)
    m = manifest(names, train, test, SPLIT_SEED, TEST_FRACTION, dataset="ucmerced",
                 root=str(folder))
    log.info("ucmerced: %s side, %d of %d tiles at %d px (%.0f MB); split seed %d, sha256 %s",
             side, len(chosen), len(names), size, images.numel() / 1e6, SPLIT_SEED,
             m["sha256"][:12])
    return TensorImages(images, torch.tensor([labels[i] for i in chosen]), CLASSES,
                        info={"split": m})


def main(argv: list[str] | None = None) -> int:
    """``python -m tribyol.data ucmerced-split DIR [OUT.json]``: the split manifest as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0 if argv else 2
    if len(argv) > 2:
        print(f"error: ucmerced-split takes DIR [OUT.json], got {len(argv)} arguments",
              file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) > 1 else None
    if out is not None and (out.exists() or out.is_symlink()):
        # Never written over: it may be a file of the user's.
        print(f"error: {out} already exists; pick a new OUT.json", file=sys.stderr)
        return 2
    text = json.dumps(split_manifest(argv[0]), indent=1) + "\n"
    if out is None:
        sys.stdout.write(text)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
