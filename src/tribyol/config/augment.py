"""The ``augment`` section: BYOL's recipe, the band-safe ops for N-band data, the named presets.

Which ops run for which data is docs/data.md's "Augmentation for N bands"; the ops themselves
are ``tribyol.augment.ops`` (RGB, pixels in [0, 1]) and ``tribyol.augment.bands`` (any bands,
any units). The presets' values live with the dataset presets (``tribyol.data.registry``),
which a test keeps in step with ``AUGMENT_PRESETS`` here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tribyol.config.fields import at_least, non_negative, option, within
from tribyol.errors import ConfigError

PROBABILITY = within(0, 1, "[]")

# How a method with three or more views sets the blur / solarize probabilities of the views past
# BYOL's pair (docs/methods.md, "The third view"): "cycle" (the per-view lists cycled, so v''
# copies v), "byol-pairs" (every view past v drawn like v', so each pair with the anchor v is
# BYOL's asymmetric pair), "uniform" (every view from one distribution, the mean of BYOL's pair).
# Two-view methods always get BYOL's pair. The default is this one constant: byol-pairs led the
# CPU ablation on its test carve; on a validation carve no third view is told apart, and it stays
# by the rule of configs/grids/third_view_validation.yaml (RESULTS.md A1; docs/methods.md why).
EXTRA_VIEWS = ("cycle", "byol-pairs", "uniform")
DEFAULT_EXTRA_VIEWS = "byol-pairs"

# The colour ops: "rgb" is BYOL's (colour jitter, grayscale, solarize: pixels in [0, 1], clamped
# there), "bands" the band-safe ones (per-band jitter, noise, band drop-out: any bands, any units),
# "auto" rgb for 8-bit data of 1 or 3 bands at the default scale, bands for everything else.
RECIPES = ("auto", "rgb", "bands")
# The named presets (augment.preset); their values: tribyol.data.registry.AUGMENT_PRESETS.
AUGMENT_PRESETS = ("aerial", "multispectral", "grayscale16")


@dataclass
class AugmentConfig:
    """Batched augmentation; defaults follow BYOL's recipe (Grill et al. 2020, table 6)."""

    crop_scale: tuple[float, float] = option((0.08, 1.0), "random resized crop: area range")
    crop_ratio: tuple[float, float] = option((3 / 4, 4 / 3), "random resized crop: aspect range")
    flip_p: float = option(0.5, "horizontal flip probability", rule=PROBABILITY)
    jitter_p: float = option(0.8, "colour jitter probability", rule=PROBABILITY)
    brightness: float = option(0.4, "colour jitter: brightness strength", rule=non_negative())
    contrast: float = option(0.4, "colour jitter: contrast strength", rule=non_negative())
    saturation: float = option(0.2, "colour jitter: saturation strength", rule=non_negative())
    hue: float = option(0.1, "colour jitter: hue strength", rule=within(0, 0.5, "[]"))
    grayscale_p: float = option(0.2, "grayscale probability", rule=PROBABILITY)
    blur_p: list[float] | None = option(
        None, "per-view blur probabilities (BYOL's asymmetric pair)", rule=PROBABILITY,
        default_text="BYOL's [1.0, 0.1] above blur_min_size px, none at or below it")
    blur_min_size: int = option(32, "views of at most this size are not blurred by default",
                                rule=at_least(0))
    blur_sigma: tuple[float, float] = option((0.1, 2.0), "Gaussian blur: sigma range")
    solarize_p: list[float] = option(help="per-view solarization probabilities", rule=PROBABILITY,
                                     default_factory=lambda: [0.0, 0.2])
    extra_views: str = option(DEFAULT_EXTRA_VIEWS, "how the views past BYOL's pair are augmented",
                             choices=EXTRA_VIEWS)
    # N bands (docs/data.md, "Augmentation for N bands").
    preset: str | None = option(None, "a named preset under your own augment keys: aerial, "
                                      "multispectral or grayscale16", choices=AUGMENT_PRESETS,
                                default_text="none (the dataset's own, if any)")
    recipe: str = option("auto", "the colour ops: rgb (BYOL's colour jitter, grayscale, "
                                 "solarize), bands (per-band jitter, noise, band drop-out) or auto "
                                 "(rgb for 8-bit 1- or 3-band data, bands otherwise)",
                         choices=RECIPES)
    rgb_bands: list[int] | None = option(
        None, "bands recipe: the three bands [r, g, b] the RGB colour ops also run on, e.g. "
              "[3, 2, 1] for Sentinel-2 (pixels in [0, 1]: they clamp there)", rule=at_least(0),
        default_text="none")
    band_jitter_p: float = option(0.8, "bands: per-band brightness/contrast jitter probability",
                                  rule=PROBABILITY)
    band_brightness: float = option(0.2, "bands: relative brightness strength, per band",
                                    rule=within(0, 1, "[]"))
    band_contrast: float = option(0.2, "bands: relative contrast strength, per band",
                                  rule=within(0, 1, "[]"))
    noise_p: float = option(0.5, "bands: Gaussian noise probability", rule=PROBABILITY)
    noise_std: float = option(0.1, "bands: the noise's largest std, relative to each band's",
                              rule=non_negative())
    band_drop_p: float = option(0.2, "bands: probability that an image drops bands",
                                rule=PROBABILITY)
    band_drop_band_p: float = option(0.2, "bands: each band's drop probability (filled with the "
                                          "data mean; one band is always kept)", rule=PROBABILITY)
    rotate_p: float = option(0.0, "90/180/270-degree rotation probability (aerial: 0.75)",
                             rule=PROBABILITY)
    vflip_p: float = option(0.0, "vertical flip probability (aerial: 0.5)", rule=PROBABILITY)

    def geometric_only(self) -> AugmentConfig:
        """Crop, flips and rotations as configured (dataset presets included), every colour,
        band, blur and solarize op off: the standard supervised augmentation."""
        return dataclasses.replace(self, jitter_p=0.0, grayscale_p=0.0, blur_p=[0.0],
                                   solarize_p=[0.0], band_jitter_p=0.0, noise_p=0.0,
                                   band_drop_p=0.0)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_augment(v: AugmentConfig) -> None:
    """The checks that relate two values of the section (each value's own rule: its field)."""
    # [low, high] pairs (OmegaConf holds them to two numbers)
    _require(0 < v.crop_scale[0] <= v.crop_scale[1] <= 1,
             f"augment.crop_scale must be [a, b] with 0 < a <= b <= 1, got {list(v.crop_scale)}")
    _require(0 < v.crop_ratio[0] <= v.crop_ratio[1],
             f"augment.crop_ratio must be [a, b] with 0 < a <= b, got {list(v.crop_ratio)}")
    _require(0 < v.blur_sigma[0] <= v.blur_sigma[1],
             f"augment.blur_sigma must be [a, b] with 0 < a <= b, got {list(v.blur_sigma)}")
    for name in ("blur_p", "solarize_p"):
        _require(v.extra_views == "cycle" or len(getattr(v, name) or []) <= 2,
                 f"augment.{name} with more than two entries sets each view itself, which needs "
                 f"augment.extra_views=cycle (got {v.extra_views}); or give BYOL's pair [p_v, p_v']")
    if v.rgb_bands is not None:
        bands = list(v.rgb_bands)
        _require(len(bands) == 3 and len(set(bands)) == 3,
                 f"augment.rgb_bands must be three different band indices [r, g, b], got {bands}; "
                 "e.g. [3, 2, 1] for Sentinel-2's red, green, blue")
        _require(v.recipe != "rgb",
                 "augment.rgb_bands names the bands the RGB ops run on within the bands recipe, "
                 "but augment.recipe=rgb runs them on every band; set augment.recipe=bands (or "
                 "auto), or drop augment.rgb_bands")


def check_bands(v: AugmentConfig, bands: int) -> None:
    """The checks that need the data's band count (``tribyol.augment.MultiViewAugment``)."""
    if v.rgb_bands is not None:
        bad = [b for b in v.rgb_bands if b >= bands]
        _require(not bad, f"augment.rgb_bands {list(v.rgb_bands)} names band {bad[0] if bad else 0}"
                          f", but the data has {bands} band(s), 0 to {bands - 1}; give three "
                          "indices below " + str(bands))
    _require(v.recipe != "rgb" or bands in (1, 3),
             f"augment.recipe=rgb runs RGB colour ops, but the data has {bands} bands; set "
             "augment.recipe=bands (or auto), or augment.rgb_bands to three of the bands")
