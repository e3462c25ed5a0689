"""Pre-flight check of an image folder: decode every image once, before any training.

``tribyol data check ROOT`` prints the images per class, the sizes and modes seen and every
file that cannot be decoded, and exits 2 if there is one. ``tribyol pretrain`` with
``data.bad_images=error`` runs the same check on its folder (``check_before_training``), so a
corrupt file stops the run before its first step, not at whatever step first draws it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tribyol.data.images import FolderImages, to_8bit
from tribyol.data.scan import scan_classes
from tribyol.errors import BadImageError, DatasetNotFoundError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")  # ROOT/train, ROOT/test, as the folder reader takes them
SHOWN_SIZES = 5  # the most common sizes listed; the rest are counted
SHOWN_IN_ERROR = 3  # bad files named in pretrain's one-line error
SLICE = 1024  # files queued to the decoding threads at a time


@dataclass
class FolderCheck:
    """What decoding every image of a folder found."""

    root: Path
    classes: dict[str, Counter] = field(default_factory=dict)  # split -> class -> images
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    modes: Counter = field(default_factory=Counter)  # PIL mode -> images
    bad: list[tuple[Path, str]] = field(default_factory=list)  # (file, error)

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.classes.values())


def decode_one(path: Path) -> tuple[tuple[int, int], str] | str:
    """``((width, height), mode)`` of a file that decodes, else the error's text.

    The same steps as ``FolderImages._decode`` (open, load every pixel, EXIF rotation, 8 bits):
    what passes here, the training loader decodes.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.load()
            size, mode = img.size, img.mode
            to_8bit(ImageOps.exif_transpose(img), 3)
    except Exception as err:  # PIL raises many types for broken files
        return " ".join(f"{type(err).__name__}: {err}".split())  # one line per file
    return size, mode


def default_jobs() -> int:
    return min(8, os.cpu_count() or 1)


def decode_all_files(paths: Sequence[Path], jobs: int | None = None) -> list[Any]:
    """``decode_one`` of each path, in order. Threads: PIL's decoders release the GIL."""
    jobs = jobs or default_jobs()
    if jobs <= 1 or len(paths) < 2:
        return [decode_one(p) for p in paths]
    results: list[Any] = []
    pool = ThreadPoolExecutor(jobs)
    try:  # in slices: a million queued futures would hold memory, and delay a Ctrl+C's exit
        for start in range(0, len(paths), SLICE):
            results += pool.map(decode_one, paths[start:start + SLICE])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def check_folder(root: str | Path, jobs: int | None = None) -> FolderCheck:
    """Decode every image of a folder dataset: ``ROOT/train`` and ``ROOT/test`` where they
    exist, else ``ROOT/<class>/<images>`` (as ``--dataset folder`` reads it)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} does not exist; pass a folder laid out as ROOT/<class>/<images> "
            "or ROOT/train/<class>/<images> (+ ROOT/test/...)"
        )
    report = FolderCheck(root)
    splits = [s for s in SPLITS if (root / s).is_dir()] or [""]
    for split in splits:
        classes, samples = scan_classes(root / split if split else root)
        report.classes[split or "."] = Counter({name: 0 for name in classes})
        paths = [path for path, _ in samples]
        for (path, label), result in zip(samples, decode_all_files(paths, jobs), strict=True):
            report.classes[split or "."][classes[label]] += 1
            if isinstance(result, str):
                report.bad.append((path, result))
            else:
                report.sizes[result[0]] += 1
                report.modes[result[1]] += 1
    return report


def format_check(report: FolderCheck) -> str:
    """The report ``tribyol data check`` prints: counts per class, sizes, modes, bad files."""
    lines = [f"{report.root}: {report.total} images, {len(report.bad)} unreadable"]
    for split, counts in report.classes.items():
        where = "" if split == "." else f"{split}/: "
        lines.append(f"{where}{len(counts)} class{'' if len(counts) == 1 else 'es'}, "
                     f"{sum(counts.values())} images")
        lines += [f"  {name}  {n}" for name, n in counts.items()]
    common = report.sizes.most_common(SHOWN_SIZES)
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in common)
    if len(report.sizes) > SHOWN_SIZES:
        sizes += f", and {len(report.sizes) - SHOWN_SIZES} other sizes"
    lines.append(f"sizes (width x height): {sizes or 'none'}")
    lines.append("modes: " + (", ".join(f"{m} ({n})" for m, n in report.modes.most_common())
                              or "none"))
    lines += [f"unreadable: {path}: {error}" for path, error in report.bad]
    return "\n".join(lines)


def run_check(root: str | Path, jobs: int | None = None, out: TextIO | None = None) -> int:
    """``tribyol data check``: print the report; any unreadable file is a ``BadImageError``."""
    report = check_folder(root, jobs)
    print(format_check(report), file=out or sys.stdout, flush=True)
    if report.bad:
        raise BadImageError(
            f"{len(report.bad)} of {report.total} images under {report.root} cannot be decoded "
            "(listed above); remove or replace them, or train with data.bad_images=skip"
        )
    return 0


def check_before_training(dataset: Any, bad_images: str, jobs: int | None = None) -> None:
    """``data.bad_images=error`` on a folder: decode each of the run's images now, so that a
    corrupt one stops the run before it starts. Costs one decode pass (no resizing) of the
    images the run uses (after ``data.limit``); other datasets and ``skip`` cost nothing."""
    if bad_images != "error" or not isinstance(dataset, FolderImages):
        return
    paths = [path for path, _ in dataset.samples]
    log.info("data.bad_images=error: decoding all %d images under %s before training",
             len(paths), dataset.root)
    results = decode_all_files(paths, jobs)
    bad = [(p, r) for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    if bad:
        (first, error), rest = bad[0], [str(p) for p, _ in bad[1:]]
        more = "" if not rest else (
            f", and {len(rest)} more of the {len(paths)} images ({', '.join(rest[:SHOWN_IN_ERROR])}"
            f"{' ...' if len(rest) > SHOWN_IN_ERROR else ''})")
        raise BadImageError(
            f"cannot decode image {first} ({error}){more}; remove or replace "
            f"{'them' if rest else 'it'} (`tribyol data check {dataset.root}` lists every one), "
            "or set data.bad_images=skip"
        )
