"""``config.augment``: the augment section's N-band options, their rules, and the named presets
(``augment.preset``) as ``load_config`` resolves them, under the user's own keys."""

from __future__ import annotations

import dataclasses

import pytest

from tribyol.config import AugmentConfig
from tribyol.config.augment import AUGMENT_PRESETS
from tribyol.data.registry import AUGMENT_PRESETS as PRESET_VALUES
from tribyol.errors import ConfigError
from tribyol.resolve import load_config


def test_the_preset_names_are_the_registrys() -> None:
    assert tuple(PRESET_VALUES) == AUGMENT_PRESETS
    assert all(p.preset == name for name, p in PRESET_VALUES.items())


@pytest.mark.parametrize(("name", "values"), [
    ("aerial", {"rotate_p": 0.75, "vflip_p": 0.5, "recipe": "auto"}),
    ("multispectral", {"rotate_p": 0.75, "vflip_p": 0.5, "recipe": "bands"}),
    ("grayscale16", {"rotate_p": 0.0, "recipe": "bands", "band_drop_p": 0.0})])
def test_each_preset_resolves_to_its_values(name: str, values: dict) -> None:
    cfg = load_config(overrides=[f"augment.preset={name}"]).augment
    assert cfg.preset == name
    assert {k: getattr(cfg, k) for k in values} == values


def test_the_users_keys_win_over_the_preset_and_the_preset_over_the_datasets() -> None:
    cfg = load_config(overrides=["augment.preset=aerial", "augment.rotate_p=0.5"]).augment
    assert (cfg.rotate_p, cfg.vflip_p) == (0.5, 0.5)
    ucmerced = load_config(overrides=["data.dataset=ucmerced"]).augment
    assert (ucmerced.preset, ucmerced.rotate_p, ucmerced.recipe) == ("aerial", 0.75, "auto")
    other = load_config(overrides=["data.dataset=ucmerced", "augment.preset=grayscale16"]).augment
    assert (other.preset, other.recipe) == ("grayscale16", "bands")
    off = load_config(overrides=["data.dataset=ucmerced", "augment.rotate_p=0",
                                 "augment.vflip_p=0"]).augment
    assert (off.rotate_p, off.vflip_p) == (0.0, 0.0)
    digits = load_config(overrides=["data.dataset=mnist", "augment.preset=aerial"]).augment
    assert (digits.flip_p, digits.rotate_p) == (0.0, 0.75)  # the dataset's own keys stay


def test_a_config_file_can_name_a_preset(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("augment:\n  preset: multispectral\n  rgb_bands: [3, 2, 1]\n")
    cfg = load_config(path).augment
    assert (cfg.recipe, cfg.rgb_bands) == ("bands", [3, 2, 1])


@pytest.mark.parametrize(("override", "match"), [
    ("augment.preset=areal", r"augment.preset must be one of aerial, multispectral, grayscale16, "
                             r"got 'areal'.*Did you mean 'aerial'"),
    ("augment.recipe=hsv", "augment.recipe must be one of auto, rgb, bands"),
    ("augment.rgb_bands=[3, 2]", r"rgb_bands must be three different band indices .*got \[3, 2\]"),
    ("augment.rgb_bands=[1, 1, 2]", "rgb_bands must be three different"),
    ("augment.rgb_bands=[-1, 0, 1]", "rgb_bands must all be >= 0"),
    ("augment.noise_p=1.5", "augment.noise_p must be in"),
    ("augment.band_brightness=2", "augment.band_brightness must be in"),
])
def test_bad_values_are_one_config_error(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(overrides=[override])
    assert "\n" not in str(info.value)


def test_rgb_bands_with_the_rgb_recipe_is_refused() -> None:
    with pytest.raises(ConfigError, match="augment.recipe=rgb runs them on every band"):
        load_config(overrides=["augment.recipe=rgb", "augment.rgb_bands=[2, 1, 0]"])


def test_geometric_only_turns_every_colour_and_band_op_off() -> None:
    cfg = dataclasses.replace(AugmentConfig(), rotate_p=0.75, vflip_p=0.5, crop_scale=(0.2, 1.0))
    plain = cfg.geometric_only()
    assert (plain.jitter_p, plain.grayscale_p, plain.blur_p, plain.solarize_p) == (0, 0, [0], [0])
    assert (plain.band_jitter_p, plain.noise_p, plain.band_drop_p) == (0, 0, 0)
    assert (plain.rotate_p, plain.vflip_p, plain.crop_scale, plain.flip_p) == (0.75, 0.5, (0.2, 1.0), 0.5)
