"""Image sets that yield whole uint8 batches: in-memory tensors and lazily decoded folders.

Both are indexed with a *list* of indices and return ``(uint8 [B, C, H, W], int64 [B])``, so a
batch is one fancy-index for in-memory data, with no per-sample Python. Label -1 = unlabelled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tribyol.errors import BadImageError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class TensorImages(Dataset):
    """A whole dataset held as one uint8 tensor ``[N, C, H, W]`` (on CPU or the device)."""

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str] = ()) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)

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

    def to(self, device: torch.device | str) -> TensorImages:
        return TensorImages(self.images.to(device), self.labels.to(device), self.classes)

    def subset(self, indices: Tensor) -> TensorImages:
        indices = torch.as_tensor(indices, device=self.images.device)
        return TensorImages(self.images[indices], self.labels[indices], self.classes)


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
    skipped (replaced by the next good image in the set, and logged with their names) or, with
    ``bad_images="error"``, raise ``BadImageError`` naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        resize: int | None = None,
        channels: int = 3,
        bad_images: str = "skip",
    ) -> None:
        self.root = Path(root)
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise FileNotFoundError(
                f"no class folders under {self.root}; expected {self.root}/<class>/<image files>"
            )
        self.classes = classes
        self.samples: list[tuple[Path, int]] = [
            (path, label)
            for label, name in enumerate(classes)
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not self.samples:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}/<class>/"
            )
        self.labels = torch.tensor([label for _, label in self.samples])
        self.image_size = image_size
        self.resize = resize or image_size
        self.channels = channels
        self.bad_images = bad_images
        self.bad_files: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> Tensor:
        from PIL import Image, ImageOps

        path = self.samples[i][0]
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
        """Decode image ``i``; in skip mode a corrupt one is replaced by the next good one."""
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
        raise BadImageError(f"no image under {self.root} can be decoded")

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(index, int):
            image, label = self.load(index)
            return image, torch.tensor(label)
        loaded = [self.load(int(i)) for i in index]
        return torch.stack([x for x, _ in loaded]), torch.tensor([y for _, y in loaded])
