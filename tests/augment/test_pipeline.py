"""``augment.pipeline``: MultiViewAugment's views (shapes, per-sample randomness, reproducibility,
normalisation), the blur / solarize probability of each view (``augment.extra_views``) and the
per-view rates measured on large batches, and eval_transform."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from tests.helpers import gen, within_sampling_error
from tribyol.augment import MultiViewAugment, bands, eval_transform, ops
from tribyol.augment.pipeline import per_view_probabilities
from tribyol.config import DEFAULT_EXTRA_VIEWS, EXTRA_VIEWS, AugmentConfig
from tribyol.errors import ConfigError
from tribyol.resolve import load_config

N = 2000
N_RATE = 4000
RGB_MEAN, RGB_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
IDENTITY = ((0.0,) * 3, (1.0,) * 3)  # normalisation that leaves [0, 1] values as they are

# Intended per-view rates of BYOL's pair (blur 1.0 / 0.1, solarize 0.0 / 0.2) for 3 and 4 views.
SOLARIZE = {
    "cycle": [0.0, 0.2, 0.0, 0.2],
    "byol-pairs": [0.0, 0.2, 0.2, 0.2],
    "uniform": [0.1, 0.1, 0.1, 0.1],
}
BLUR = {
    "cycle": [1.0, 0.1, 1.0, 0.1],
    "byol-pairs": [1.0, 0.1, 0.1, 0.1],
    "uniform": [0.55, 0.55, 0.55, 0.55],
}


def images(b: int = 4, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, size, size), generator=gen(seed), dtype=torch.uint8)


def plain_views(**changes: object) -> AugmentConfig:
    """Identity crop, no flip, no colour, blur or solarize; ``changes`` switch ops back on.
    Per-view lists cycle over the views (``extra_views=cycle``), so one entry sets one view."""
    base = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                       grayscale_p=0.0, blur_p=[0.0], solarize_p=[0.0], extra_views="cycle")
    return dataclasses.replace(base, **changes)


def test_the_default_is_one_constant_byol_pairs() -> None:
    assert DEFAULT_EXTRA_VIEWS in EXTRA_VIEWS
    assert AugmentConfig().extra_views == DEFAULT_EXTRA_VIEWS == "byol-pairs"
    assert load_config().augment.extra_views == DEFAULT_EXTRA_VIEWS


@pytest.mark.parametrize("setting", EXTRA_VIEWS)
def test_two_view_methods_are_unaffected(setting: str) -> None:
    assert per_view_probabilities([1.0, 0.1], 2, setting) == [1.0, 0.1]
    assert per_view_probabilities([0.0, 0.2], 2, setting) == [0.0, 0.2]
    assert per_view_probabilities([0.0, 0.2], 1, setting) == [0.0]


def test_probabilities_for_three_and_more_views() -> None:
    for setting in EXTRA_VIEWS:
        for n in (3, 4, 6):
            got = per_view_probabilities([0.0, 0.2], n, setting)
            want = (SOLARIZE[setting] * 2)[:n] if setting == "cycle" else (
                SOLARIZE[setting] + [SOLARIZE[setting][-1]] * 2)[:n]
            assert got == pytest.approx(want), (setting, n)
    assert per_view_probabilities([1.0, 0.1], 3, "uniform") == pytest.approx([0.55] * 3)
    assert per_view_probabilities([0.3], 3, "byol-pairs") == [0.3] * 3  # one entry: both
    assert per_view_probabilities([], 3, "uniform") == [0.0] * 3  # empty: off
    with pytest.raises(ValueError, match="extra_views"):
        per_view_probabilities([0.0, 0.2], 3, "random")


@pytest.mark.parametrize("setting", EXTRA_VIEWS)
def test_measured_solarize_rates_of_the_cifar10_convnet_views(setting: str) -> None:
    """The whole recipe of a CIFAR-10 run at 32 px (no blur there): solarize rates of four
    views (v, v', v'', v''')."""
    num_views = 4
    cfg = load_config(overrides=[("data.dataset", "cifar10"), ("augment.extra_views", setting),
                                 ("method.num_views", num_views)])
    aug = MultiViewAugment(cfg.augment, 32, *IDENTITY)
    assert aug.probabilities(num_views)[0] == [0.0] * num_views  # blur is off at <= 32 px
    # A flat 250 image: crops, flips, grey and jitter (brightness >= 0.6) keep it >= 0.58, so a
    # view is solarized exactly when its brightest pixel is below 0.5.
    batch = torch.full((N, 3, 32, 32), 250, dtype=torch.uint8)
    views = aug(batch, num_views, gen())
    rates = [within_sampling_error(v.amax(dim=(1, 2, 3)) < 0.5, p)
             for v, p in zip(views, SOLARIZE[setting], strict=False)]
    assert len(rates) == num_views
    if setting == "cycle":  # v'' copies v: never solarized (the 0.000 / 0.2 / 0.000)
        assert rates[0] == rates[2] == 0.0 and 0.17 < rates[1] < 0.23


@pytest.mark.parametrize("setting", EXTRA_VIEWS)
def test_measured_blur_rates_above_the_blur_size(setting: str) -> None:
    """Above blur_min_size blur is on with BYOL's pair (1.0, 0.1) (16 px above 8 px here, to
    keep the test fast); a blurred checkerboard loses most of its contrast."""
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                      grayscale_p=0.0, solarize_p=[0.0], blur_sigma=(1.0, 2.0), blur_min_size=8,
                      extra_views=setting)
    aug = MultiViewAugment(cfg, 16, *IDENTITY)
    assert aug.blur_p == [1.0, 0.1]
    board = (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2
    batch = (200 + 55 * board).to(torch.uint8).expand(N, 3, 16, 16).contiguous()
    views = aug(batch, 4, gen(1))
    for view, p in zip(views, BLUR[setting], strict=True):
        within_sampling_error(view.std(dim=(1, 2, 3)) < 0.05, p)  # unblurred 0.108, blurred < 0.035


def test_a_bad_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="byol-pairs"):
        load_config(overrides=["augment.extra_views=byol-pair"])
    with pytest.raises(ConfigError, match="extra_views=cycle"):
        load_config(overrides=["augment.extra_views=uniform", "augment.solarize_p=[0.0, 0.2, 0.5]"])
    with pytest.raises(ConfigError, match="extra_views=cycle"):  # the default, byol-pairs, too
        load_config(overrides=["augment.solarize_p=[0.0, 0.2, 0.5]"])
    cycled = load_config(overrides=["augment.extra_views=cycle", "augment.solarize_p=[0.0, 0.2, 0.5]"])
    assert cycled.augment.solarize_p[2] == 0.5


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


def test_recipe_defaults_are_byols() -> None:
    """BYOL's table 6, as AugmentConfig documents it (and docs/methods.md: jitter 0.8, grayscale
    0.2, crops down to 8 %)."""
    cfg = AugmentConfig()
    assert (cfg.jitter_p, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) == (
        0.8, 0.4, 0.4, 0.2, 0.1)
    assert cfg.grayscale_p == 0.2 and cfg.crop_scale == (0.08, 1.0) and cfg.flip_p == 0.5
    assert cfg.blur_sigma == (0.1, 2.0) and cfg.solarize_p == [0.0, 0.2]


# -- N bands (issue 22; docs/data.md, "Augmentation for N bands") ---------------------------------

RGB_OPS = ("color_jitter", "random_grayscale", "solarize", "_adjust_hue", "grayscale")


def head_recipe_views(aug: MultiViewAugment, images_u8: torch.Tensor, num_views: int,
                      g: torch.Generator) -> list[torch.Tensor]:
    """The views as the pipeline made them before N bands (HEAD of issue 21): the uint8 batch
    divided by 255 in place, then crop, colour jitter, grayscale, blur, solarize, normalise."""
    c = aug.cfg
    x = images_u8.float().div_(255.0)
    blur, solarize = aug.probabilities(num_views)
    out = []
    for k in range(num_views):
        v = ops.random_resized_crop(x, aug.image_size, g, c.crop_scale, c.crop_ratio, c.flip_p)
        v = ops.color_jitter(v, g, c.jitter_p, c.brightness, c.contrast, c.saturation, c.hue)
        v = ops.random_grayscale(v, g, c.grayscale_p)
        v = ops.solarize(ops.gaussian_blur(v, g, blur[k], c.blur_sigma), g, solarize[k])
        out.append((v - aug.mean) / aug.std)
    return out


@pytest.mark.parametrize(("channels", "size", "changes"), [
    (3, 32, {}), (1, 28, {"crop_scale": (0.25, 1.0), "flip_p": 0.0}),
    (3, 64, {"solarize_p": [0.3, 0.6]}), (3, 48, {"extra_views": "uniform"})])
def test_uint8_views_are_bit_identical_to_the_rgb_recipe(channels: int, size: int,
                                                         changes: dict) -> None:
    """The uint8 path (CIFAR, MNIST, JPEG folders) draws and computes exactly what it did:
    the same bits for the same seed (checked against HEAD's own module when this was written)."""
    mean, std = (0.49, 0.48, 0.45)[:channels], (0.25, 0.24, 0.26)[:channels]
    aug = MultiViewAugment(dataclasses.replace(AugmentConfig(), **changes), size, mean, std)
    batch = images(16, channels, size + 8, seed=11)
    got = aug(batch, 3, gen(123))
    want = head_recipe_views(aug, batch, 3, gen(123))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert torch.equal(eval_transform(batch, size, mean, std),
                       eval_transform(batch.float() / 255, size, mean, std, scale=1.0))


def multispectral(b: int = 512, c: int = 13, size: int = 16) -> torch.Tensor:
    """uint16 tiles, one value per image and band, band k in [0, 1000 (k + 1)]: bands in very
    different units, as Sentinel-2's are."""
    top = 1000.0 * torch.arange(1, c + 1).view(1, c, 1, 1)
    values = torch.rand(b, c, 1, 1, generator=gen(5)) * top
    return values.expand(b, c, size, size).round().to(torch.int32).to(torch.uint16)


def data_stats(batch: torch.Tensor, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = bands.to_float(batch, scale)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def test_thirteen_band_uint16_views_have_the_shape_and_normalised_stats() -> None:
    batch = multispectral()
    mean, std = data_stats(batch, 10000.0)
    aug = MultiViewAugment(AugmentConfig(), 16, mean, std, scale=10000.0)
    assert not aug.uses_rgb_ops(batch)
    views = aug(batch, 3, gen())
    for v in views:
        assert v.dtype == torch.float32 and tuple(v.shape) == (512, 13, 16, 16)
        assert torch.isfinite(v).all()
        # every band normalised by its own statistics (band 12 is 13x band 0 in raw units);
        # the jitter of +-20 % widens each a little, drop-out fills with the mean (0)
        per_band_mean, per_band_std = v.mean(dim=(0, 2, 3)), v.std(dim=(0, 2, 3))
        assert per_band_mean.abs().max() < 0.15, per_band_mean
        assert per_band_std.min() > 0.8 and per_band_std.max() < 1.3, per_band_std
    assert not torch.equal(views[0], views[1])


def test_crop_flip_and_blur_work_on_thirteen_bands() -> None:
    """Crop, flip and blur treat every band alike: a batch whose 13 bands are one image
    gives 13 equal bands (the colour and band ops off)."""
    one = images(6, 1, 40, seed=2).to(torch.uint16) * 100
    batch = one.expand(6, 13, 40, 40).contiguous()
    cfg = dataclasses.replace(plain_views(crop_scale=(0.2, 1.0), flip_p=0.5, blur_p=[1.0]),
                              band_jitter_p=0.0, noise_p=0.0, band_drop_p=0.0)
    aug = MultiViewAugment(cfg, 33, (0.0,) * 13, (1.0,) * 13)
    (view,) = aug(batch, 1, gen())
    assert tuple(view.shape) == (6, 13, 33, 33)
    assert all(torch.equal(view[:, k], view[:, 0]) for k in range(13))
    single = MultiViewAugment(cfg, 33, (0.0,), (1.0,))(one, 1, gen())[0]
    torch.testing.assert_close(view[:, :1], single)  # the same draws as the 1-band batch


@pytest.mark.parametrize(("channels", "dtype"), [
    (13, torch.uint16), (4, torch.uint8), (1, torch.float32), (3, torch.uint16), (2, torch.int16)])
def test_no_rgb_op_touches_n_band_data(channels: int, dtype: torch.dtype,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an RGB op ran on N-band data")

    for name in RGB_OPS:
        monkeypatch.setattr(ops, name, refuse)
    batch = (torch.rand(8, channels, 24, 24, generator=gen()) * 100).to(dtype)
    aug = MultiViewAugment(AugmentConfig(solarize_p=[1.0, 1.0]), 24, (50.0,) * channels,
                           (30.0,) * channels)
    assert all(torch.isfinite(v).all() for v in aug(batch, 3, gen()))
    with pytest.raises(AssertionError, match="RGB op"):  # the patch is live: 8-bit RGB uses them
        MultiViewAugment(AugmentConfig(), 24, RGB_MEAN, RGB_STD)(images(2, 3, 24), 2, gen())


def test_rgb_bands_get_the_colour_ops_and_the_other_bands_do_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    jitter = ops.color_jitter

    def recording(x: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(x.clone())
        return jitter(x, *args)

    monkeypatch.setattr(ops, "color_jitter", recording)
    batch = multispectral(8, 13, 8)
    x = bands.to_float(batch, 10000.0, (0.0, 1.0))
    cfg = dataclasses.replace(plain_views(jitter_p=1.0, hue=0.5), rgb_bands=[3, 2, 1],
                              band_jitter_p=0.0, noise_p=0.0, band_drop_p=0.0)
    aug = MultiViewAugment(cfg, 8, (0.0,) * 13, (1.0,) * 13, scale=10000.0, value_range=(0, 1))
    (view,) = aug(batch, 1, gen())
    assert len(seen) == 1 and torch.allclose(seen[0], x[:, [3, 2, 1]], atol=1e-6)  # in that order
    others = [k for k in range(13) if k not in (1, 2, 3)]
    torch.testing.assert_close(view[:, others], x[:, others], atol=1e-5, rtol=0)
    changed = (view[:, [1, 2, 3]] - x[:, [1, 2, 3]]).abs().amax(dim=(2, 3))
    assert (changed > 1e-3).all()  # each of the three bands of every image jittered


def test_band_ops_only_run_on_the_bands_recipe() -> None:
    """auto: 8-bit 1- or 3-band data get BYOL's colour ops, everything else the band ops;
    recipe and rgb_bands override it."""
    u8, u16 = images(2, 3, 8), images(2, 3, 8).to(torch.uint16)
    auto = MultiViewAugment(AugmentConfig(), 8, RGB_MEAN, RGB_STD)
    assert auto.uses_rgb_ops(u8) and auto.uses_rgb_ops(images(2, 1, 8))
    assert not auto.uses_rgb_ops(u16) and not auto.uses_rgb_ops(u8.float())
    assert not MultiViewAugment(AugmentConfig(), 8, RGB_MEAN, RGB_STD, scale=1.0).uses_rgb_ops(u8)
    forced = MultiViewAugment(AugmentConfig(recipe="rgb"), 8, RGB_MEAN, RGB_STD, scale=65535.0)
    assert forced.uses_rgb_ops(u16)
    assert not MultiViewAugment(AugmentConfig(recipe="bands"), 8, RGB_MEAN, RGB_STD).uses_rgb_ops(u8)
    named = MultiViewAugment(AugmentConfig(rgb_bands=[2, 1, 0]), 8, RGB_MEAN, RGB_STD)
    assert not named.uses_rgb_ops(u8)


def test_bands_the_data_lacks_are_one_config_error() -> None:
    with pytest.raises(ConfigError, match=r"rgb_bands \[3, 2, 13\] names band 13, but the data "
                                          r"has 13 band\(s\)") as info:
        MultiViewAugment(AugmentConfig(rgb_bands=[3, 2, 13]), 16, (0.0,) * 13, (1.0,) * 13)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="recipe=rgb runs RGB colour ops, but the data has 13"):
        MultiViewAugment(AugmentConfig(recipe="rgb"), 16, (0.0,) * 13, (1.0,) * 13)


def test_the_aerial_views_turn_and_flip_every_band_alike() -> None:
    """rotate_p / vflip_p (the aerial preset): every view is one of the square's 8 symmetries of
    the image, the same one for all its bands, and all 8 occur."""
    base = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(256, 3, 8, 8).contiguous()
    cfg = dataclasses.replace(plain_views(flip_p=0.5), rotate_p=0.75, vflip_p=0.5)
    (view,) = MultiViewAugment(cfg, 8, (0.0,) * 3, (1.0,) * 3)(base, 1, gen())
    x = base[0, 0].float() / 255
    symmetries = [torch.rot90(m, k) for k in range(4) for m in (x, x.flip(-1))]
    found = []
    for v in view:
        assert torch.equal(v[0], v[1]) and torch.equal(v[1], v[2])
        found.append(next(i for i, s in enumerate(symmetries) if torch.allclose(v[0], s, atol=1e-5)))
    counts = torch.bincount(torch.tensor(found), minlength=8)
    assert (counts > 10).all(), counts  # ~32 each


def test_ucmerced_resolves_to_the_aerial_views() -> None:
    cfg = load_config(overrides=["data.dataset=ucmerced"])
    assert (cfg.augment.preset, cfg.augment.rotate_p, cfg.augment.vflip_p) == ("aerial", 0.75, 0.5)
    assert load_config(overrides=["data.dataset=cifar10"]).augment.rotate_p == 0.0


def test_eval_transform_scales_and_clips_n_bands() -> None:
    batch = multispectral(4, 13, 8)
    out = eval_transform(batch, 8, (0.0,) * 13, (1.0,) * 13, scale=10000.0, value_range=(0, 0.5))
    torch.testing.assert_close(out, (batch.float() / 10000).clamp(0, 0.5))
