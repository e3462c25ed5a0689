"""Image sets that yield whole batches: in-memory tensors and lazily decoded folders.

Both are indexed with a *list* of indices and return ``(pixels [B, C, H, W], int64 [B])``, the
pixels in their own dtype (uint8, uint16, int16 or float32; ``tribyol.data.formats``), so a
batch is one fancy-index for in-memory data, with no per-sample Python. Label -1 = unlabelled.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tribyol.data import arrays
from tribyol.data.scan import scan_classes
from tribyol.errors import BadImageError, ConfigError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

NATIVE_SIZE_SAMPLE = 64  # images whose sizes give a folder's native size (``native_size``)


def class_map(own: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Each of ``own``'s class names -> its index in ``classes`` (``KeyError`` if absent)."""
    index = {str(c): i for i, c in enumerate(classes)}
    return [index[str(c)] for c in own]


class TensorImages(Dataset):
    """A whole dataset held as one tensor ``[N, C, H, W]`` (on CPU or the device), in one of
    ``arrays.TORCH_DTYPES`` (uint8 for the presets).

    ``info``: what the reader wants recorded with a run (e.g. the UC Merced split manifest);
    carried by ``to`` and ``subset``.
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str] = (),
                 info: dict | None = None) -> None:
        if images.dtype not in arrays.TORCH_DTYPES.values() or images.ndim != 4:
            raise ValueError("images must be uint8, uint16, int16 or float32 [N, C, H, W], got "
                             f"{images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(index, int):
            index = torch.as_tensor(index, device=self.images.device)
        return self.images[index], self.labels[index]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def dtype(self) -> str:
        """The pixels' dtype name, e.g. ``"uint8"``."""
        return str(self.images.dtype).removeprefix("torch.")

    def to(self, device: torch.device | str) -> TensorImages:
        return TensorImages(self.images.to(device), self.labels.to(device), self.classes, self.info)

    def subset(self, indices: Tensor) -> TensorImages:
        indices = torch.as_tensor(indices, device=self.images.device)
        return TensorImages(self.images[indices], self.labels[indices], self.classes, self.info)

    def with_classes(self, classes: Sequence[str]) -> TensorImages:
        """The same images labelled by where their class names are in ``classes`` (which must
        hold every class of this set): a test split scored against train's classes."""
        lut = torch.tensor(class_map(self.classes, classes), dtype=torch.long,
                           device=self.labels.device)
        known = self.labels >= 0
        labels = torch.where(known, lut[self.labels.clamp(min=0)], self.labels)
        return TensorImages(self.images, labels, classes, self.info)

    def fingerprint(self) -> str:
        """SHA-256 of the pixels, labels and class names: what cached features are keyed on."""
        digest = hashlib.sha256("|".join(map(str, self.classes)).encode())
        for tensor in (self.images, self.labels):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
            if t.numel():
                digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer, no copy
        return digest.hexdigest()


def resize_and_center_crop(image, resize: int, crop: int):
    """PIL image -> shorter side ``resize`` -> centre ``crop`` x ``crop``."""
    from PIL import Image

    w, h = image.size
    scale = resize / min(w, h)
    if scale != 1:
        image = image.resize(
            (max(crop, round(w * scale)), max(crop, round(h * scale))), Image.BILINEAR
        )
    w, h = image.size
    left, top = (w - crop) // 2, (h - crop) // 2
    return image.crop((left, top, left + crop, top + crop))


def decode_square(path: str | Path, size: int, decoder: str = "torchvision") -> Tensor:
    """One RGB image file -> uint8 ``[3, size, size]``: shorter side to ``size``, centre crop.

    ``decoder="torchvision"``: ``torchvision.io.decode_jpeg`` for JPEGs (libjpeg-turbo, about
    1.2-1.9x PIL's speed here), PIL for other formats; ``"pil"``: PIL for all. Both give the same
    pixels for JPEGs (tested on UC Merced's tiles); images not already ``size`` x ``size`` are
    resized by PIL in both, so the two paths agree exactly. Raises ``BadImageError``.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        if decoder == "torchvision" and path.suffix.lower() in (".jpg", ".jpeg"):
            from torchvision.io import ImageReadMode, decode_jpeg, read_file

            data = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB,
                               apply_exif_orientation=True)
            if data.shape[-2:] == (size, size):
                return data
            img = Image.fromarray(data.permute(1, 2, 0).numpy())
        elif decoder in ("torchvision", "pil"):
            with Image.open(path) as raw:
                raw.load()
                img = to_8bit(ImageOps.exif_transpose(raw), 3)
        else:
            raise ValueError(f"decoder must be 'torchvision' or 'pil', got {decoder!r}")
    except ValueError:
        raise
    except Exception as err:  # PIL and torchvision raise many types for broken files
        raise BadImageError(f"cannot decode image {path}: {err}") from err
    img = resize_and_center_crop(img, size, size)
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(size, size, 3).permute(2, 0, 1)


def decode_all(paths: Sequence[str | Path], size: int, decoder: str = "torchvision") -> Tensor:
    """Files -> one uint8 ``[N, 3, size, size]`` tensor, filled in place (no second copy)."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    view = out.numpy()  # numpy's copy: torch's own is threaded, and slow on a busy CPU
    for i, path in enumerate(paths):
        view[i] = decode_square(path, size, decoder).numpy()
    return out


def to_8bit(image: PILImage, channels: int) -> PILImage:
    """PIL image of any mode -> 8-bit ``L`` (channels=1) or ``RGB``.

    16-bit and 32-bit integer images (scans, microscopy) are scaled from the 16-bit range and
    float images from [0, 1]; PIL's own ``convert`` would clip them to 255 (all white).
    """
    from PIL import Image

    if image.mode.startswith("I") or image.mode == "F":
        import numpy as np

        data = np.asarray(image, dtype=np.float64)
        peak = 1.0 if image.mode == "F" else 65535.0
        data = np.clip(np.rint(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        image = Image.fromarray(data)  # 2-D uint8 -> mode "L"
    return image.convert("L" if channels == 1 else "RGB")


class FolderImages(Dataset):
    """Images in ``root/<class>/<file>`` of any size, decoded to a fixed ``image_size``.

    Each image is resized (shorter side to ``resize``) and centre-cropped to ``image_size`` on
    load; random crops and colour happen later, batched on the device. Corrupt files are
    skipped (replaced by the next good image in the set, and logged with their names: for
    pre-training, which needs no labels), with ``bad_images="drop"`` (evaluation) returned as
    a blank image labelled -1, unlabelled, so that they are left out rather than scored as a
    copy of another image, or, with ``bad_images="error"``, raise ``BadImageError`` naming the
    file.

    A folder holding TIFF, DICOM, ``.npy`` or 16-bit PNG files (``arrays.needs_arrays``) keeps
    its pixels' own dtype and any band count: ``formats.folder_format`` reads its one band
    count and dtype from every file's header once, here (mixed ones, or a count that is not
    ``channels``, are one ``ConfigError`` naming a file). Others are decoded by PIL to uint8,
    ``channels`` 1 (grayscale) or 3 (RGB; the default when ``channels`` is None).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        resize: int | None = None,
        channels: int | None = None,
        bad_images: str = "skip",
        layout: str = "auto",
    ) -> None:
        self.root = Path(root)
        self.classes, self.samples = scan_classes(self.root)
        self.labels = torch.tensor([label for _, label in self.samples])
        self.image_size = image_size  # the side of the decoded squares
        self.view_size = image_size  # the side of the views made from them (pre-training sets it)
        self.resize = resize or image_size
        self.layout = layout  # .npy axis order (formats.LAYOUTS)
        self.format = None  # ImageFormat for the array path; None: PIL's uint8 path
        if arrays.needs_arrays([p for p, _ in self.samples]):
            self.format = arrays.array_folder_format([p for p, _ in self.samples], channels, layout)
        elif channels not in (None, 1, 3):
            raise ConfigError(f"data.channels is {channels} but {self.root} holds JPEG/8-bit "
                              "images, which are read as 1 (grayscale) or 3 (RGB) channels; set "
                              "data.channels to 1 or 3, or use TIFF/.npy files for more bands")
        self.channels = self.format.bands if self.format else (channels or 3)
        self.dtype = self.format.dtype if self.format else "uint8"
        self.bad_images = bad_images
        self.bad_files: set[str] = set()

    def subset(self, indices: Sequence[int] | Tensor) -> FolderImages:
        """The same folder restricted to ``indices`` (sizes, channels and classes kept)."""
        picked = copy.copy(self)
        picked.samples = [self.samples[int(i)] for i in indices]
        picked.labels = torch.tensor([label for _, label in picked.samples], dtype=torch.long)
        picked.bad_files = self.bad_files  # one record of corrupt files for both
        return picked

    def with_classes(self, classes: Sequence[str]) -> FolderImages:
        """The same files labelled by where their class folders' names are in ``classes``
        (which must hold every class of this folder): ``test/`` scored against ``train/``'s
        classes, whichever class folders either lacks."""
        lut = class_map(self.classes, classes)
        picked = copy.copy(self)
        picked.samples = [(path, lut[label]) for path, label in self.samples]
        picked.labels = torch.tensor([label for _, label in picked.samples], dtype=torch.long)
        picked.classes = list(classes)
        return picked

    def fingerprint(self) -> str:
        """SHA-256 over each file's path, label, size, mtime and inode (and the decoding
        settings): a file edited, replaced, added, removed, or moved or swapped into another
        class changes it, without an image being decoded."""
        head = f"{self.image_size}|{self.resize}|{self.channels}|{'|'.join(self.classes)}\n"
        if self.format:  # PIL-path folders keep the digests (and feature caches) they had
            head += f"{self.dtype}|{self.layout}\n"
        digest = hashlib.sha256(head.encode())
        for path, label in self.samples:
            try:
                st = os.stat(path)
                stat = f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
            except OSError:
                stat = "unreadable"
            digest.update(f"{path}|{label}|{stat}\n".encode())
        return digest.hexdigest()

    def native_size(self, sample: int = NATIVE_SIZE_SAMPLE) -> int | None:
        """Median shorter side of ``sample`` images spread evenly over the set (headers only).

        ``None`` when none of them can be opened.
        """
        from PIL import Image

        n = len(self.samples)
        step = max(1, n // sample)
        sides = []
        for path, _ in self.samples[::step][:sample]:
            try:
                if self.format:
                    sides.append(arrays.shorter_side(path, self.layout))
                    continue
                with Image.open(path) as img:
                    sides.append(min(img.size))
            except Exception:  # a corrupt file: the loader skips or reports it later
                continue
        return int(statistics.median_low(sides)) if sides else None

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> Tensor:
        from PIL import Image, ImageOps

        path = self.samples[i][0]
        if self.format:
            x = arrays.decode_array(path, self.resize, self.image_size, self.layout)
            if (x.shape[0], str(x.dtype).removeprefix("torch.")) != (self.channels, self.dtype):
                raise BadImageError(f"{path} has {x.shape[0]} bands of {x.dtype} but the folder "
                                    f"has {self.channels} of {self.dtype}")
            return x
        try:
            with Image.open(path) as img:
                img.load()
                img = to_8bit(ImageOps.exif_transpose(img), self.channels)
        except Exception as err:  # PIL raises many types for broken files
            raise BadImageError(f"cannot decode image {path}: {err}") from err
        img = resize_and_center_crop(img, self.resize, self.image_size)
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return data.view(self.image_size, self.image_size, self.channels).permute(2, 0, 1)

    def load(self, i: int) -> tuple[Tensor, int]:
        """Decode image ``i``; in skip mode a corrupt one is replaced by the next good one, in
        drop mode by a blank image labelled -1."""
        for attempt in range(len(self.samples)):
            j = (i + attempt) % len(self.samples)
            try:
                return self._decode(j), self.samples[j][1]
            except BadImageError as err:
                if self.bad_images == "error":
                    raise BadImageError(
                        f"{err}. Remove or replace the file, or set data.bad_images=skip"
                    ) from err
                name = str(self.samples[j][0])
                if name not in self.bad_files:
                    self.bad_files.add(name)
                    log.warning("skipping corrupt image %s (%d skipped so far)",
                                name, len(self.bad_files))
                if self.bad_images == "drop":
                    blank = torch.zeros((self.channels, self.image_size, self.image_size),
                                        dtype=arrays.TORCH_DTYPES[self.dtype])
                    return blank, -1
        raise BadImageError(f"no image under {self.root} can be decoded")

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(index, int):
            image, label = self.load(index)
            return image, torch.tensor(label)
        loaded = [self.load(int(i)) for i in index]
        return torch.stack([x for x, _ in loaded]), torch.tensor([y for _, y in loaded])
