"""Issue 13: ImageNet weights as an eval SOURCE (``tribyol.eval.imagenet``)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_line, imagenet_file
from tribyol.cli import main
from tribyol.data.registry import IMAGENET_MEAN, IMAGENET_STD
from tribyol.eval.sources import load_source
from tribyol.report.tables import build_tables
from tribyol.store import read_results

FAST = ["--device", "cpu", "--no-cache", "--image-size", "32", "--limit-train", "200",
        "--limit-test", "100"]


def test_imagenet_source_loads_the_weights_with_the_standard_stem(tmp_path):
    path, state = imagenet_file(tmp_path)
    src = load_source("imagenet:resnet18", weights=str(path))
    own = src.encoder.state_dict()
    assert set(own) == set(state) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(own[k], state[k]) for k in own)  # every weight, conv1 included
    assert src.encoder.conv1.kernel_size == (7, 7) and not isinstance(src.encoder.maxpool,
                                                                      torch.nn.Identity)
    assert (src.image_size, src.in_channels) == (224, 3)  # ImageNet's
    assert src.mean == IMAGENET_MEAN and src.std == IMAGENET_STD
    assert src.meta["method"] == "supervised-imagenet" and src.meta["labels_seen"] == "imagenet labels"
    assert src.run_id == "imagenet-resnet18-f37072fd" and src.path == path
    assert load_source("imagenet:resnet18", weights=str(path), image_size=64).run_id.endswith("-64px")
    # --random-init: the same network, untrained, and no labels seen
    scratch = load_source("imagenet:resnet18", random_init=True)
    assert scratch.meta["labels_seen"] == "none" and scratch.run_id.endswith("+random-init")
    assert not torch.equal(scratch.encoder.conv1.weight, own["conv1.weight"])


def test_imagenet_source_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path, _ = imagenet_file(tmp_path / "hub" / "checkpoints")
    assert load_source("imagenet:resnet18").path == path


def test_eval_on_imagenet_weights_files_under_the_posters_row(tmp_path, capsys):
    path, _ = imagenet_file(tmp_path)
    store = tmp_path / "r.jsonl"
    common = ["--weights", str(path), "--store", str(store), *FAST]
    assert main(["eval", "knn", "imagenet:resnet18", "--dataset", "digits", "--k", "5", *common]) == 0
    assert main(["eval", "finetune", "imagenet:resnet18", "--dataset", "digits", "--label-fraction",
                 "0.1", "--epochs", "1", "--batch-size", "8", "--splits-dir", str(tmp_path / "s"),
                 *common]) == 0  # ImageNet's labels are not digits': 10 % is allowed
    assert main(["eval", "transfer", "imagenet:resnet18", "--targets", "digits", "--max-iter", "5",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "pre-trained on imagenet; labels seen: imagenet labels" in out and "batch None" not in out
    records = read_results(store)
    assert [r["protocol"] for r in records] == ["knn", "finetune", "transfer"]
    for r in records:
        assert r["method"] == "supervised-imagenet" and r["pretrain_labels"] == "imagenet labels"
        assert r["pretrain_dataset"] == "imagenet" and r["pretrain_batch_size"] is None
        assert r["run_id"] == "imagenet-resnet18-f37072fd-32px" and r["source"] == str(path)
        assert r["params"]["encoder_image_size"] == 32
    _, finetune, transfer, _ = build_tables(records)
    lines = [line for line in finetune.markdown().splitlines()
             if line.startswith("| ImageNet (supervised) (32px) |")]
    assert len(lines) == 1 and f"| {records[1]['value']:.2f} / –" in lines[0]
    lines = [line for line in transfer.markdown().splitlines()
             if line.startswith("| ImageNet (supervised) (32px) |")]  # no "(from imagenet)"
    assert len(lines) == 1 and lines[0].endswith("| imagenet labels |")


def test_imagenet_source_at_imagenet_size_is_the_posters_row(tmp_path):
    from tribyol.eval.data import EvalData
    from tribyol.eval.imagenet import imagenet_metadata
    from tribyol.eval.records import base_record
    from tribyol.eval.sources import Source

    src = Source(torch.nn.Identity(), imagenet_metadata("resnet50"), "imagenet-resnet50", tmp_path)
    data = EvalData("cifar10", None, None, torch.zeros(0), torch.zeros(0), 10, "test")
    record = {**base_record(src, data, "finetune", 0), "value": 70.0, "label_fraction": 0.01}
    from tribyol.store import append_result

    append_result(tmp_path / "r.jsonl", record)
    finetune = build_tables(read_results(tmp_path / "r.jsonl"))[1]
    assert "| ImageNet (supervised) | 70.00 / 69.90 |" in finetune.markdown()


@pytest.mark.parametrize(("args", "expected"), [
    (["knn", "imagenet:resnet34", "--dataset", "digits"],
     ["imagenet:resnet34", "imagenet:resnet18, imagenet:resnet50"]),
    (["knn", "imagenet:resnet18", "--dataset", "digits", "--weights", "NOFILE"],
     ["ImageNet weights for resnet18 not found", "NOFILE", "--weights PATH"]),
    (["knn", "imagenet:resnet18", "--dataset", "digits", "--image-size", "16"],
     ["--image-size must be >= 32", "got 16"]),
    (["knn", "imagenet:resnet18"], ["pass --dataset"]),
    (["knn", "runs/x", "--dataset", "digits", "--weights", "w.pth"],
     ["--weights applies to imagenet:ARCH sources only"]),
    (["linear", "runs/x", "--dataset", "digits", "--image-size", "64"],
     ["--image-size applies to imagenet:ARCH sources only"]),
])
def test_imagenet_source_errors(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert main(["eval", *args, "--no-store", "--device", "cpu"]) == 2
    line = error_line(capsys)
    for text in expected:
        assert text in line, line
