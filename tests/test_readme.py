"""README.md's code that loads an exported encoder runs, as written, on an export of every
backbone, and gives the features tribyol's own loader gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.helpers import scramble
from tribyol.checkpoints import BACKBONE_PREFIX, CHECKPOINT_NAME, load_encoder
from tribyol.cli import main
from tribyol.config import to_dict
from tribyol.nets import BACKBONES, build_backbone

README = Path(__file__).resolve().parents[1] / "README.md"


def export_snippets() -> list[str]:
    """The README's Python blocks that read an exported encoder."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if '"backbone.safetensors"' in b]


# (backbone, channels, image size, config overrides): the ConvNet at a small width, the two
# ResNets with each stem (3x3 for 16 px grey digits, torchvision's 7x7 for 32 px RGB).
CASES = [
    ("convnet", 1, 16, {"model": {"width": 8}}),
    ("resnet18", 1, 16, {}),
    ("resnet50", 3, 32, {"model": {"small_stem": False}, "data": {"dataset": "cifar10"}}),
]



def export_run(tmp_path: Path, monkeypatch, cfg, encoder, channels: int, size: int, out: str) -> None:
    """``tribyol export`` of a checkpoint holding what a run's holds for export: the encoder's
    weights under the method's prefix, the config and the data facts; ``out`` in ``tmp_path``."""
    info = {"channels": channels, "image_size": size, "num_classes": 10, "num_train_images": 64,
            "mean": (0.3,) * channels, "std": (0.35,) * channels}
    ckpt = tmp_path / "run" / "checkpoints" / CHECKPOINT_NAME
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {BACKBONE_PREFIX + k: v for k, v in encoder.state_dict().items()},
                "hyper_parameters": {"config": to_dict(cfg), "data_info": info},
                "epoch": 0, "global_step": 1}, ckpt)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(tmp_path / "run"), "--out", out]) == 0

def test_the_cases_cover_every_backbone() -> None:
    assert {c[0] for c in CASES} == set(BACKBONES)


@pytest.mark.parametrize(("backbone", "channels", "size", "extra"), CASES, ids=lambda c: str(c))
def test_the_readme_loads_an_export_of_each_backbone(tmp_path: Path, monkeypatch, backbone: str,
                                                     channels: int, size: int, extra: dict) -> None:
    from tribyol.resolve import load_config

    (snippet,) = export_snippets()
    cfg = load_config({"data": {"dataset": "digits", **extra.get("data", {})},
                       "model": {"backbone": backbone, **extra.get("model", {})}})
    m = cfg.model
    encoder = build_backbone(backbone, in_channels=channels, image_size=size,
                             small_stem=m.small_stem, width=m.width)
    scramble(encoder, seed=3)
    export_run(tmp_path, monkeypatch, cfg, encoder, channels, size, "backbone.safetensors")

    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    net, images, features = namespace["net"], namespace["images"], namespace["features"]
    if backbone != "convnet":
        assert type(net).__module__.startswith("torchvision.")  # torchvision's own class
    loaded, meta = load_encoder(tmp_path / "backbone.safetensors")
    mean = torch.tensor([float(v) for v in meta["mean"].split(",")]).view(1, -1, 1, 1)
    std = torch.tensor([float(v) for v in meta["std"].split(",")]).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = encoder.eval()((images - mean) / std)
        assert torch.allclose(loaded.eval()((images - mean) / std), expected, atol=1e-5)
    assert features.shape == (2, encoder.out_dim)
    assert torch.allclose(features.detach(), expected, atol=1e-5)


def test_the_readme_names_only_metadata_keys_an_export_has() -> None:
    from tribyol.checkpoints import EncoderInfo

    (snippet,) = export_snippets()
    listed = re.search(r"meta = f\.metadata\(\)  # (.*)", snippet)
    assert listed is not None
    keys = [k.strip() for k in listed[1].split(",") if k.strip() != "..."]
    fields = {f for f in EncoderInfo.__dataclass_fields__} | {"format"}
    assert keys and set(keys) <= fields, set(keys) - fields  # no "budget"


def timm_snippet() -> str:
    """The README's Python block that loads a ``timm:NAME`` export into plain timm."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if '"timm_backbone.safetensors"' in b]
    return block


def test_the_readme_loads_a_timm_export_into_plain_timm(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("timm")
    from tribyol.resolve import load_config

    cfg = load_config({"data": {"dataset": "digits"}, "model": {"backbone": "timm:test_resnet"}})
    channels, size = 4, 16  # not RGB: in_chans must come from the metadata
    encoder = build_backbone("timm:test_resnet", in_channels=channels, image_size=size)
    scramble(encoder, seed=4)
    export_run(tmp_path, monkeypatch, cfg, encoder, channels, size, "timm_backbone.safetensors")

    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(timm_snippet(), str(README), "exec"), namespace)  # noqa: S102 (our own README)
    net, images, features = namespace["net"], namespace["images"], namespace["features"]
    assert type(net).__module__.startswith("timm.")  # timm's own class
    loaded, _ = load_encoder(tmp_path / "timm_backbone.safetensors")
    x = (images - 0.3) / 0.35
    with torch.no_grad():
        expected = encoder.eval()(x)
        torch.testing.assert_close(loaded.eval()(x), expected)
    assert features.shape == (2, encoder.out_dim)
    torch.testing.assert_close(features.detach(), expected)
