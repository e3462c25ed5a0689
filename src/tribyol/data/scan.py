"""Finding a folder's classes and images, without torch (``python -m tribyol.data split``
and the folder readers share it)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm",
                    ".npy", ".dcm", ".dicom")  # the last three: tribyol.data.formats


def _hidden(path: Path, root: Path) -> bool:
    """A name starting with "." anywhere below ``root`` (.ipynb_checkpoints, ._x.png, .DS_Store)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _folder_images(folder: Path) -> tuple[list[Path], int]:
    """The images under one class folder, sorted, and how many hidden image files were left out."""
    images, hidden = [], 0
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if _hidden(path, folder):
            hidden += 1
        else:
            images.append(path)
    return images, hidden


def scan_classes(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(class names, [(image path, label)])`` of ``root/<class>/**/<image>``.

    Hidden folders and files are skipped, and so are class folders without images (they would
    shift every later label and add a class no image has); one log line names what was skipped.
    """
    hidden_dirs, empty, hidden_files = [], [], 0
    classes: list[str] = []
    samples: list[tuple[Path, int]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            hidden_dirs.append(folder.name)
            continue
        images, hidden = _folder_images(folder)
        hidden_files += hidden
        if not images:
            empty.append(folder.name)
            continue
        samples += [(path, len(classes)) for path in images]
        classes.append(folder.name)
    skipped = []
    if hidden_dirs:
        skipped.append(f"hidden folders {', '.join(hidden_dirs)}")
    if empty:
        skipped.append(f"class folders without images {', '.join(empty)}")
    if hidden_files:
        skipped.append(f"{hidden_files} hidden image files")
    if skipped:
        log.warning("%s: skipped %s", root, "; ".join(skipped))
    if not classes and not empty:
        raise FileNotFoundError(
            f"no class folders under {root}; expected {root}/<class>/<image files>"
        )
    if not classes:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<class>/")
    return classes, samples
