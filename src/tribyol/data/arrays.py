"""Folder images that PIL cannot hold: N bands, 16-bit and float pixels (``tribyol.data.formats``).

``FolderImages`` sends a folder here when it holds TIFF, DICOM or ``.npy`` files, or 16-bit PNGs;
JPEG and 8-bit PNG folders keep the PIL/torchvision uint8 path (same bits, same speed). Pixels stay
in their own dtype; they are resized with torch, in float32 (exact for 16-bit integers), rounded
back for integer dtypes, since PIL cannot resize more than 4 bands or 16-bit colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from tribyol.data.formats import (
    DICOM_SUFFIXES,
    NPY_SUFFIXES,
    TIFF_SUFFIXES,
    ImageFormat,
    _to_chw,
    folder_format,
    image_pages,
    read_image,
)

ARRAY_SUFFIXES = TIFF_SUFFIXES + DICOM_SUFFIXES + NPY_SUFFIXES
PNG_PROBE_SAMPLE = 64  # PNG headers read (spread over the folder) to find 16-bit ones
TORCH_DTYPES = {"uint8": torch.uint8, "uint16": torch.uint16, "int16": torch.int16,
                "float32": torch.float32}


def _png_is_16bit(path: str | Path) -> bool:
    """IHDR bit depth 16 (any colour type): PIL's 8-bit path would lose the low byte."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:  # the loader reports it when it decodes the file
        return False
    return len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16


def needs_arrays(paths: Sequence[str | Path]) -> bool:
    """Whether a folder needs this path: any TIFF/DICOM/.npy, or a 16-bit PNG among a spread
    sample of its PNGs (headers only)."""
    if any(Path(p).suffix.lower() in ARRAY_SUFFIXES for p in paths):
        return True
    pngs = [p for p in paths if Path(p).suffix.lower() == ".png"]
    step = max(1, len(pngs) // PNG_PROBE_SAMPLE)
    return any(_png_is_16bit(p) for p in pngs[::step][:PNG_PROBE_SAMPLE])


def array_folder_format(paths: Sequence[str | Path], channels: int | None,
                        layout: str = "auto") -> ImageFormat:
    """``formats.folder_format``: one band count and dtype for the folder, or one error line."""
    return folder_format(list(paths), channels=channels, layout=layout)


def shorter_side(path: str | Path, layout: str = "auto") -> int:
    """A file's shorter side, from its header for ``.npy`` and TIFF, else a full read."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix in NPY_SUFFIXES:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return int(min(_to_chw(arr, layout, path).shape[1:]))
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = image_pages(tif)[0]
                return int(min(page.imagelength, page.imagewidth))
    except Exception:  # the full read below gives the one-line error
        pass
    return int(min(read_image(path, layout).shape[1:]))


def resize_and_crop(x: Tensor, resize: int, crop: int) -> Tensor:
    """``[C, H, W]`` in any dtype -> shorter side ``resize`` (antialiased bilinear, as PIL's
    path) -> centre ``crop`` x ``crop``, in the same dtype (integers rounded and clamped)."""
    c, h, w = x.shape
    scale = resize / min(w, h)
    if scale != 1:
        size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
        y = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0]
        if x.dtype.is_floating_point:
            x = y.to(x.dtype)
        else:
            info = torch.iinfo(x.dtype)
            x = y.round_().clamp_(info.min, info.max).to(x.dtype)
        h, w = size
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[:, top:top + crop, left:left + crop].contiguous()


def decode_array(path: str | Path, resize: int, crop: int, layout: str = "auto") -> Tensor:
    """One file -> ``[C, crop, crop]`` in its own dtype (``BadImageError`` naming the file)."""
    arr = read_image(path, layout)
    if not arr.flags.writeable:  # torch wants its own buffer (a read-only one warns)
        arr = arr.copy()
    return resize_and_crop(torch.from_numpy(arr), resize, crop)
