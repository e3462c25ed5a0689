"""Batched augmentation: per-sample randomness, reproducibility, and what each op does."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tribyol.augment import MultiViewAugment, eval_transform, ops
from tribyol.config import AugmentConfig

RGB_MEAN, RGB_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def images(b: int = 4, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, size, size), generator=gen(seed), dtype=torch.uint8)


def plain_views(**changes: object) -> AugmentConfig:
    """Identity crop, no flip, no colour, blur or solarize; ``changes`` switch ops back on.
    Per-view lists cycle over the views (``extra_views=cycle``), so one entry sets one view."""
    base = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                       grayscale_p=0.0, blur_p=[0.0], solarize_p=[0.0], extra_views="cycle")
    return dataclasses.replace(base, **changes)


# -- the pipeline -------------------------------------------------------------------------------


def test_views_shapes_and_dtype() -> None:
    aug = MultiViewAugment(AugmentConfig(), 24, RGB_MEAN, RGB_STD)
    batch = images(5, 3, 40)
    views = aug(batch, 3, gen())
    assert len(views) == 3
    for v in views:
        assert v.dtype == torch.float32 and tuple(v.shape) == (5, 3, 24, 24)
        assert torch.isfinite(v).all()
    assert batch.dtype == torch.uint8  # the input batch is not touched


def test_identical_images_get_different_views_across_the_batch() -> None:
    aug = MultiViewAugment(AugmentConfig(), 32, RGB_MEAN, RGB_STD)
    batch = images(1, 3, 32).expand(8, -1, -1, -1).contiguous()
    for view in aug(batch, 2, gen()):
        for i, j in itertools.combinations(range(8), 2):
            assert not torch.allclose(view[i], view[j]), (i, j)
    # Two views of one image differ too.
    v0, v1 = aug(batch, 2, gen(1))
    assert all(not torch.allclose(v0[i], v1[i]) for i in range(8))


def test_crops_alone_differ_per_sample() -> None:
    x = torch.linspace(0, 1, 32).expand(6, 1, 32, 32).contiguous()  # a horizontal ramp
    out = ops.random_resized_crop(x, 16, gen(), scale=(0.1, 0.5), flip_p=0.0)
    starts = out[:, 0, 8, 0]
    assert len(set(starts.tolist())) == 6  # every sample starts its crop elsewhere


def test_same_seed_same_views_other_seed_other_views() -> None:
    aug = MultiViewAugment(AugmentConfig(solarize_p=[0.5, 0.5]), 64, RGB_MEAN, RGB_STD)
    batch = images(4, 3, 64)
    first, again, other = aug(batch, 3, gen(7)), aug(batch, 3, gen(7)), aug(batch, 3, gen(8))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not any(torch.allclose(a, b) for a, b in zip(first, other, strict=True))


def test_one_channel_batches_work() -> None:
    aug = MultiViewAugment(AugmentConfig(), 28, (0.3,), (0.3,))
    views = aug(images(4, 1, 28), 3, gen())
    assert [tuple(v.shape) for v in views] == [(4, 1, 28, 28)] * 3
    assert all(torch.isfinite(v).all() for v in views)


def test_blur_off_at_small_sizes_byol_pair_above() -> None:
    cfg = AugmentConfig()
    assert cfg.blur_p is None and cfg.blur_min_size == 32
    assert MultiViewAugment(cfg, 16, RGB_MEAN, RGB_STD).blur_p == [0.0]
    assert MultiViewAugment(cfg, 32, RGB_MEAN, RGB_STD).blur_p == [0.0]
    assert MultiViewAugment(cfg, 33, RGB_MEAN, RGB_STD).blur_p == [1.0, 0.1]
    assert MultiViewAugment(cfg, 224, RGB_MEAN, RGB_STD).blur_p == [1.0, 0.1]
    lowered = AugmentConfig(blur_min_size=8)
    assert MultiViewAugment(lowered, 16, RGB_MEAN, RGB_STD).blur_p == [1.0, 0.1]
    explicit = AugmentConfig(blur_p=[0.3])
    assert MultiViewAugment(explicit, 224, RGB_MEAN, RGB_STD).blur_p == [0.3]
    assert MultiViewAugment(explicit, 16, RGB_MEAN, RGB_STD).blur_p == [0.3]


def test_default_views_at_32px_are_never_blurred() -> None:
    """With blur off, a view with everything else off is the image itself (no blur drawn)."""
    cfg = plain_views(blur_p=None)
    batch = images(4, 3, 32)
    for v in MultiViewAugment(cfg, 32, (0.0,) * 3, (1.0,) * 3)(batch, 4, gen()):
        assert torch.allclose(v, batch.float() / 255, atol=1e-6)


def test_blur_and_solarize_probabilities_cycle_over_views() -> None:
    # blur on even views (period 2); solarize on views 2 and 5 (period 3).
    cfg = plain_views(blur_p=[1.0, 0.0], solarize_p=[0.0, 0.0, 1.0], blur_sigma=(1.5, 2.0))
    aug = MultiViewAugment(cfg, 64, (0.0,) * 3, (1.0,) * 3)  # identity normalisation
    batch = images(3, 3, 64)
    x = batch.float() / 255
    solarized = torch.where(x >= 0.5, 1 - x, x)
    views = aug(batch, 6, gen())
    assert torch.allclose(views[1], x, atol=1e-5)
    assert torch.allclose(views[3], x, atol=1e-5)
    assert torch.allclose(views[5], solarized, atol=1e-5)
    for k in (0, 4):  # blurred only: smoother than the noise image, same mean
        assert views[k].std() < 0.5 * x.std()
        assert torch.allclose(views[k].mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.01)
    # View 2: blurred, then solarized; blurred values sit near 0.5, solarizing folds them.
    assert views[2].std() < 0.5 * x.std() and views[2].max() <= 0.5 + 1e-6


def test_normalisation_uses_mean_and_std() -> None:
    aug = MultiViewAugment(plain_views(), 8, (0.25, 0.5, 0.75), (0.5, 0.25, 0.125))
    batch = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    (v,) = aug(batch, 1, gen())
    assert torch.allclose(v[:, :, 0, 0], torch.tensor([1.5, 2.0, 2.0]).expand(2, 3))


# -- the ops ------------------------------------------------------------------------------------


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


def test_eval_transform_resizes_and_normalises() -> None:
    batch = torch.full((2, 3, 48, 48), 255, dtype=torch.uint8)
    out = eval_transform(batch, 32, RGB_MEAN, RGB_STD)
    assert out.dtype == torch.float32 and tuple(out.shape) == (2, 3, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 2.0), atol=1e-5)


def test_empty_probability_lists_mean_off() -> None:
    aug = MultiViewAugment(plain_views(blur_p=[], solarize_p=[]), 16, (0.0,), (1.0,))
    batch = images(2, 1, 16)
    for v in aug(batch, 3, gen()):
        assert torch.allclose(v, batch.float() / 255, atol=1e-5)


def test_channel_mismatch_with_normalisation_is_an_error() -> None:
    aug = MultiViewAugment(AugmentConfig(), 16, RGB_MEAN, RGB_STD)
    with pytest.raises(ValueError, match="1 channels"):
        aug(images(2, 1, 16), 2, gen())  # would silently broadcast to 3 channels


# -- per-view rates -------------------------------------------------------------------------------

N_RATE = 4000


def within_sampling_error(hits: torch.Tensor, p: float) -> None:
    """The observed rate of ``hits`` is ``p`` to within 4.5 binomial standard errors."""
    rate = hits.float().mean().item()
    tolerance = 4.5 * max((p * (1 - p) / len(hits)) ** 0.5, 1 / len(hits))
    assert abs(rate - p) <= tolerance, (rate, p)


def test_solarize_rate_per_view_matches_its_probability() -> None:
    probs = [0.0, 0.2, 0.7]
    aug = MultiViewAugment(plain_views(solarize_p=probs), 4, (0.0,) * 3, (1.0,) * 3)
    batch = torch.full((N_RATE, 3, 4, 4), 200, dtype=torch.uint8)  # 0.78: solarised to 0.22
    views = aug(batch, 5, gen())
    for k, view in enumerate(views):  # view k uses probs[k % 3]
        within_sampling_error(view.amax(dim=(1, 2, 3)) < 0.5, probs[k % 3])


def test_colour_rates_per_image_match_their_probabilities() -> None:
    cfg = plain_views(jitter_p=0.8, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0,
                      grayscale_p=0.2, flip_p=0.3)
    aug = MultiViewAugment(cfg, 4, (0.0,) * 3, (1.0,) * 3)
    colour = torch.tensor([120, 60, 30], dtype=torch.uint8).view(1, 3, 1, 1)
    batch = colour.expand(N_RATE, 3, 4, 4).clone()
    batch[:, :, :, 0] = 0  # a dark left column: a flip moves it to the right
    (view,) = aug(batch, 1, gen(3))
    x = batch.float() / 255
    grey = (view[:, 0] == view[:, 1]).all(dim=(1, 2)) & (view[:, 1] == view[:, 2]).all(dim=(1, 2))
    within_sampling_error(grey, 0.2)
    flipped = view[:, 0, 0, -1] < view[:, 0, 0, 0]
    within_sampling_error(flipped, 0.3)
    # brightness scales every channel alike: compare the pixel sums to the (mirrored) input
    brightness = (view.sum(dim=(1, 2, 3)) - x.sum(dim=(1, 2, 3))).abs() > 1e-3
    # jitter draws a factor in [0.6, 1.4]; grey images change their sum too, so count jitter
    # among the colour images only
    within_sampling_error(brightness[~grey], 0.8)


# -- the recipe's numbers, as documented (config.AugmentConfig, docs/methods.md, augment.py) ------


def test_recipe_defaults_are_byols() -> None:
    """BYOL's table 6, as AugmentConfig documents it (and docs/methods.md: jitter 0.8, grayscale
    0.2, crops down to 8 %)."""
    cfg = AugmentConfig()
    assert (cfg.jitter_p, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) == (
        0.8, 0.4, 0.4, 0.2, 0.1)
    assert cfg.grayscale_p == 0.2 and cfg.crop_scale == (0.08, 1.0) and cfg.flip_p == 0.5
    assert cfg.blur_sigma == (0.1, 2.0) and cfg.solarize_p == [0.0, 0.2]


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


def _impulse(size: int, n: int = 1) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 2, size // 2] = 1.0
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
    n, side = 2000, 224
    row = ops.gaussian_blur(_impulse(side, n), gen(), 1.0, sigma=(0.1, 2.0))[:, 0, side // 2]
    row = row / row.sum(dim=1, keepdim=True)
    offsets = torch.arange(side, dtype=torch.float32) - side // 2
    sigma = (row * offsets**2).sum(dim=1).sqrt()
    assert sigma.max() <= 2.0 + 1e-3 and sigma.max() > 1.97
    assert sigma.min() < 0.4  # a sigma of 0.1 leaves the impulse nearly whole (std ~0)
    assert abs(float((sigma > 1.05).float().mean()) - 0.5) < 0.05  # half above the midpoint
