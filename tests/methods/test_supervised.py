"""Supervised baselines: cross-entropy from scratch, and transfer from ImageNet weights."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from tests.helpers import imagenet_file
from tests.methods.helpers import make_supervised as make
from tribyol.cli import main
from tribyol.engine.logs import read_metrics
from tribyol.errors import ConfigError
from tribyol.methods.supervised import hub_weight_paths


def test_cross_entropy_hand_computed_and_unlabelled_ignored():
    m = make()
    with torch.no_grad():
        m.classifier.weight.zero_()
        m.classifier.bias.zero_()
    x = torch.randn(4, 1, 16, 16)
    out = m([x], torch.tensor([1, 2, -1, 3]))
    assert out.loss.item() == pytest.approx(math.log(10), rel=1e-6)  # uniform logits
    with torch.no_grad():
        m.classifier.bias.copy_(torch.arange(10.0))
    # logits = bias for every image: CE of class c = logsumexp(0..9) - c
    lse = math.log(sum(math.exp(c) for c in range(10)))
    out = m([x], torch.tensor([1, 2, -1, 3]))
    assert out.loss.item() == pytest.approx(lse - 2.0, rel=1e-5)  # mean of classes 1, 2, 3
    assert m.num_views == 1 and m.needs_labels


def test_one_step_gradients_flow_everywhere():
    m = make()
    m([torch.randn(6, 1, 16, 16)], torch.arange(6)).loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_batch_without_labels_gives_zero_loss_with_a_graph():
    m = make()
    loss = m([torch.randn(3, 1, 16, 16)], torch.full((3,), -1)).loss
    loss.backward()
    assert loss.item() == 0.0


def test_imagenet_weights_from_an_option_path(tmp_path):
    path, state = imagenet_file(tmp_path)
    m = make("supervised-imagenet", "resnet18", channels=3, image_size=224, weights=str(path))
    own = m.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(own[key], value)


def test_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert hub_weight_paths("resnet18") == [tmp_path / "hub/checkpoints/resnet18-f37072fd.pth"]
    _, state = imagenet_file(tmp_path / "hub" / "checkpoints")
    m = make("supervised-imagenet", "resnet18", channels=3, image_size=224)
    torch.testing.assert_close(m.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_one_channel_sums_conv1_over_rgb(tmp_path):
    path, state = imagenet_file(tmp_path)
    m = make("supervised-imagenet", "resnet18", channels=1, image_size=224, weights=str(path))
    expected = state["conv1.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(m.backbone.conv1.weight, expected)
    # a grey image gives the response RGB conv1 gives to that grey copied into 3 channels
    grey = torch.rand(1, 1, 7, 7)
    rgb_response = (state["conv1.weight"] * grey.expand(1, 3, 7, 7)).sum(dim=(1, 2, 3))
    torch.testing.assert_close((m.backbone.conv1.weight * grey).sum(dim=(1, 2, 3)), rgb_response)


def test_small_stem_keeps_a_fresh_conv1_and_loads_the_rest(tmp_path):
    path, state = imagenet_file(tmp_path)
    m = make("supervised-imagenet", "resnet18", channels=1, image_size=32, weights=str(path))
    assert m.backbone.conv1.weight.shape == (64, 1, 3, 3)
    torch.testing.assert_close(m.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_missing_weights_error_names_paths_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        make("supervised-imagenet", "resnet18", channels=3, image_size=224)
    message = str(err.value)
    assert str(tmp_path / "hub/checkpoints/resnet18-f37072fd.pth") in message
    assert "method.weights" in message and "download.pytorch.org" in message
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        make("supervised-imagenet", "resnet18", weights=str(tmp_path / "nothere.pth"))


def test_imagenet_needs_a_resnet(tmp_path):
    with pytest.raises(ConfigError, match="resnet18 or resnet50"):
        make("supervised-imagenet", "convnet")


def test_cli_pretrain_with_weights_option_and_clear_error(tmp_path, capsys, monkeypatch):
    path, state = imagenet_file(tmp_path)
    args = ["pretrain", "--method", "supervised-imagenet", "--dataset", "digits", "--limit", "32",
            "--batch-size", "16", "--epochs", "1", "--backbone", "resnet18",
            "--accelerator", "cpu", "--precision", "32", "--runs-root", str(tmp_path / "runs"),
            "--set", "train.progress_bar=false", "--set", "train.log_every_steps=1",
            "--set", "train.devices=1"]
    assert main([*args, "--weights", str(path)]) == 0  # the flag for method.weights
    assert "train/acc" in read_metrics(next((tmp_path / "runs").iterdir()))[-1]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert main([*args, "--name", "missing"]) == 2
    assert "ImageNet weights for resnet18 not found" in capsys.readouterr().err


def engine_module(name: str, dataset: str = "cifar10", **method):
    from tribyol.config import to_dict
    from tribyol.engine.module import PretrainModule
    from tribyol.resolve import load_config

    overrides = [("method.name", name), ("data.dataset", dataset), ("model.width", 4),
                 ("model.hidden_dim", 16), ("model.proj_dim", 8)]
    cfg = load_config(None, overrides + [(f"method.{k}", v) for k, v in method.items()])
    info = {"channels": 3, "image_size": 32, "num_classes": 10, "num_train_images": 64,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    return PretrainModule(to_dict(cfg), info)


def colour_changed(name: str, **method) -> torch.Tensor:
    """Per image of the first training view: whether its colour changed. Every pixel of the
    input is one colour ``a`` times a brightness, so crops, flips and their interpolation keep
    ``G / R = a_G / a_R`` at every pixel; jitter and grayscale do not."""
    a = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)
    shade = 0.2 + 0.8 * torch.rand(200, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    images = (255 * a * shade).round().to(torch.uint8)
    module = engine_module(name, **method)
    view = module.augment(images, 1, torch.Generator().manual_seed(1))[0]
    ratio_error = (view[:, 1] - 0.6 * view[:, 0]).abs().amax(dim=(1, 2))
    return ratio_error > 0.02


def test_supervised_trains_on_crops_and_flips_without_colour_changes():
    assert not colour_changed("supervised").any()  # no jitter, no grayscale, ever
    # BYOL's first view: jitter with p 0.8 and grayscale with p 0.2 change most images
    assert colour_changed("byol").float().mean() > 0.7
    # the old behaviour stays available as an option
    assert colour_changed("supervised", augment="byol").float().mean() > 0.7


def test_supervised_views_keep_the_crop_and_flip_of_the_dataset_preset():
    digits = engine_module("supervised", "digits").augment.cfg
    assert digits.flip_p == 0.0 and tuple(digits.crop_scale) == (0.25, 1.0)  # digits' preset
    cifar = engine_module("supervised").augment.cfg
    assert cifar.flip_p == 0.5 and tuple(cifar.crop_scale) == (0.08, 1.0)
    for cfg in (digits, cifar):
        assert cfg.jitter_p == 0 and cfg.grayscale_p == 0
        assert cfg.blur_p == [0.0] and cfg.solarize_p == [0.0]
    byol = engine_module("byol").augment.cfg
    assert byol.jitter_p == 0.8 and byol.grayscale_p == 0.2


def test_bad_augment_option():
    with pytest.raises(ConfigError):
        make(augment="jitter")


def test_the_context_names_the_backbone_it_needs_weights_for(tmp_path, monkeypatch):
    """The engine passes the backbone's registry name; the layout is only a fallback guess."""
    from tribyol.methods import MethodContext, resolve_options
    from tribyol.nets import build_backbone

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cls, opts = resolve_options({"name": "supervised-imagenet"})
    net = build_backbone("resnet18", 3, 224)
    with pytest.raises(FileNotFoundError, match="ImageNet weights for resnet50 not found"):
        cls(MethodContext(net, image_size=224, backbone_name="resnet50"), opts)
    with pytest.raises(FileNotFoundError, match="ImageNet weights for resnet18 not found"):
        cls(MethodContext(net, image_size=224), opts)  # no name: guessed from the layout


def test_a_random_stem_supervised_imagenet_run_says_so_in_its_record(tmp_path, capsys):
    """Issue 20: at <= 64 px conv1/bn1 are random and the max-pool is gone; the method, the
    export, the store record and the report's row label all name it ``stem: random 3x3``."""
    from safetensors import safe_open

    from tribyol.methods.supervised import RANDOM_STEM
    from tribyol.report.tables import build_tables
    from tribyol.store import read_results

    path, _ = imagenet_file(tmp_path)
    assert make("supervised-imagenet", "resnet18", channels=1, image_size=32,
                weights=str(path)).stem == RANDOM_STEM
    assert make("supervised-imagenet", "resnet18", channels=3, image_size=224,
                weights=str(path)).stem is None  # ImageNet's own stem: nothing to say
    runs, store, out = tmp_path / "runs", tmp_path / "r.jsonl", tmp_path / "enc.safetensors"
    assert main(["pretrain", "--method", "supervised-imagenet", "--dataset", "digits", "--limit",
                 "16", "--batch-size", "16", "--epochs", "1", "--backbone", "resnet18",
                 "--accelerator", "cpu", "--precision", "32", "--runs-root", str(runs), "--name",
                 "sup", "--weights", str(path), "--set", "train.progress_bar=false",
                 "--set", "train.devices=1"]) == 0
    assert main(["export", str(runs / "sup"), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["stem"] == RANDOM_STEM
    for source in (runs / "sup", out):
        assert main(["eval", "knn", str(source), "--dataset", "digits", "--k", "5", "--device",
                     "cpu", "--no-cache", "--limit-train", "100", "--limit-test", "100",
                     "--store", str(store)]) == 0
    records = read_results(store)
    assert [r["pretrain_stem"] for r in records] == [RANDOM_STEM, RANDOM_STEM]
    assert all(r["pretrain_settings"]["model"]["stem"] == RANDOM_STEM for r in records)
    knn = next(t for t in build_tables(records) if t.title.startswith("kNN"))
    assert "| ImageNet (supervised) (stem: random 3x3) |" in knn.markdown()


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_imagenet_file_is_refused_without_advice_to_load_it_anyway(tmp_path):
    from tribyol.errors import CheckpointError
    from tribyol.methods.supervised import load_imagenet_weights

    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_imagenet_weights(torchvision.models.resnet18(), path)
    message = str(info.value)
    assert "GLOBAL print" in message and "never loads such a file" in message
    # torch's own text advises weights_only=False "if you trust the source": never ours to give
    assert "weights_only" not in message and "trust" not in message, message
