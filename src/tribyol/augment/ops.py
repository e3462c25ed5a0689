"""Batched, on-device augmentation with per-sample random parameters drawn from an explicit
``torch.Generator`` (reproducible from seed and step alone). BYOL's recipe; where it differs
from torchvision's per-image transforms: docs/data.md, "Views"."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tribyol.channels import LUMA


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _coin(n: int, p: float, g: torch.Generator, device) -> Tensor:
    return torch.rand(n, generator=g, device=device) < p


def _select(mask: Tensor, changed: Tensor, original: Tensor) -> Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), changed, original)


def random_resized_crop(
    x: Tensor,
    size: int,
    g: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> Tensor:
    """Crop a random box of each image (area fraction in ``scale``) and resize it to ``size``;
    mirror horizontally with probability ``flip_p``. One ``grid_sample`` for the whole batch."""
    b, device = x.shape[0], x.device
    area = _uniform(b, scale[0], scale[1], g, device)
    log_ratio = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), g, device)
    aspect = torch.exp(log_ratio)
    # Box width/height as fractions of the image side (clamped into the image).
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * torch.rand(b, generator=g, device=device) - 1) * (1 - w)
    cy = (2 * torch.rand(b, generator=g, device=device) - 1) * (1 - h)
    flip = torch.where(_coin(b, flip_p, g, device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def grayscale(x: Tensor) -> Tensor:
    """Luma of an RGB batch, ``[B, 1, H, W]``."""
    r, gch, bch = x.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * gch + LUMA[2] * bch).unsqueeze(1)


_YIQ = (LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))  # Y is the luma
_YIQ_CACHE: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}


def _yiq_matrices(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """RGB->YIQ and its inverse on ``device``, built once: a host->device copy or a
    ``linalg.inv`` (which checks for singularity on the host) every call would stall a GPU."""
    key = (device, dtype)
    if key not in _YIQ_CACHE:
        to_yiq = torch.tensor(_YIQ, dtype=torch.float64)
        _YIQ_CACHE[key] = (to_yiq.to(device, dtype), torch.linalg.inv(to_yiq).to(device, dtype))
    return _YIQ_CACHE[key]


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the chroma plane in YIQ by ``2 * pi * shift`` (per sample, shift in [-0.5, 0.5])."""
    to_yiq, from_yiq = _yiq_matrices(x.device, x.dtype)
    angle = 2 * math.pi * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    matrix = from_yiq @ rot @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def color_jitter(
    x: Tensor,
    g: torch.Generator,
    p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> Tensor:
    """With probability ``p`` per image: brightness, contrast, saturation, hue jitter."""
    b, device = x.shape[0], x.device
    apply = _coin(b, p, g, device)
    out = x
    if brightness > 0:
        factor = _uniform(b, max(0.0, 1 - brightness), 1 + brightness, g, device)
        out = (out * factor.view(-1, 1, 1, 1)).clamp(0, 1)
    if contrast > 0:
        factor = _uniform(b, max(0.0, 1 - contrast), 1 + contrast, g, device).view(-1, 1, 1, 1)
        gray = grayscale(out) if out.shape[1] == 3 else out
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * factor + mean).clamp(0, 1)
    if out.shape[1] == 3:
        if saturation > 0:
            factor = _uniform(b, max(0.0, 1 - saturation), 1 + saturation, g, device)
            gray = grayscale(out)
            out = ((out - gray) * factor.view(-1, 1, 1, 1) + gray).clamp(0, 1)
        if hue > 0:
            out = _adjust_hue(out, _uniform(b, -hue, hue, g, device)).clamp(0, 1)
    return _select(apply, out, x)


def random_grayscale(x: Tensor, g: torch.Generator, p: float) -> Tensor:
    if x.shape[1] != 3 or p <= 0:
        return x
    apply = _coin(x.shape[0], p, g, x.device)
    return _select(apply, grayscale(x).expand_as(x), x)


def gaussian_blur(
    x: Tensor,
    g: torch.Generator,
    p: float,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_fraction: float = 0.1,
) -> Tensor:
    """With probability ``p``: a Gaussian blur with sigma ~ U(sigma), kernel ~10 % of the side
    (BYOL's 23 px at 224). Separable, one grouped conv per axis for the whole batch."""
    if p <= 0:
        return x
    b, c, h, w = x.shape
    device = x.device
    apply = _coin(b, p, g, device)
    sig = _uniform(b, sigma[0], sigma[1], g, device)
    size = max(3, int(round(kernel_fraction * h)) // 2 * 2 + 1)
    offsets = torch.arange(size, device=device, dtype=x.dtype) - size // 2
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sig.view(-1, 1).to(x.dtype) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [B, K]
    kernel = kernel.repeat_interleave(c, dim=0)  # [B*C, K]
    flat = x.reshape(1, b * c, h, w)
    pad = size // 2
    flat = F.pad(flat, (pad, pad, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, size), groups=b * c)
    flat = F.pad(flat, (0, 0, pad, pad), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, size, 1), groups=b * c)
    return _select(apply, flat.view(b, c, h, w), x)


def solarize(x: Tensor, g: torch.Generator, p: float, threshold: float = 0.5) -> Tensor:
    if p <= 0:
        return x
    apply = _coin(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= threshold), 1.0 - x, x)
