"""Multi-view augmentation: a batch in its own dtype in, ``num_views`` normalised float views
out (converted on the device, ``bands.to_float``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tribyol.augment import bands, ops
from tribyol.config import EXTRA_VIEWS, AugmentConfig
from tribyol.config.augment import check_bands

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
    """BYOL's recipe as batched ops on whatever device the batch is on, for any band count.

    Per-view probabilities (``blur_p``, ``solarize_p``): views 0 and 1 are BYOL's asymmetric
    pair; ``cfg.extra_views`` decides the views past them (``per_view_probabilities``). An empty
    list means the op is off. ``cfg.recipe`` picks the colour ops (``uses_rgb_ops``): BYOL's RGB
    ones, or the band-safe ones of ``tribyol.augment.bands`` (docs/data.md, "Augmentation for N
    bands"). ``scale`` and ``value_range``: how the pixels become floats (``bands.to_float``).
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: float | None = None,
        value_range: Sequence[float] | Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        check_bands(cfg, len(mean))
        self.cfg = cfg
        self.image_size = image_size
        blur = cfg.blur_p
        if blur is None:
            blur = list(BYOL_BLUR_P) if image_size > cfg.blur_min_size else [0.0]
        self.blur_p = list(blur) or [0.0]
        self.solarize_p = list(cfg.solarize_p) or [0.0]
        self.extra_views = cfg.extra_views
        self.scale = scale
        self.rgb_bands = None if cfg.rgb_bands is None else list(cfg.rgb_bands)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        bounds = None if value_range is None else torch.tensor(value_range).reshape(-1, 2)
        self.register_buffer("value_range", bounds, persistent=False)

    def probabilities(self, num_views: int) -> tuple[list[float], list[float]]:
        """(blur, solarize) probability of each of ``num_views`` views."""
        return (per_view_probabilities(self.blur_p, num_views, self.extra_views),
                per_view_probabilities(self.solarize_p, num_views, self.extra_views))

    def uses_rgb_ops(self, images: Tensor) -> bool:
        """Whether BYOL's RGB colour ops run on all of ``images``' bands (else the band ops do):
        ``recipe=rgb``, or ``auto`` for 8-bit pixels of 1 or 3 bands at the default scale (in
        [0, 1] after it, as the RGB ops need) without ``rgb_bands``."""
        recipe = self.cfg.recipe
        if recipe != "auto":
            return recipe == "rgb"
        eight_bit = images.dtype == torch.uint8 and self.scale in (None, 255)
        return eight_bit and images.shape[1] in (1, 3) and self.rgb_bands is None

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def view(self, x: Tensor, index: int, g: torch.Generator, blur_p: float | None = None,
             solarize_p: float | None = None, rgb: bool = True) -> Tensor:
        """One augmented view of a float batch (in [0, 1] for the RGB ops, ``rgb``);
        ``blur_p`` / ``solarize_p`` default to the lists' entry ``index`` (cycled)."""
        c = self.cfg
        x = ops.random_resized_crop(
            x, self.image_size, g, c.crop_scale, c.crop_ratio, c.flip_p
        )
        x = bands.rotate90_flip(x, g, c.rotate_p, c.vflip_p)  # off (no draw) unless asked
        if blur_p is None:
            blur_p = self.blur_p[index % len(self.blur_p)]
        if solarize_p is None:
            solarize_p = self.solarize_p[index % len(self.solarize_p)]
        if rgb:
            x = self._rgb_colour(x, g)
            x = ops.gaussian_blur(x, g, blur_p, c.blur_sigma)
            x = ops.solarize(x, g, solarize_p)
            return self.normalize(x)
        x = bands.band_jitter(x, g, c.band_jitter_p, c.band_brightness, c.band_contrast)
        if self.rgb_bands is not None:
            x = bands.on_bands(x, self.rgb_bands, lambda rgb: self._rgb_colour(rgb, g))
        x = ops.gaussian_blur(x, g, blur_p, c.blur_sigma)
        if self.rgb_bands is not None:
            x = bands.on_bands(x, self.rgb_bands, lambda rgb: ops.solarize(rgb, g, solarize_p))
        x = bands.gaussian_noise(x, g, c.noise_p, c.noise_std)
        # a dropped band holds the data's mean, which normalises to 0
        x = bands.band_dropout(x, g, c.band_drop_p, c.band_drop_band_p, fill=self.mean)
        return self.normalize(x)

    def _rgb_colour(self, x: Tensor, g: torch.Generator) -> Tensor:
        """BYOL's colour jitter, then grayscale (pixels in [0, 1])."""
        c = self.cfg
        x = ops.color_jitter(
            x, g, c.jitter_p, c.brightness, c.contrast, c.saturation, c.hue
        )
        return ops.random_grayscale(x, g, c.grayscale_p)

    @torch.no_grad()
    def forward(self, images: Tensor, num_views: int, g: torch.Generator) -> list[Tensor]:
        """``images``: ``[B, C, H, W]`` in their own dtype (uint8, uint16, int16, float32).
        Returns ``num_views`` float32 batches."""
        if images.shape[1] != self.mean.shape[1]:  # else broadcasting makes 1 channel 3
            raise ValueError(
                f"batch has {images.shape[1]} channels but normalisation has "
                f"{self.mean.shape[1]} (mean {self.mean.flatten().tolist()})"
            )
        x = bands.to_float(images, self.scale, self.value_range)
        rgb = self.uses_rgb_ops(images)
        blur, solarize = self.probabilities(num_views)
        return [self.view(x, k, g, blur[k], solarize[k], rgb) for k in range(num_views)]


def eval_transform(
    images: Tensor, image_size: int, mean: Sequence[float], std: Sequence[float],
    scale: float | None = None,
    value_range: Sequence[float] | Sequence[Sequence[float]] | None = None,
) -> Tensor:
    """Deterministic evaluation view: to float (``bands.to_float``), resize to ``image_size``
    and normalise."""
    x = bands.to_float(images, scale, value_range)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = nn.functional.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
