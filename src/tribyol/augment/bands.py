"""Band-safe augmentation for any band count: batched float ``[B, C, H, W]``, per-sample random
parameters from an explicit ``torch.Generator``, like ``tribyol.augment.ops``.

Hue, saturation, grayscale and solarize mean something only for RGB. These ops replace them
for N bands and work in any units (reflectance, Hounsfield, [0, 1]): brightness and contrast
are relative factors, noise is relative to each image's own band std, and nothing is clamped to
[0, 1]. They run before normalisation, on the pixels ``to_float`` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tribyol.augment.ops import _coin, _select, _uniform


def to_float(images: Tensor, scale: float | None = None,
             value_range: Sequence[float] | Sequence[Sequence[float]] | None = None) -> Tensor:
    """Pixels in their own dtype -> float32 on their device: divided by ``scale`` (255 for uint8
    when none is given, as today; 1 for other dtypes), then clipped to ``value_range``: one
    ``(low, high)`` pair or one per band. The same arithmetic as
    ``tribyol.data.band_stats.scale_and_clip``, which the statistics are computed with."""
    if scale is None:
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
    x = images.float()
    # in place on the new float copy (the uint8 path's one allocation, as before); float32
    # input is the caller's own tensor, so it gets a new one
    x = x.div_(scale) if x is not images else x / scale
    if value_range is not None:
        bounds = torch.as_tensor(value_range, dtype=x.dtype, device=x.device).reshape(-1, 2)
        low, high = bounds[:, 0].view(1, -1, 1, 1), bounds[:, 1].view(1, -1, 1, 1)
        x = torch.maximum(torch.minimum(x, high), low)
    return x


def band_jitter(x: Tensor, g: torch.Generator, p: float, brightness: float = 0.4,
                contrast: float = 0.4) -> Tensor:
    """With probability ``p`` per image: each band scaled by its own factor in
    ``[1 - brightness, 1 + brightness]``, and its contrast about its mean by one in
    ``[1 - contrast, 1 + contrast]``."""
    if p <= 0 or (brightness <= 0 and contrast <= 0):
        return x
    b, c = x.shape[:2]
    device = x.device
    apply = _coin(b, p, g, device)
    out = x
    if brightness > 0:
        factor = _uniform(b * c, max(0.0, 1 - brightness), 1 + brightness, g, device)
        out = out * factor.view(b, c, 1, 1).to(x.dtype)
    if contrast > 0:
        factor = _uniform(b * c, max(0.0, 1 - contrast), 1 + contrast, g, device)
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * factor.view(b, c, 1, 1).to(x.dtype) + mean
    return _select(apply, out, x)


def gaussian_noise(x: Tensor, g: torch.Generator, p: float, std: float = 0.1) -> Tensor:
    """With probability ``p`` per image: Gaussian noise of std ``s * (the band's std in that
    image)``, ``s ~ U(0, std)`` per image, so it is the same strength in any units."""
    if p <= 0 or std <= 0:
        return x
    b, device = x.shape[0], x.device
    apply = _coin(b, p, g, device)
    strength = _uniform(b, 0.0, std, g, device).view(-1, 1, 1, 1).to(x.dtype)
    band_std = x.std(dim=(2, 3), keepdim=True)
    noise = torch.randn(x.shape, generator=g, device=device, dtype=x.dtype)
    return _select(apply, x + noise * strength * band_std, x)


def band_dropout(x: Tensor, g: torch.Generator, p: float, band_p: float = 0.2,
                 fill: Sequence[float] | Tensor | None = None) -> Tensor:
    """With probability ``p`` per image: each band replaced, with probability ``band_p``, by
    ``fill`` (one value per band, e.g. the data's mean, which normalises to 0; by default the
    image's own band mean). At least one band of every image is kept."""
    if p <= 0 or band_p <= 0 or x.shape[1] < 2:
        return x
    b, c = x.shape[:2]
    device = x.device
    apply = _coin(b, p, g, device)
    drop = (torch.rand(b, c, generator=g, device=device) < band_p) & apply.view(-1, 1)
    keep = torch.randint(0, c, (b,), generator=g, device=device)
    drop[torch.arange(b, device=device), keep] = False  # never every band
    if fill is None:
        value = x.mean(dim=(2, 3), keepdim=True)
    else:
        value = torch.as_tensor(fill, dtype=x.dtype, device=device).view(1, c, 1, 1)
    return torch.where(drop.view(b, c, 1, 1), value, x)


def rotate90_flip(x: Tensor, g: torch.Generator, rotate_p: float = 1.0,
                  vflip_p: float = 0.5) -> Tensor:
    """Overhead imagery has no "up" (the ``aerial`` preset): with probability ``rotate_p`` per
    image a rotation by 90, 180 or 270 degrees (equally likely), then a vertical flip with
    probability ``vflip_p``. With the crop's horizontal flip, all 8 symmetries of the square.
    Square images only (a 90-degree turn of a rectangle changes its shape)."""
    if rotate_p <= 0 and vflip_p <= 0:
        return x
    b, device = x.shape[0], x.device
    if rotate_p > 0 and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"90-degree rotations need square images, got {tuple(x.shape[-2:])}")
    turns = torch.randint(1, 4, (b,), generator=g, device=device)
    turns = torch.where(_coin(b, rotate_p, g, device), turns, torch.zeros_like(turns))
    flip = _coin(b, vflip_p, g, device)
    out = x
    for k in (1, 2, 3):
        out = _select(turns == k, torch.rot90(x, k, dims=(-2, -1)), out)
    return _select(flip, out.flip(-2), out)


def on_bands(x: Tensor, bands: Sequence[int], op: Callable[[Tensor], Tensor]) -> Tensor:
    """``op`` (an RGB op such as hue jitter) applied to the three ``bands`` (e.g. ``[3, 2, 1]``
    for Sentinel-2's red, green, blue; ``augment.rgb_bands``), the other bands unchanged."""
    if len(bands) != 3 or len(set(bands)) != 3:
        raise ValueError(f"rgb bands must be three different band indices, got {list(bands)}")
    index = torch.as_tensor(list(bands), device=x.device)
    out = x.clone()
    out[:, index] = op(x[:, index])
    return out
