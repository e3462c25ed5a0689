"""``augment.ops``: what each batched op does, per sample, and the ranges its strengths draw."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import gen
from tribyol.augment import ops


def test_crops_alone_differ_per_sample() -> None:
    x = torch.linspace(0, 1, 32).expand(6, 1, 32, 32).contiguous()  # a horizontal ramp
    out = ops.random_resized_crop(x, 16, gen(), scale=(0.1, 0.5), flip_p=0.0)
    starts = out[:, 0, 8, 0]
    assert len(set(starts.tolist())) == 6  # every sample starts its crop elsewhere


def test_full_crop_without_flip_is_the_identity() -> None:
    x = torch.rand(3, 3, 20, 20, generator=gen())
    out = ops.random_resized_crop(x, 20, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                      flip_p=0.0)
    assert torch.allclose(out, x, atol=1e-5)
    bigger = ops.random_resized_crop(x, 40, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                         flip_p=0.0)
    expected = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    assert torch.allclose(bigger[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)


def test_flip_mirrors_horizontally() -> None:
    x = torch.rand(3, 2, 16, 16, generator=gen())
    out = ops.random_resized_crop(x, 16, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                      flip_p=1.0)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_crop_area_follows_scale() -> None:
    ramp = torch.linspace(0, 1, 64).expand(16, 1, 64, 64).contiguous()
    out = ops.random_resized_crop(ramp, 32, gen(), scale=(0.25, 0.25), ratio=(1.0, 1.0),
                                      flip_p=0.0)
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # 0.25 of the area: half the width
    assert torch.allclose(span, torch.full_like(span, 0.5), atol=0.03)
    assert out.min() >= 0 and out.max() <= 1  # the box stays inside the image


def test_solarize_inverts_at_and_above_the_threshold() -> None:
    x = torch.tensor([0.0, 0.2, 0.49, 0.5, 0.7, 1.0]).view(1, 1, 1, 6)
    out = ops.solarize(x, gen(), p=1.0, threshold=0.5)
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.2, 0.49, 0.5, 0.3, 0.0]))
    assert torch.equal(ops.solarize(x, gen(), p=0.0), x)


def test_blur_keeps_a_constant_image_and_smooths_noise() -> None:
    const = torch.full((4, 3, 64, 64), 0.37)
    assert torch.allclose(ops.gaussian_blur(const, gen(), p=1.0), const, atol=1e-6)
    noise = torch.rand(4, 3, 64, 64, generator=gen())
    blurred = ops.gaussian_blur(noise, gen(), p=1.0, sigma=(1.5, 2.0))
    assert blurred.shape == noise.shape
    assert blurred.std() < 0.5 * noise.std()
    assert torch.allclose(blurred.mean(dim=(2, 3)), noise.mean(dim=(2, 3)), atol=0.01)
    assert torch.equal(ops.gaussian_blur(noise, gen(), p=0.0), noise)


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_ops_stay_in_unit_range(channels: int) -> None:
    x = torch.rand(16, channels, 8, 8, generator=gen())
    out = ops.color_jitter(x, gen(), 1.0, brightness=0.9, contrast=0.9, saturation=0.9,
                               hue=0.5)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    assert torch.equal(ops.color_jitter(x, gen(), 0.0, 0.9, 0.9, 0.9, 0.5), x)
    gray = ops.random_grayscale(x, gen(), 1.0)
    assert gray.shape == x.shape and gray.min() >= 0 and gray.max() <= 1


def test_one_channel_skips_saturation_hue_and_grayscale() -> None:
    x = torch.rand(8, 1, 8, 8, generator=gen())
    only_colour = ops.color_jitter(x, gen(), 1.0, brightness=0.0, contrast=0.0,
                                       saturation=0.8, hue=0.5)
    assert torch.equal(only_colour, x)
    assert torch.equal(ops.random_grayscale(x, gen(), 1.0), x)


def test_grayscale_makes_channels_equal() -> None:
    x = torch.rand(4, 3, 8, 8, generator=gen())
    out = ops.random_grayscale(x, gen(), 1.0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(out[:, 0], luma, atol=1e-6)


def test_hue_keeps_greys_and_luma() -> None:
    grey = torch.rand(4, 1, 8, 8, generator=gen()).expand(4, 3, 8, 8)
    out = ops.color_jitter(grey, gen(), 1.0, 0.0, 0.0, 0.0, hue=0.5)
    assert torch.allclose(out, grey, atol=1e-5)
    # Low-chroma colours never leave [0, 1] when turned, so no clamping: the YIQ rotation
    # must change the colour but keep its luma.
    x = 0.5 + 0.1 * (torch.rand(8, 3, 8, 8, generator=gen(1)) - 0.5)
    turned = ops.color_jitter(x, gen(), 1.0, 0.0, 0.0, 0.0, hue=0.5)
    assert all(not torch.allclose(turned[i], x[i], atol=1e-3) for i in range(8))
    assert torch.allclose(ops.grayscale(turned), ops.grayscale(x), atol=1e-5)


def test_contrast_and_saturation_keep_a_flat_grey_image() -> None:
    flat = torch.full((4, 3, 8, 8), 0.4)
    out = ops.color_jitter(flat, gen(), 1.0, 0.0, contrast=0.9, saturation=0.9, hue=0.0)
    assert torch.allclose(out, flat, atol=1e-6)


N = 4000  # samples per strength check: the extremes land within 0.1 % of each end


def _drawn(factors: torch.Tensor, low: float, high: float) -> None:
    """Every factor in [low, high], and the draws reach both ends (a uniform over the range)."""
    assert factors.min() >= low - 1e-5 and factors.max() <= high + 1e-5, (factors.min(), factors.max())
    span = high - low
    assert factors.min() < low + 0.01 * span and factors.max() > high - 0.01 * span
    assert abs(factors.mean() - (low + high) / 2) < 0.02 * span


def test_jitter_strengths_are_the_ranges_drawn() -> None:
    """Each strength s draws a factor from [1 - s, 1 + s] (hue: a turn in [-s, s]); measured on
    images where the op alone is visible, with the other ops off."""
    def jitter(x, **strength):
        s = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, **strength}
        return ops.color_jitter(x, gen(), 1.0, **s)

    gray = torch.full((N, 3, 2, 2), 0.5)
    _drawn(jitter(gray, brightness=0.4)[:, 0, 0, 0] / 0.5, 0.6, 1.4)
    halves = torch.full((N, 3, 2, 2), 0.25)
    halves[:, :, 1] = 0.75  # mean 0.5, gray: contrast scales the distance from it
    _drawn((jitter(halves, contrast=0.4)[:, 0, 1, 0] - 0.5) / 0.25, 0.6, 1.4)
    colour = torch.tensor([0.6, 0.4, 0.5]).view(1, 3, 1, 1).expand(N, 3, 2, 2).contiguous()
    luma = ops.grayscale(colour)
    out = jitter(colour, saturation=0.2)
    _drawn(((out - ops.grayscale(out))[:, 0] / (colour - luma)[:, 0]).flatten(0)[::4], 0.8, 1.2)
    to_yiq, _ = ops._yiq_matrices(torch.device("cpu"), torch.float32)
    before = torch.einsum("ij,bjhw->bihw", to_yiq, colour)[:, :, 0, 0]
    after = torch.einsum("ij,bjhw->bihw", to_yiq, jitter(colour, hue=0.1))[:, :, 0, 0]
    torch.testing.assert_close(after[:, 0], before[:, 0])  # the luma stays
    turn = (torch.atan2(after[:, 2], after[:, 1]) - torch.atan2(before[:, 2], before[:, 1]))
    _drawn(torch.remainder(turn + math.pi, 2 * math.pi) / (2 * math.pi) - 0.5, -0.1, 0.1)


def _impulse(size: int, n: int = 1, width: int | None = None) -> torch.Tensor:
    """``n`` images ``size`` high (the kernel follows the height), ``width`` wide (default: square),
    each 0 but for a 1 at its centre."""
    width = size if width is None else width
    x = torch.zeros(n, 1, size, width)
    x[:, :, size // 2, width // 2] = 1.0
    return x


@pytest.mark.parametrize(("side", "kernel"), [(224, 23), (96, 11), (64, 7), (32, 3), (16, 3)])
def test_blur_kernel_is_a_tenth_of_the_side(side, kernel) -> None:
    """augment.gaussian_blur: a kernel of ~10 % of the side, odd, at least 3 (BYOL's 23 px at
    224): an impulse spreads over exactly ``kernel`` pixels per axis, and no farther."""
    row = ops.gaussian_blur(_impulse(side), gen(), 1.0, sigma=(2.0, 2.0))[0, 0, side // 2]
    reach = kernel // 2
    centre = side // 2
    assert (row[centre - reach:centre + reach + 1] > 0).all()
    assert row[:centre - reach].abs().max() == 0 and row[centre + reach + 1:].abs().max() == 0


def test_blur_sigma_is_drawn_from_its_range() -> None:
    """sigma ~ U(0.1, 2.0) per image: the spread of each blurred impulse (its std, which for a
    kernel of 23 px is sigma itself up to truncation) covers the range and never leaves it."""
    # 224 px high for the 23 px kernel, but 32 px wide: the kernel's reach (11 px) fits either
    # side of the centre, and the blur costs a seventh of a square image's.
    n, side, width = 2000, 224, 32
    row = ops.gaussian_blur(_impulse(side, n, width), gen(), 1.0, sigma=(0.1, 2.0))[:, 0, side // 2]
    row = row / row.sum(dim=1, keepdim=True)
    offsets = torch.arange(width, dtype=torch.float32) - width // 2
    sigma = (row * offsets**2).sum(dim=1).sqrt()
    assert sigma.max() <= 2.0 + 1e-3 and sigma.max() > 1.97
    assert sigma.min() < 0.4  # a sigma of 0.1 leaves the impulse nearly whole (std ~0)
    assert abs(float((sigma > 1.05).float().mean()) - 0.5) < 0.05  # half above the midpoint
