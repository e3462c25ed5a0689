"""Multi-view augmentation: a uint8 batch in, ``num_views`` normalised float views out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tribyol.augment import ops
from tribyol.config import EXTRA_VIEWS, AugmentConfig

BYOL_BLUR_P = (1.0, 0.1)  # BYOL's asymmetric pair, used above augment.blur_min_size


def per_view_probabilities(probs: Sequence[float], num_views: int, extra_views: str) -> list[float]:
    """The probability of one op (blur or solarize) for each of ``num_views`` views.

    ``probs`` is the config's list: BYOL's pair ``[p_v, p_v']`` (a single entry is used for
    both; empty means off). With one or two views every ``extra_views`` gives the list cycled,
    i.e. BYOL's pair: two-view methods are unaffected. With three or more:

    - ``cycle``: view k uses ``probs[k % len(probs)]``; with a pair, v'' copies v.
    - ``byol-pairs``: v gets ``p_v`` and every other view ``p_v'``, so each pair (v, v_k) is
      BYOL's asymmetric pair.
    - ``uniform``: every view gets ``(p_v + p_v') / 2`` (blur 0.55, solarize 0.1 for BYOL's).
    """
    if extra_views not in EXTRA_VIEWS:
        raise ValueError(f"extra_views {extra_views!r} is not one of {', '.join(EXTRA_VIEWS)}")
    probs = [float(p) for p in probs] or [0.0]
    if num_views <= 2 or extra_views == "cycle":
        return [probs[k % len(probs)] for k in range(num_views)]
    first, second = probs[0], probs[1 % len(probs)]
    if extra_views == "byol-pairs":
        return [first] + [second] * (num_views - 1)
    return [(first + second) / 2] * num_views


class MultiViewAugment(nn.Module):
    """BYOL's recipe as batched ops on whatever device the batch is on.

    Per-view probabilities (``blur_p``, ``solarize_p``): views 0 and 1 are BYOL's asymmetric
    pair; ``cfg.extra_views`` decides the views past them (``per_view_probabilities``). An empty
    list means the op is off.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
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
        self.extra_views = cfg.extra_views
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def probabilities(self, num_views: int) -> tuple[list[float], list[float]]:
        """(blur, solarize) probability of each of ``num_views`` views."""
        return (per_view_probabilities(self.blur_p, num_views, self.extra_views),
                per_view_probabilities(self.solarize_p, num_views, self.extra_views))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def view(self, x: Tensor, index: int, g: torch.Generator, blur_p: float | None = None,
             solarize_p: float | None = None) -> Tensor:
        """One augmented view of a float batch in [0, 1]; ``blur_p`` / ``solarize_p`` default to
        the lists' entry ``index`` (cycled)."""
        c = self.cfg
        x = ops.random_resized_crop(
            x, self.image_size, g, c.crop_scale, c.crop_ratio, c.flip_p
        )
        x = ops.color_jitter(
            x, g, c.jitter_p, c.brightness, c.contrast, c.saturation, c.hue
        )
        x = ops.random_grayscale(x, g, c.grayscale_p)
        if blur_p is None:
            blur_p = self.blur_p[index % len(self.blur_p)]
        if solarize_p is None:
            solarize_p = self.solarize_p[index % len(self.solarize_p)]
        x = ops.gaussian_blur(x, g, blur_p, c.blur_sigma)
        x = ops.solarize(x, g, solarize_p)
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
        blur, solarize = self.probabilities(num_views)
        return [self.view(x, k, g, blur[k], solarize[k]) for k in range(num_views)]


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
