"""Band-safe augmentation: any band count, per-sample randomness, seeded, p=0 is identity."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.helpers import gen
from tribyol.augment import bands, ops


def batch(b: int = 6, c: int = 13, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Reflectance-like floats, well away from [0, 1], one image repeated ``b`` times."""
    one = 0.1 + 0.3 * torch.rand((1, c, size, size), generator=gen(seed))
    return (one * 10).expand(b, -1, -1, -1).contiguous()


OPS = {
    "jitter": lambda x, g, p: bands.band_jitter(x, g, p, 0.4, 0.4),
    "noise": lambda x, g, p: bands.gaussian_noise(x, g, p, 0.2),
    "dropout": lambda x, g, p: bands.band_dropout(x, g, p, 0.5),
    "rotate": lambda x, g, p: bands.rotate90_flip(x, g, p, p / 2),
}


@pytest.mark.parametrize("name", OPS)
def test_shapes_dtype_and_any_band_count(name: str) -> None:
    for c in (1, 2, 4, 13, 64):
        x = batch(3, c)
        out = OPS[name](x, gen(), 1.0)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("name", OPS)
def test_p_zero_is_identity(name: str) -> None:
    x = batch()
    assert torch.equal(OPS[name](x, gen(), 0.0), x)


@pytest.mark.parametrize("name", OPS)
def test_seeded_reproducible_and_seed_dependent(name: str) -> None:
    x = batch()
    a, b, c = (OPS[name](x, gen(s), 1.0) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", OPS)
def test_identical_images_get_independent_draws(name: str) -> None:
    x = batch(32)
    out = OPS[name](x, gen(), 1.0)
    distinct = {tuple(out[i].flatten().tolist()) for i in range(32)}
    # 32 copies of one image come out different (rotations: 6 outcomes at p=1, all seen)
    assert len(distinct) == (6 if name == "rotate" else 32)


def test_jitter_is_per_band_and_keeps_units() -> None:
    x = batch(4)
    out = bands.band_jitter(x, gen(), 1.0, brightness=0.4, contrast=0.0)
    ratio = (out / x).mean(dim=(2, 3))  # per image, per band: the brightness factor
    assert ratio.min() >= 0.6 - 1e-5 and ratio.max() <= 1.4 + 1e-5
    assert ratio[0].std() > 0  # bands get different factors
    assert out.max() > 1.0  # nothing is clamped to [0, 1]
    contrast = bands.band_jitter(x, gen(), 1.0, brightness=0.0, contrast=0.4)
    torch.testing.assert_close(contrast.mean(dim=(2, 3)), x.mean(dim=(2, 3)))  # about the mean


def test_noise_strength_is_relative_to_each_band() -> None:
    x = batch(64, 2)
    x[:, 1] *= 1000  # a band in much larger units
    diff = bands.gaussian_noise(x, gen(), 1.0, std=0.2) - x
    rel = diff.std(dim=(0, 2, 3)) / x.std(dim=(2, 3)).mean(0)
    assert torch.allclose(rel[0], rel[1], rtol=0.1) and 0.05 < rel[0] < 0.2


def test_dropout_keeps_a_band_and_fills() -> None:
    x = batch(200, 3)
    fill = (7.0, 8.0, 9.0)
    out = bands.band_dropout(x, gen(), 1.0, band_p=1.0, fill=fill)
    kept = (out == x).flatten(2).all(-1)  # [B, C]
    assert (kept.sum(1) == 1).all()  # every band but one dropped, never all
    for c, value in enumerate(fill):
        assert (out[:, c][~kept[:, c]] == value).all()
    own = bands.band_dropout(x, gen(), 1.0, band_p=1.0)
    dropped = ~kept
    torch.testing.assert_close(own.mean(dim=(2, 3))[dropped], x.mean(dim=(2, 3))[dropped])


def test_rotations_and_flips_cover_the_square_symmetries() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(64, 3, -1, -1).contiguous()
    out = bands.rotate90_flip(x, gen(), rotate_p=1.0, vflip_p=0.5)
    seen = {tuple(o[0].flatten().tolist()) for o in out}
    expected = set()
    for k, flip in itertools.product(range(1, 4), (False, True)):
        r = torch.rot90(x[0, 0], k, dims=(-2, -1))
        expected.add(tuple((r.flip(-2) if flip else r).flatten().tolist()))
    assert seen == expected  # rotate_p=1: never unrotated; all 3 turns, with and without flip
    assert all(torch.equal(o[0], o[2]) for o in out)  # one transform for all bands of an image
    with pytest.raises(ValueError, match="square"):
        bands.rotate90_flip(torch.zeros(2, 1, 4, 6), gen())


def test_rgb_ops_on_named_bands() -> None:
    x = torch.rand(5, 13, 8, 8, generator=gen())
    out = bands.on_bands(x, [3, 2, 1], lambda rgb: ops.grayscale(rgb).expand_as(rgb))
    others = [i for i in range(13) if i not in (1, 2, 3)]
    assert torch.equal(out[:, others], x[:, others])
    torch.testing.assert_close(out[:, 3], ops.grayscale(x[:, [3, 2, 1]])[:, 0])
    with pytest.raises(ValueError):
        bands.on_bands(x, [1, 1, 2], lambda rgb: rgb)


def test_to_float_keeps_uint8_as_today_and_scales_others() -> None:
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    torch.testing.assert_close(to := bands.to_float(u8), u8.float().div(255.0))
    assert to.dtype == torch.float32
    u16 = torch.tensor([0, 5000, 20000], dtype=torch.int32).to(torch.uint16).view(1, 1, 1, 3)
    torch.testing.assert_close(bands.to_float(u16, 10000.0, (0.0, 1.0)),
                               torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3))


def test_to_float_leaves_a_float_input_alone_and_divides_a_copy() -> None:
    x = torch.full((1, 2, 2, 2), 500.0)
    out = bands.to_float(x, 1000.0, [(0.0, 1.0), (0.0, 0.25)])  # one pair per band
    assert torch.equal(x, torch.full_like(x, 500.0))  # the caller's tensor is not divided
    assert out[0, 0].eq(0.5).all() and out[0, 1].eq(0.25).all()
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(bands.to_float(u8), u8.float().div_(255.0))  # bit for bit, as before
