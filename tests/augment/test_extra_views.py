"""``augment.extra_views``: the blur / solarize probability of each view, measured on large batches."""

from __future__ import annotations

import pytest
import torch

from tribyol.augment import MultiViewAugment
from tribyol.augment.pipeline import per_view_probabilities
from tribyol.config import DEFAULT_EXTRA_VIEWS, EXTRA_VIEWS, AugmentConfig
from tribyol.errors import ConfigError
from tribyol.resolve import load_config

N = 2000
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


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within_sampling_error(hits: torch.Tensor, p: float) -> float:
    """The observed rate is ``p`` to within 4.5 binomial standard errors; returns the rate."""
    rate = hits.float().mean().item()
    tolerance = 4.5 * max((p * (1 - p) / len(hits)) ** 0.5, 1 / len(hits))
    assert abs(rate - p) <= tolerance, (rate, p)
    return rate


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
                                 ("method.views", num_views)])
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
