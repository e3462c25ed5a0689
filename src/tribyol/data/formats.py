"""One image file -> a numpy array ``[C, H, W]`` in its own dtype, for scientific imagery.

The pixels stay as they are: uint8, uint16, int16 or float32, 1 to ``MAX_BANDS`` bands. Float
conversion, scaling and clipping happen later, on the device (``tribyol.augment.bands``).

Formats, by suffix:

- ``.tif`` / ``.tiff`` (tifffile): the pixels only; GeoTIFF tags and overviews are ignored. A
  page's sample axis (``S`` in tifffile's axes) is the band axis; a multi-page TIFF stacks its
  pages' bands, and is refused when its pages differ in shape.
- ``.dcm`` (pydicom): ``RescaleSlope`` / ``RescaleIntercept`` applied, giving float32 (CT in
  Hounsfield units) whenever the file has either tag; a file with neither keeps its stored
  dtype (int16, uint16, uint8). One frame per file. MONOCHROME1 (inverted) is not inverted.
- ``.npy``: ``[H, W]``, ``[C, H, W]`` or ``[H, W, C]`` (``npy_layout`` says which).
- ``.png`` and everything else PIL opens: 16-bit grayscale PNG stays uint16 (PIL's ``I;16``);
  16-bit colour PNG, which PIL cuts to 8 bits, is decoded by torchvision instead. Alpha is not a
  band: RGBA -> RGB, LA -> L; palette and CMYK images -> RGB.

Every problem is a ``BadImageError`` (one line, exit 2) naming the file and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribyol.errors import BadImageError, ConfigError

MAX_BANDS = 64
DTYPES = ("uint8", "uint16", "int16", "float32")
TIFF_SUFFIXES = (".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NPY_SUFFIXES = (".npy",)
LAYOUTS = ("auto", "CHW", "HWC")
_PIL_MODES = {"1": "L", "LA": "L", "La": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "RGBa": "RGB",
              "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


@dataclass(frozen=True)
class ImageFormat:
    """What a file (or a folder of them) holds: its band count and numpy dtype name."""

    bands: int
    dtype: str


def npy_layout(shape: Sequence[int]) -> str:
    """``"CHW"`` or ``"HWC"`` for a 3-D array of ``shape``: the band axis is the small one.

    The rule: ``[H, W, C]`` when the last axis is strictly smaller than each of the first two,
    otherwise ``[C, H, W]`` (ties included: ``(4, 4, 4)`` is 4 bands of 4 x 4). An image with at
    least as many bands as pixels along a side is ambiguous; pass ``layout`` to say which.
    """
    return "HWC" if shape[2] < min(shape[0], shape[1]) else "CHW"


def _bad(path: str | Path, problem: str, remedy: str) -> BadImageError:
    problem = " ".join(problem.split())  # a library's multi-line reason, on the one error line
    return BadImageError(f"{path}: {problem}; {remedy}")


def _to_chw(arr: np.ndarray, layout: str, path: str | Path) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise _bad(path, f"has shape {tuple(arr.shape)}, not an image",
                   "save one 2-D image per file as [H, W], [C, H, W] or [H, W, C]")
    if layout == "auto":
        layout = npy_layout(arr.shape)
    return np.moveaxis(arr, -1, 0) if layout == "HWC" else arr


def check_pixels(arr: np.ndarray, path: str | Path) -> np.ndarray:
    """``arr`` ``[C, H, W]`` in native byte order, or ``BadImageError``: a dtype outside
    ``DTYPES``, no pixels, more than ``MAX_BANDS`` bands, or NaN/Inf in a float image."""
    if arr.dtype.name not in DTYPES:
        raise _bad(path, f"has pixel type {arr.dtype.name}, which tribyol does not read",
                   f"convert it to one of {', '.join(DTYPES)} (e.g. numpy's astype)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim != 3 or 0 in arr.shape:
        raise _bad(path, f"has no pixels (shape {tuple(arr.shape)})", "remove or replace the file")
    if arr.shape[0] > MAX_BANDS:
        raise _bad(path, f"has {arr.shape[0]} bands, more than {MAX_BANDS}",
                   f"keep at most {MAX_BANDS} bands (or, for a .npy, check its axis order)")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise _bad(path, f"holds {bad} NaN or Inf values",
                       "replace them with finite values (e.g. numpy.nan_to_num) or remove the file")
    return np.ascontiguousarray(arr)


def _page_chw(page, path: str | Path) -> np.ndarray:
    arr = page.asarray()
    axes = page.axes
    if "S" in axes and arr.ndim == 3:
        arr = np.moveaxis(arr, axes.index("S"), 0)
    elif arr.ndim == 3:
        arr = _to_chw(arr, "auto", path)
    return _to_chw(arr, "CHW", path)


def image_pages(tif) -> list:
    """A TIFF's full-resolution image pages: a GeoTIFF's overviews (reduced-resolution pages)
    and transparency masks are not bands."""
    return [p for p in tif.pages if not (p.is_reduced or p.is_mask)] or list(tif.pages)[:1]


def read_tiff(path: str | Path) -> np.ndarray:
    """A (Geo)TIFF's pixels as ``[C, H, W]``; the pages of a multi-page file are stacked."""
    import tifffile

    if os.path.getsize(path) == 0:
        raise _bad(path, "is an empty file (0 bytes)", "replace it with the complete TIFF")
    try:
        with tifffile.TiffFile(path) as tif:
            pages = image_pages(tif)
            shapes = {tuple(p.shape) for p in pages}
            if len(shapes) > 1:
                raise _bad(path, f"is a multi-page TIFF whose pages differ in shape "
                           f"({', '.join(str(s) for s in sorted(shapes))})",
                           "save one image per file, or pages of one shape (one band each)")
            arr = np.concatenate([_page_chw(p, path) for p in pages])
    except BadImageError:
        raise
    except Exception as err:  # tifffile raises many types for broken files
        raise _bad(path, f"cannot be read as TIFF ({err})", "remove or replace the file") from err
    return check_pixels(arr, path)


def _dicom_rescaled(arr: np.ndarray, ds) -> np.ndarray:
    """``arr * RescaleSlope + RescaleIntercept`` as float32 (exact for 16-bit integers) when the
    file has either tag; its stored dtype (uint8, uint16, int16) when it has neither.

    Not int16 for integer rescales: one CT folder mixes 12-bit unsigned and 16-bit signed
    storage, slopes of 1 and 1.0002441, and intercepts of -1024 and 0 (the shared CT set does),
    and a value-dependent dtype would split it into two formats that ``folder_format`` refuses.
    """
    if "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        return arr
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return (arr.astype(np.float64) * slope + intercept).astype(np.float32)


def read_dicom(path: str | Path) -> np.ndarray:
    """One DICOM slice as ``[C, H, W]`` with RescaleSlope/Intercept applied (module docstring)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as err:  # pydicom raises many types for broken or compressed files
        raise _bad(path, f"cannot be read as DICOM ({err})",
                   "remove or replace the file (a compressed one may need pylibjpeg or gdcm)") from err
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise _bad(path, f"is a multi-frame DICOM ({ds.NumberOfFrames} frames)",
                   "save one slice per file")
    arr = _dicom_rescaled(arr, ds)
    layout = "HWC" if int(getattr(ds, "SamplesPerPixel", 1)) > 1 else "CHW"
    return check_pixels(_to_chw(arr, layout, path), path)


def read_npy(path: str | Path, layout: str = "auto") -> np.ndarray:
    """A ``.npy`` array as ``[C, H, W]``; ``layout`` ``"auto"`` follows ``npy_layout``."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError, OSError, EOFError ... for broken files
        raise _bad(path, f"cannot be read as .npy ({err})",
                   "save it with numpy.save, without pickled objects") from err
    return check_pixels(_to_chw(arr, layout, path), path)


def _png_is_16bit_colour(path: str | Path) -> bool:
    """IHDR bit depth 16 with colour type 2 (RGB) or 6 (RGBA): PIL would keep 8 bits."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 6)


def _read_png16_colour(path: str | Path) -> np.ndarray:
    """``[3, H, W]`` uint16 (alpha dropped) through torchvision, which keeps 16-bit colour."""
    from torchvision.io import ImageReadMode, decode_png, read_file

    return decode_png(read_file(str(path)), mode=ImageReadMode.RGB).numpy()


def read_pil(path: str | Path) -> np.ndarray:
    """A JPEG, PNG or other PIL-readable image as ``[C, H, W]``, 16-bit grayscale kept."""
    from PIL import Image, ImageOps

    try:
        if str(path).lower().endswith(".png") and _png_is_16bit_colour(path):
            return check_pixels(_read_png16_colour(path), path)
        with Image.open(path) as raw:
            raw.load()
            img = ImageOps.exif_transpose(raw)
    except Exception as err:  # PIL raises many types for broken files
        raise _bad(path, f"cannot be decoded ({err})", "remove or replace the file") from err
    if img.mode in _PIL_MODES:
        img = img.convert(_PIL_MODES[img.mode])
    arr = np.asarray(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L") and arr.dtype != np.uint16:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise _bad(path, "holds 32-bit integer pixels", "save it as 16-bit or float32")
        arr = arr.astype(np.uint16)
    return check_pixels(_to_chw(arr, "HWC" if arr.ndim == 3 else "CHW", path), path)


def read_image(path: str | Path, layout: str = "auto") -> np.ndarray:
    """One image file -> numpy ``[C, H, W]`` in its own dtype (module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path)
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path)
    if suffix in NPY_SUFFIXES:
        return read_npy(path, layout)
    return read_pil(path)


def _probe_npy(path: Path, layout: str) -> ImageFormat | None:
    """From the header alone (a memory map); ``None`` where only a full read can tell."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:  # the full read gives the one-line error
        return None
    if arr.ndim not in (2, 3) or arr.dtype.name not in DTYPES or 0 in arr.shape:
        return None
    bands = 1 if arr.ndim == 2 else _to_chw(arr, layout, path).shape[0]
    return ImageFormat(int(bands), arr.dtype.name) if bands <= MAX_BANDS else None


def _probe_tiff(path: Path) -> ImageFormat | None:
    """From the page headers alone; ``None`` where only a full read can tell."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = image_pages(tif)
            page = pages[0]
            if len({tuple(p.shape) for p in pages}) > 1 or len(page.shape) not in (2, 3):
                return None
            axes, shape, dtype = page.axes, page.shape, np.dtype(page.dtype).name
    except Exception:  # the full read gives the one-line error
        return None
    if len(shape) == 2:
        per_page = 1
    elif "S" in axes:
        per_page = shape[axes.index("S")]
    else:
        per_page = shape[0] if npy_layout(shape) == "CHW" else shape[2]
    bands = per_page * len(pages)
    return ImageFormat(int(bands), dtype) if dtype in DTYPES and bands <= MAX_BANDS else None


def probe(path: str | Path, layout: str = "auto") -> ImageFormat:
    """A file's band count and dtype: from the header for ``.npy`` and TIFF, else a full read.

    A float file's NaN/Inf is found when its pixels are read, not here.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    found = None
    if suffix in NPY_SUFFIXES:
        found = _probe_npy(path, layout)
    elif suffix in TIFF_SUFFIXES and os.path.getsize(path) > 0:
        found = _probe_tiff(path)
    if found is None:
        arr = read_image(path, layout)
        found = ImageFormat(int(arr.shape[0]), arr.dtype.name)
    return found


def _bands(n: int) -> str:
    return f"{n} band" if n == 1 else f"{n} bands"


def folder_format(paths: Sequence[str | Path], channels: int | None = None,
                  layout: str = "auto") -> ImageFormat:
    """The one band count and dtype of ``paths``, read from the files.

    The first file sets them; the first file that differs is named in a ``ConfigError``, as is
    the first file when its band count is not ``channels`` (``data.channels``, if given).
    """
    if not paths:
        raise ConfigError("no image files to read the band count and dtype from; check data.root")
    first = probe(paths[0], layout)
    if channels is not None and first.bands != channels:
        raise ConfigError(f"{paths[0]} has {_bands(first.bands)} but data.channels is {channels}; "
                          f"set data.channels={first.bands} or use other files")
    for path in paths[1:]:
        fmt = probe(path, layout)
        if fmt != first:
            raise ConfigError(
                f"{path} has {_bands(fmt.bands)} of {fmt.dtype} but {paths[0]} has "
                f"{_bands(first.bands)} of {first.dtype}; every file of a folder needs the same "
                "bands and pixel type: move or convert the files that differ")
    return first
