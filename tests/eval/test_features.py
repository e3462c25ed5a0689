import torch
from torch import nn

from tribyol.data import TensorImages
from tribyol.eval.features import FeatureCache, adapt_channels, extract_features, weights_hash


class MeanEncoder(nn.Module):
    """Features = per-channel mean of the input; easy to check by hand."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x):
        assert not self.training, "features must be extracted in eval mode"
        return x.mean((2, 3)) * self.scale


def images(n: int = 10, channels: int = 1, size: int = 8) -> TensorImages:
    data = torch.arange(n).view(n, 1, 1, 1).expand(n, channels, size, size) * 20
    return TensorImages(data.to(torch.uint8).contiguous(), torch.arange(n) % 3)


def test_extract_features_batched_normalised_and_mode_restored():
    enc = MeanEncoder().train()
    ds = images()
    feats, labels = extract_features(enc, ds, 8, (0.0,), (1.0,), batch_size=3, device="cpu")
    assert enc.training
    assert feats.shape == (10, 1) and torch.equal(labels, torch.arange(10) % 3)
    assert torch.allclose(feats[:, 0], torch.arange(10) * 20 / 255.0, atol=1e-6)
    # normalisation and resizing are applied (eval_transform)
    feats2, _ = extract_features(enc, ds, 4, (0.5,), (0.5,), device="cpu", indices=[2, 5])
    assert torch.allclose(feats2[:, 0], (torch.tensor([40.0, 100.0]) / 255 - 0.5) / 0.5, atol=1e-5)


def test_channel_adaptation_both_ways():
    gray = torch.full((2, 1, 4, 4), 100, dtype=torch.uint8)
    assert adapt_channels(gray, 3).shape == (2, 3, 4, 4)
    assert (adapt_channels(gray, 3) == 100).all()
    rgb = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    rgb[:, 0] = 255  # pure red -> luma 0.299 * 255
    assert adapt_channels(rgb, 1).shape == (1, 1, 2, 2)
    assert (adapt_channels(rgb, 1) == 76).all()


def test_cache_hits_and_keys_on_weights(tmp_path):
    enc = MeanEncoder()
    ds = images()
    cache = FeatureCache(tmp_path)
    common = dict(name="toy", split="train", image_size=8, mean=(0.0,), std=(1.0,), device="cpu")
    f1, y1, path = cache.features(enc, ds, **common)
    assert path is not None and path.exists()
    with torch.no_grad():
        enc.scale.fill_(2.0)
    f2, _, path2 = cache.features(enc, ds, **common)
    assert path2 != path and torch.allclose(f2, 2 * f1)  # new weights, new key
    with torch.no_grad():
        enc.scale.fill_(1.0)
    h = weights_hash(enc)
    f3, y3, path3 = cache.features(enc, ds, **common, encoder_hash=h)
    assert path3 == path and torch.equal(f3, f1) and torch.equal(y3, y1)
    # disabled cache writes nothing
    off = FeatureCache(tmp_path / "off", enabled=False)
    assert off.features(enc, ds, **common)[2] is None and not (tmp_path / "off").exists()


def test_cache_keys_on_the_images_themselves(tmp_path):
    """Same name, split and count, other pixels or labels (a re-split, a swap): not a hit."""
    enc = MeanEncoder()
    cache = FeatureCache(tmp_path)
    common = dict(name="toy", split="test", image_size=8, mean=(0.0,), std=(1.0,), device="cpu")
    ds = images()
    f1, y1, path = cache.features(enc, ds, **common)
    flipped = TensorImages(ds.images.flip(0).contiguous(), ds.labels)
    f2, _, path2 = cache.features(enc, flipped, **common)
    assert path2 != path and torch.equal(f2, f1.flip(0))
    relabelled = TensorImages(ds.images, (ds.labels + 1) % 3)
    _, y3, path3 = cache.features(enc, relabelled, **common)
    assert path3 not in (path, path2) and torch.equal(y3, (y1 + 1) % 3)


def test_cache_files_take_the_umask_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        _, _, path = FeatureCache(tmp_path).features(
            MeanEncoder(), images(), name="toy", split="train", image_size=8, mean=(0.0,),
            std=(1.0,), device="cpu")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # safetensors alone writes 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_extraction_leaves_out_unlabelled_items():
    ds = TensorImages(images().images, torch.tensor([0, -1, 1, 2, -1, 0, 1, 2, 0, 1]))
    feats, labels = extract_features(MeanEncoder(), ds, 8, (0.0,), (1.0,), batch_size=3,
                                     device="cpu")
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1] and len(feats) == 8
    assert torch.allclose(feats[:2, 0], torch.tensor([0.0, 40 / 255]))  # item 1 (20) left out
