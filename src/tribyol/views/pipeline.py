"""Multi-view augmentation: a uint8 batch in, ``num_views`` normalised float views out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tribyol.config import ViewsConfig
from tribyol.views import augment

BYOL_BLUR_P = (1.0, 0.1)  # BYOL's asymmetric pair, used above views.blur_min_size


class MultiViewAugment(nn.Module):
    """BYOL's recipe as batched ops on whatever device the batch is on.

    Per-view probabilities (``blur_p``, ``solarize_p``) are cycled over the views, so view k
    uses entry ``k % len(list)``: views 0 and 1 are BYOL's asymmetric pair, view 2 repeats
    view 0's settings, and so on. An empty list means the op is off.
    """

    def __init__(
        self,
        cfg: ViewsConfig,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        blur = cfg.blur_p
        if blur is None:
            blur = list(BYOL_BLUR_P) if image_size > cfg.blur_min_size else [0.0]
        self.blur_p = list(blur) or [0.0]
        self.solarize_p = list(cfg.solarize_p) or [0.0]
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def view(self, x: Tensor, index: int, g: torch.Generator) -> Tensor:
        """One augmented view of a float batch in [0, 1]."""
        c = self.cfg
        x = augment.random_resized_crop(
            x, self.image_size, g, c.crop_scale, c.crop_ratio, c.flip_p
        )
        x = augment.color_jitter(
            x, g, c.jitter_p, c.brightness, c.contrast, c.saturation, c.hue
        )
        x = augment.random_grayscale(x, g, c.grayscale_p)
        x = augment.gaussian_blur(x, g, self.blur_p[index % len(self.blur_p)], c.blur_sigma)
        x = augment.solarize(x, g, self.solarize_p[index % len(self.solarize_p)])
        return self.normalize(x)

    @torch.no_grad()
    def forward(self, images: Tensor, num_views: int, g: torch.Generator) -> list[Tensor]:
        """``images``: uint8 ``[B, C, H, W]``. Returns ``num_views`` float32 batches."""
        if images.shape[1] != self.mean.shape[1]:  # else broadcasting makes 1 channel 3
            raise ValueError(
                f"batch has {images.shape[1]} channels but normalisation has "
                f"{self.mean.shape[1]} (mean {self.mean.flatten().tolist()})"
            )
        x = images.float().div_(255.0)
        return [self.view(x, k, g) for k in range(num_views)]


def eval_transform(
    images: Tensor, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """Deterministic evaluation view: resize to ``image_size`` and normalise."""
    x = images.float().div(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = nn.functional.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
