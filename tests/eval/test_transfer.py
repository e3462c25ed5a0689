import torch

from tribyol.data import TensorImages
from tribyol.eval.data import EvalData
from tribyol.eval.features import FeatureCache
from tribyol.eval.sources import Source
from tribyol.eval.transfer import format_table, transfer, transfer_one
from tribyol.nets import build_backbone


def source(channels: int, size: int = 16) -> Source:
    torch.manual_seed(0)
    meta = {"backbone": "convnet", "in_channels": str(channels), "image_size": str(size),
            "small_stem": "true",
            "mean": ",".join(["0.5"] * channels), "std": ",".join(["0.25"] * channels),
            "method": "tribyol", "dataset": "digits", "batch_size": "32"}
    return Source(build_backbone("convnet", channels, size, width=4), meta, "toy", None)


def test_three_channel_encoder_on_one_channel_target_and_missing_target(tmp_path):
    src = source(3)
    rows = transfer(src, ["digits", "mnist"], FeatureCache(tmp_path / "cache"),
                    root=tmp_path / "nothing-here", limit_train=200, limit_test=100, max_iter=20,
                    weight_decays=(1e-4,))
    ok, missing = rows
    assert ok.status == "ok" and ok.result.num_train == 200 and ok.result.num_test == 100
    assert ok.top1 > 30.0  # random conv features of digits are far above chance (10 %)
    assert missing.status == "missing" and "nothing-here" in missing.message
    assert "--download" in missing.message  # the remedy is named
    table = format_table(src, rows)
    assert "| digits |" in table and "| mnist | missing |" in table


def test_one_channel_encoder_on_three_channel_target(tmp_path):
    src = source(1, size=8)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 2
    # class 1 is red, class 0 is blue (same luma would be ambiguous): luma differs by class
    images = torch.zeros(60, 3, 12, 12, dtype=torch.uint8)
    images[labels == 1, 0] = 200
    images[labels == 0, 2] = 200
    images = (images.int() + torch.randint(0, 30, images.shape, generator=g)).clamp(0, 255).byte()
    ds = TensorImages(images, labels)
    data = EvalData("toy-rgb", ds, ds, torch.arange(40), torch.arange(40, 60), 2, "test")
    seen = []
    encoder_forward = src.encoder.forward
    src.encoder.forward = lambda x: seen.append(x.shape) or encoder_forward(x)
    result, _ = transfer_one(src, data, FeatureCache(enabled=False), mean=src.mean, std=src.std,
                             max_iter=20, weight_decays=(1e-4,))
    assert all(s[1:] == (1, 8, 8) for s in seen)  # luma to 1 channel, resized to 8 px
    assert result.top1 == 100.0
