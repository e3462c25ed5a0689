"""The dataset registry (``tribyol.data.registry``): its augmentation presets are typed, name
``AugmentConfig`` fields only, and build a valid ``augment:`` section."""

from __future__ import annotations

import dataclasses

import pytest

from tribyol.config import AugmentConfig
from tribyol.config.structured import build_dataclass
from tribyol.data import DATASETS, AugmentPreset


def test_every_preset_field_is_an_augment_config_field() -> None:
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert {f.name for f in dataclasses.fields(AugmentPreset)} <= known


def test_a_misspelt_preset_key_is_refused() -> None:
    with pytest.raises(TypeError, match="flip_prob"):
        AugmentPreset(flip_prob=0.0)  # type: ignore[call-arg]


def test_each_dataset_preset_builds_an_augment_section_with_its_values() -> None:
    for name, spec in DATASETS.items():
        preset = spec.augment.as_dict()
        cfg = build_dataclass(AugmentConfig, preset, "augment")
        for key, value in preset.items():
            got = getattr(cfg, key)
            assert (list(got) if isinstance(value, list) else got) == value, (name, key)


def test_the_presets_are_the_ones_the_datasets_had() -> None:
    digits = {"crop_scale": [0.25, 1.0], "flip_p": 0.0}
    assert {n: s.augment.as_dict() for n, s in DATASETS.items() if s.augment.as_dict()} == {
        "mnist": digits, "kmnist": digits, "usps": digits, "digits": digits,
        "fashionmnist": {"crop_scale": [0.25, 1.0]}, "svhn": {"flip_p": 0.0},
        "ucmerced": {"preset": "aerial", "rotate_p": 0.75, "vflip_p": 0.5}}  # issue 22
